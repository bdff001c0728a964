"""``barbeque import``'s mapping of barbeque rows to manifests, without a database."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from barbeque.adapters.mysql import Dsn, SourceError
from barbeque.services import importer

pytestmark = pytest.mark.unit


def tables(**extra: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    base: dict[str, list[dict[str, Any]]] = {
        "apps": [{"id": 1, "name": "blog", "docker_image": "blog:latest", "description": None}],
        "job_definitions": [],
        "retry_configs": [],
        "slack_notifications": [],
        "job_queues": [
            {"id": 1, "name": "default", "description": None, "queue_url": "http://q/d"}
        ],
        "sns_subscriptions": [],
    }
    base.update(extra)
    return base


def job(id_: int, name: str, app_id: int = 1, command: str = "---\n- rake\n") -> dict[str, Any]:
    return {"id": id_, "job": name, "app_id": app_id, "command": command, "description": None}


@pytest.mark.parametrize(
    ("name", "kube"),
    [
        ("NotifyAuthor", "notify-author"),
        ("send_mail", "send-mail"),
        ("My_Shop", "my-shop"),
        ("HTMLReport2", "htmlreport2"),
        ("__", "x"),
    ],
)
def test_barbeque_names_become_kubernetes_names(name: str, kube: str) -> None:
    assert importer.kube_name(name) == kube


def test_case_variants_of_one_job_name_stay_apart() -> None:
    result = importer.build(tables(job_definitions=[job(1, "Notify"), job(2, "notify")]))
    definitions = [b for _, b in result.documents if b["kind"] == "JobDefinition"]
    # The exact name keeps the resource name: a message naming "notify" finds it first.
    assert [d["metadata"]["name"] for d in definitions] == ["notify-2", "notify"]
    assert definitions[0]["spec"]["jobName"] == "Notify"
    assert "jobName" not in definitions[1]["spec"]
    assert result.problems == []


def test_rows_that_cannot_be_imported_are_named_never_dropped() -> None:
    result = importer.build(
        tables(
            job_definitions=[
                job(1, "orphan", app_id=9),
                job(2, "bad-command", command="--- just a string\n"),
                job(3, "too-many-retries"),
                job(4, "fine"),
            ],
            retry_configs=[
                {
                    "job_definition_id": 3,
                    "retry_limit": 1000,
                    "base_delay": 15.0,
                    "max_delay": None,
                    "jitter": 1,
                }
            ],
        )
    )
    assert [p.split(":")[0] for p in result.problems] == [
        "SKIPPED job_definitions id=1 ('orphan')",
        "SKIPPED job_definitions id=2",
        "SKIPPED job_definitions id=3",
    ]
    assert "spec.retry.limit" in result.problems[2]
    rendered = result.render()
    assert "# SKIPPED job_definitions id=1 ('orphan')" in rendered
    names = [b["metadata"]["name"] for b in yaml.safe_load_all(rendered) if b]
    assert names == ["default", "blog", "fine"]


def test_a_database_url_is_parsed_or_refused_in_words() -> None:
    dsn = Dsn.parse("mysql://me:p%40ss@db.example:3307/barbeque_production")
    assert dsn == Dsn("db.example", 3307, "me", "p@ss", "barbeque_production")
    with pytest.raises(SourceError, match="mysql://user:password@host:3306/barbeque"):
        Dsn.parse("postgres://db/x")
    with pytest.raises(SourceError, match="name a host and a database"):
        Dsn.parse("mysql://db.example")


def test_sns_subscriptions_become_subscriptions_beside_their_definitions() -> None:
    topic = "arn:aws:sns:us-east-1:123456789012:Blog_Comments"
    result = importer.build(
        tables(
            job_definitions=[job(1, "IndexPost"), job(2, "notify")],
            sns_subscriptions=[
                {"id": 7, "topic_arn": topic, "job_queue_id": 1, "job_definition_id": 1},
                {"id": 8, "topic_arn": topic, "job_queue_id": 1, "job_definition_id": 2},
                {"id": 9, "topic_arn": topic, "job_queue_id": 5, "job_definition_id": 2},
                {"id": 10, "topic_arn": "not-an-arn", "job_queue_id": 1, "job_definition_id": 2},
            ],
        )
    )
    subscriptions = [b for _, b in result.documents if b["kind"] == "SNSSubscription"]
    assert subscriptions[0] == {
        "apiVersion": "barbeque.dev/v1alpha1",
        "kind": "SNSSubscription",
        "metadata": {
            "name": "blog-comments-index-post",
            "namespace": "blog",
            "annotations": {"barbeque.dev/imported-from": "barbeque_sns_subscriptions/7"},
        },
        # The job by its resource name: "IndexPost" became index-post (spec.jobName).
        "spec": {"topicArn": topic, "queue": "default", "job": "index-post"},
    }
    assert [s["metadata"]["name"] for s in subscriptions] == [
        "blog-comments-index-post",
        "blog-comments-notify",
    ]
    assert result.problems[0] == (
        f"SKIPPED sns_subscriptions id=9 ({topic}): its job queue id=5 is missing or was skipped"
    )
    assert result.problems[1].startswith("SKIPPED sns_subscriptions id=10 (not-an-arn): ")
    assert "spec.topicArn" in result.problems[1]
    assert "# barbeque SNS subscription " + topic + " -> blog/IndexPost" in result.render()
