"""The console's edit forms: values to objects, and each refusal on the field it concerns."""

from __future__ import annotations

import pytest

from barbeque_dashboard import forms

pytestmark = pytest.mark.unit


def values(**changes: str) -> dict[str, str]:
    typed = forms.definition_values(None)
    typed.update(name="send-mail", image="busybox:1.36")
    typed.update(changes)
    return typed


def test_a_definition_form_becomes_the_spec_the_operator_reads() -> None:
    form = forms.Form(
        values(
            args="rake\n\n notify \n",
            retry_limit="2",
            retry_max_delay="60",
            slack_channel="#blog",
            slack_only_at_limit="on",
        )
    )
    body = forms.definition_body(form, "blog")
    assert form.errors == {}
    assert body["metadata"] == {"name": "send-mail", "namespace": "blog"}
    spec = body["spec"]
    assert spec["args"] == ["rake", " notify "]
    assert "command" not in spec
    assert spec["retry"] == {
        "limit": 2,
        "baseDelaySeconds": 15.0,
        "maxDelaySeconds": 60.0,
        "jitter": True,
    }
    assert spec["slack"]["notifyFailureOnlyIfRetryLimitReached"] is True


def test_editing_keeps_what_the_form_does_not_show() -> None:
    stored = {
        "apiVersion": "barbeque.dev/v1alpha1",
        "kind": "JobDefinition",
        "metadata": {"name": "send-mail", "namespace": "blog", "finalizers": ["x"]},
        "spec": {
            "image": "a:1",
            "env": [{"name": "MODE", "value": "kept"}],
            "slack": {"channel": "#a"},
        },
        "status": {"observedGeneration": 1},
    }
    form = forms.Form({**forms.definition_values(stored), "image": "a:2", "slack_channel": ""})
    body = forms.definition_body(form, "blog", stored)
    assert body["spec"]["env"] == [{"name": "MODE", "value": "kept"}]
    assert body["spec"]["image"] == "a:2"
    assert "slack" not in body["spec"]  # an emptied channel turns notifications off
    assert body["metadata"]["finalizers"] == ["x"]
    assert "status" not in body
    assert stored["spec"]["image"] == "a:1"  # the stored object itself is untouched


def test_each_refusal_lands_on_its_field() -> None:
    form = forms.Form(values(image="", retry_limit="many", retry_base_delay="-1"))
    forms.definition_body(form, "blog")
    assert set(form.errors) == {"image", "retry_limit", "retry_base_delay"}
    # The API server's 422 names paths of the object; one no field shows goes on top.
    forms.place(form, "spec.command[0]", "bad", forms.DEFINITION_FIELDS)
    forms.place(form, "metadata.name", "not a name", forms.DEFINITION_FIELDS)
    forms.place(form, "spec.tolerations[0].effect", "unsupported", forms.DEFINITION_FIELDS)
    assert form.errors["command"] == "bad"
    assert form.errors["name"] == "not a name"
    assert form.errors[""] == "spec.tolerations[0].effect: unsupported"


def test_a_queue_form_checks_its_numbers() -> None:
    typed = {**forms.queue_values(None), "name": "mail", "max_concurrent_executions": "0"}
    form = forms.Form(typed)
    forms.queue_body(form)
    assert "max_concurrent_executions" in form.errors
    form = forms.Form({**typed, "max_concurrent_executions": "3", "receive_wait_seconds": "5"})
    body = forms.queue_body(form)
    assert form.errors == {}
    assert body["spec"]["maxConcurrentExecutions"] == 3
    assert body["spec"]["receiveWaitSeconds"] == 5
    assert body["spec"]["create"] is True


def test_no_retries_is_no_retry_config_as_for_an_applied_definition() -> None:
    stored = {
        "metadata": {"name": "send-mail", "namespace": "blog"},
        "spec": {"image": "a:1"},
    }
    shown = forms.definition_values(stored)
    assert shown["retry_limit"] == "0"
    body = forms.definition_body(forms.Form(shown), "blog", stored)
    assert "retry" not in body["spec"]
    empty_config = {**stored, "spec": {"image": "a:1", "retry": {}}}
    assert forms.definition_values(empty_config)["retry_limit"] == "3"


TOPIC = "arn:aws:sns:us-east-1:123456789012:orders"


def test_a_subscription_form_becomes_the_spec_and_names_what_is_wrong_beside_the_field() -> None:
    typed = {"name": "orders", "topic_arn": TOPIC, "queue": "default", "job": "NotifyAuthor"}
    form = forms.Form(dict(typed))
    body = forms.subscription_body(form, "blog", {"notify-author", "NotifyAuthor"})
    assert form.errors == {}
    assert body == {
        "apiVersion": "barbeque.dev/v1alpha1",
        "kind": "SNSSubscription",
        "metadata": {"name": "orders", "namespace": "blog"},
        "spec": {"topicArn": TOPIC, "queue": "default", "job": "NotifyAuthor"},
    }
    bad = forms.Form({**typed, "name": "", "topic_arn": "orders", "job": "missing"})
    forms.subscription_body(bad, "blog", {"notify-author"})
    assert set(bad.errors) == {"name", "topic_arn", "job"}
    assert "should match pattern" in bad.errors["topic_arn"]
    assert bad.errors["job"] == "application 'blog' has no job definition 'missing'"


def test_editing_a_subscription_changes_only_its_job() -> None:
    stored = {
        "apiVersion": "barbeque.dev/v1alpha1",
        "kind": "SNSSubscription",
        "metadata": {"name": "orders", "namespace": "blog", "finalizers": ["f"]},
        "spec": {"topicArn": TOPIC, "queue": "default", "job": "notify"},
        "status": {"phase": "Subscribed"},
    }
    values = forms.subscription_values(stored)
    assert values == {"name": "orders", "topic_arn": TOPIC, "queue": "default", "job": "notify"}
    # A tampered post cannot move the subscription to another topic or queue.
    form = forms.Form({**values, "topic_arn": TOPIC + "-2", "queue": "other", "job": "archive"})
    body = forms.subscription_body(form, "blog", {"notify", "archive"}, stored)
    assert form.errors == {}
    assert body["spec"] == {"topicArn": TOPIC, "queue": "default", "job": "archive"}
    assert body["metadata"]["finalizers"] == ["f"]
    assert "status" not in body
