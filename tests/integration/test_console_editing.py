"""Editing from the console in Debian's Chromium, signed in with a Kubernetes token: every
write is allowed or refused by that user's own RBAC, and what the model or the API server
refuses is shown next to the field, with what was typed kept.
"""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

import pytest

from tests.cluster.harness import ApiError, Cluster
from tests.support import webapi_servers
from tests.support.browser import page, shot
from tests.support.kube import grant, service_account_token
from tests.support.waiting import wait_until
from tests.support.webapi import TOKEN
from tests.support.webapi_servers import Service

pytestmark = pytest.mark.integration

service = webapi_servers.service
__all__ = ["page"]

GROUP_PATH = "/apis/barbeque.dev/v1alpha1"


def log_in(page: Any, service: Service, token: str) -> None:
    page.goto(f"{service.url}/login")
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")
    page.wait_for_url("**/applications")


def field_error(page: Any, name: str) -> str:
    text: str = page.locator(f"#error-{name}").inner_text()
    return text


def get(cluster: Cluster, path: str) -> dict[str, Any] | None:
    try:
        found: dict[str, Any] = cluster.api("GET", path)
    except ApiError as exc:
        if exc.status == 404:
            return None
        raise
    return found


def reader_token(cluster: Cluster, home: str, account: str, role: str) -> str:
    """The token of a ServiceAccount in ``home`` that may only list executions (enough to
    sign in to the console); ``role`` names its ClusterRole and binding."""
    cluster.create_namespace(home)
    token = service_account_token(cluster, home, account)
    reader = [{"apiGroups": ["barbeque.dev"], "resources": ["jobexecutions"], "verbs": ["list"]}]
    grant(cluster, role, home, account, reader)
    return token


def remove_roles(cluster: Cluster, *names: str) -> None:
    for kind in ("clusterrolebindings", "clusterroles"):
        for name in names:
            with contextlib.suppress(ApiError):
                cluster.api("DELETE", f"/apis/rbac.authorization.k8s.io/v1/{kind}/{name}")


def test_definitions_queues_and_applications_are_edited_within_the_users_rbac(
    service: Service, page: Any
) -> None:
    cluster = service.cluster
    suffix = uuid.uuid4().hex[:8]
    home = f"editors-{suffix}"
    app = f"edit-{suffix}"
    queue = f"edit-q-{suffix}"
    token = reader_token(cluster, home, "editor", f"read-{suffix}")
    page.on("dialog", lambda dialog: dialog.accept())
    try:
        log_in(page, service, token)

        # Reading is not writing: without RBAC on namespaces the form's POST is refused.
        page.goto(f"{service.url}/applications/new")
        page.fill("#name", app)
        page.click("form.edit button[type=submit]")
        assert "403" in page.locator("h1").inner_text()
        assert "may not create namespaces" in page.locator("p.error").inner_text()
        assert get(cluster, f"/api/v1/namespaces/{app}") is None
        shot(page, "20-edit-forbidden")

        grant(
            cluster,
            f"edit-{suffix}",
            home,
            "editor",
            [
                {
                    "apiGroups": ["barbeque.dev"],
                    "resources": ["jobdefinitions", "jobqueues"],
                    "verbs": ["create", "update", "delete"],
                },
                {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["create", "delete"]},
            ],
        )

        # An application: the API server refuses a name that is no namespace name.
        def create_application(name: str) -> None:
            page.goto(f"{service.url}/applications/new")
            page.fill("#name", name)
            page.fill("#description", "made in the browser")
            page.click("form.edit button[type=submit]")

        wait_until(
            "RBAC to let the editor create namespaces",
            lambda: (
                create_application("Not_A_Namespace")
                or "403" not in page.locator("h1").inner_text()
            ),
        )
        assert "Not_A_Namespace" in field_error(page, "name")
        assert page.input_value("#description") == "made in the browser"
        shot(page, "21-application-422")
        page.fill("#name", app)
        page.click("form.edit button[type=submit]")
        page.wait_for_url(f"**/applications/{app}/job_definitions/new?notice=*")
        namespace = get(cluster, f"/api/v1/namespaces/{app}")
        assert namespace is not None
        assert namespace["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "barbeque"

        # A job definition: the model's refusals first, beside their fields...
        page.fill("#name", "notify-author")
        page.fill("#image", "")
        page.fill("#retry_limit", "many")
        page.fill("#args", "rake\nnotify_author")
        page.click("form.edit button[type=submit]")
        assert "integer" in field_error(page, "retry_limit")
        assert "at least 1 character" in field_error(page, "image")
        assert page.input_value("#args") == "rake\nnotify_author"
        shot(page, "22-definition-model-errors")
        # ...then the API server's, on the field it names.
        page.fill("#name", "Notify_Author")
        page.fill("#image", "busybox:1.36")
        page.fill("#retry_limit", "2")
        page.click("form.edit button[type=submit]")
        assert "Notify_Author" in field_error(page, "name")
        page.fill("#name", "notify-author")
        page.fill("#job_name", "NotifyAuthor")
        page.fill("#slack_channel", "#blog")
        page.click("form.edit button[type=submit]")
        page.wait_for_url(f"**/applications/{app}/job_definitions/notify-author?notice=*")
        stored = get(cluster, f"{GROUP_PATH}/namespaces/{app}/jobdefinitions/notify-author")
        assert stored is not None
        assert stored["spec"]["args"] == ["rake", "notify_author"]
        assert stored["spec"]["retry"]["limit"] == 2
        assert stored["spec"]["jobName"] == "NotifyAuthor"
        assert stored["spec"]["slack"]["channel"] == "#blog"
        shot(page, "23-definition-created")

        # Edit: fields the form does not show are kept.
        cluster.api(
            "PATCH",
            f"{GROUP_PATH}/namespaces/{app}/jobdefinitions/notify-author",
            {"spec": {"env": [{"name": "MODE", "value": "kept"}]}},
            content_type="application/merge-patch+json",
        )
        page.goto(f"{service.url}/applications/{app}/job_definitions/notify-author/edit")
        page.fill("#image", "busybox:1.37")
        page.click("form.edit button[type=submit]")
        page.wait_for_url(f"**/applications/{app}/job_definitions/notify-author?notice=*")
        stored = get(cluster, f"{GROUP_PATH}/namespaces/{app}/jobdefinitions/notify-author")
        assert stored is not None
        assert stored["spec"]["image"] == "busybox:1.37"
        assert stored["spec"]["env"] == [{"name": "MODE", "value": "kept"}]

        # A queue: the model's bound on a number, beside the field.
        page.goto(f"{service.url}/job_queues/new")
        page.fill("#name", queue)
        page.uncheck("input[name=create]")
        page.fill("#max_concurrent_executions", "0")
        page.click("form.edit button[type=submit]")
        assert "greater than or equal to 1" in field_error(page, "max_concurrent_executions")
        page.fill("#max_concurrent_executions", "3")
        page.click("form.edit button[type=submit]")
        page.wait_for_url(f"**/job_queues/{queue}?notice=*")
        stored = get(cluster, f"{GROUP_PATH}/jobqueues/{queue}")
        assert stored is not None
        assert stored["spec"]["maxConcurrentExecutions"] == 3
        page.goto(f"{service.url}/job_queues/{queue}/edit")
        page.check("input[name=suspend]")
        page.click("form.edit button[type=submit]")
        page.wait_for_url(f"**/job_queues/{queue}?notice=*")
        stored = get(cluster, f"{GROUP_PATH}/jobqueues/{queue}")
        assert stored is not None
        assert stored["spec"]["suspend"] is True
        shot(page, "24-queue-saved")
        page.click("button.danger")
        page.wait_for_url("**/job_queues?notice=*")
        assert get(cluster, f"{GROUP_PATH}/jobqueues/{queue}") is None

        # An application with job definitions is not deleted; once empty, it is.
        page.goto(f"{service.url}/applications/{app}")
        page.click("button.danger")
        assert "delete them first" in page.locator("p.error").inner_text()
        page.goto(f"{service.url}/applications/{app}/job_definitions/notify-author")
        page.click("button.danger")
        page.wait_for_url("**/job_definitions?notice=*")
        assert get(cluster, f"{GROUP_PATH}/namespaces/{app}/jobdefinitions/notify-author") is None
        page.request.post(f"{service.url}/applications/{app}/delete")
        gone = get(cluster, f"/api/v1/namespaces/{app}")
        assert gone is None or gone["metadata"].get("deletionTimestamp")
    finally:
        remove_roles(cluster, f"read-{suffix}", f"edit-{suffix}")
        with contextlib.suppress(ApiError):
            cluster.api("DELETE", f"{GROUP_PATH}/jobqueues/{queue}")
        cluster.delete_namespace(app)
        cluster.delete_namespace(home)


def test_sns_subscriptions_are_created_edited_and_deleted_within_the_users_rbac(
    service: Service, page: Any
) -> None:
    cluster = service.cluster
    suffix = uuid.uuid4().hex[:8]
    home = f"subscribers-{suffix}"
    app = f"subs-{suffix}"
    topic = f"arn:aws:sns:us-east-1:123456789012:orders-{suffix}"
    path = f"{GROUP_PATH}/namespaces/{app}/snssubscriptions"
    token = reader_token(cluster, home, "subscriber", f"sub-read-{suffix}")
    cluster.create_namespace(app)
    for job in ("notify", "archive"):
        cluster.api(
            "POST",
            f"{GROUP_PATH}/namespaces/{app}/jobdefinitions",
            {
                "apiVersion": "barbeque.dev/v1alpha1",
                "kind": "JobDefinition",
                "metadata": {"name": job, "namespace": app},
                "spec": {"image": "busybox:1.36", "queue": "default"},
            },
        )
    page.on("dialog", lambda dialog: dialog.accept())

    def submit(name: str, topic_arn: str, job: str) -> None:
        page.goto(f"{service.url}/applications/{app}/sns_subscriptions/new")
        page.fill("#name", name)
        page.fill("#topic_arn", topic_arn)
        page.fill("#queue", "default")
        page.fill("#job", job)
        page.click("form.edit button[type=submit]")

    try:
        log_in(page, service, token)
        wait_until(
            "the definitions in the console's cache",
            lambda: (
                page.goto(f"{service.url}/applications/{app}/sns_subscriptions/new")
                and "archive" in page.inner_html("#job-options")
            ),
        )
        submit("orders", topic, "notify")
        assert "403" in page.locator("h1").inner_text()
        assert "may not create snssubscriptions" in page.locator("p.error").inner_text()
        assert get(cluster, f"{path}/orders") is None

        grant(
            cluster,
            f"sub-edit-{suffix}",
            home,
            "subscriber",
            [
                {
                    "apiGroups": ["barbeque.dev"],
                    "resources": ["snssubscriptions"],
                    "verbs": ["create", "update", "delete"],
                }
            ],
        )
        # The model's refusals (a topic that is no ARN, a job the application lacks)...
        wait_until(
            "RBAC to let the subscriber create subscriptions",
            lambda: (
                submit("orders", "orders", "notfy") or "403" not in page.locator("h1").inner_text()
            ),
        )
        assert "should match pattern" in field_error(page, "topic_arn")
        assert "has no job definition 'notfy'" in field_error(page, "job")
        assert page.input_value("#topic_arn") == "orders"
        shot(page, "25-subscription-model-errors")
        # ...then the API server's, on the field it names.
        submit("Orders_Notify", topic, "notify")
        assert "Orders_Notify" in field_error(page, "name")
        submit("orders", topic, "notify")
        page.wait_for_url("**/sns_subscriptions?notice=*")
        stored = get(cluster, f"{path}/orders")
        assert stored is not None
        assert stored["spec"] == {"topicArn": topic, "queue": "default", "job": "notify"}
        assert page.locator("tr.subscription", has_text=topic).count() == 1
        shot(page, "26-subscription-created")

        # Edit: the job changes; the topic and queue are what the operator subscribed.
        page.goto(f"{service.url}/applications/{app}/sns_subscriptions/orders/edit")
        assert page.get_attribute("#topic_arn", "readonly") is not None
        page.fill("#job", "archive")
        page.click("form.edit button[type=submit]")
        page.wait_for_url("**/sns_subscriptions?notice=*")
        stored = get(cluster, f"{path}/orders")
        assert stored is not None
        assert stored["spec"] == {"topicArn": topic, "queue": "default", "job": "archive"}

        page.locator("tr.subscription", has_text=topic).locator("button.danger").click()
        page.wait_for_url("**/sns_subscriptions?notice=*")
        assert get(cluster, f"{path}/orders") is None
    finally:
        remove_roles(cluster, f"sub-read-{suffix}", f"sub-edit-{suffix}")
        cluster.delete_namespace(app)
        cluster.delete_namespace(home)


def test_a_namespace_the_console_did_not_create_is_never_deleted_from_it(
    service: Service, page: Any
) -> None:
    cluster = service.cluster
    name = f"foreign-{uuid.uuid4().hex[:8]}"
    cluster.create_namespace(name)
    try:
        log_in(page, service, TOKEN)
        response = page.request.post(f"{service.url}/applications/{name}/delete")
        assert response.status == 409
        assert "not created by this console" in response.text()
        namespace = get(cluster, f"/api/v1/namespaces/{name}")
        assert namespace is not None
        assert not namespace["metadata"].get("deletionTimestamp")
    finally:
        cluster.delete_namespace(name)
