"""The operator's store forgets settled executions and ignores their stale echoes."""

from __future__ import annotations

from typing import Any

import pytest

from barbeque.services.store import PodState, Store

pytestmark = pytest.mark.unit


def body(rv: int, phase: str | None = None, uploaded: bool | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase} if phase else {}
    if uploaded is not None:
        status["logs"] = {"bucket": "b", "prefix": "p/", "url": "s3://b/p/", "uploaded": uploaded}
    return {
        "metadata": {"name": "m1", "namespace": "blog", "resourceVersion": str(rv)},
        "spec": {"application": "blog", "job": "hello", "messageId": "m1", "queue": "q"},
        "status": status,
    }


def test_a_settled_execution_is_forgotten_and_its_older_events_ignored() -> None:
    store = Store(keep_finished=False)
    assert store.put_execution(body(1)) is not None
    assert store.put_execution(body(2, "Running")) is not None
    assert store.active_by_queue["q"] == 1
    finished = store.put_execution(body(4, "Succeeded", uploaded=True))
    assert finished is not None
    assert finished.status.phase == "Succeeded"
    assert store.execution(("blog", "m1")) is None
    assert store.execution_by_message_id("m1") is None
    assert store.active_by_queue["q"] == 0
    # The watch delivers the Running version late: it must not come back.
    assert store.put_execution(body(3, "Running")) is None
    assert store.execution(("blog", "m1")) is None
    # The watch's DELETED (left the selection) clears the tombstone.
    store.delete_execution("blog", "m1")
    assert store.settled == {}


def test_a_finished_execution_whose_logs_are_not_uploaded_is_kept() -> None:
    store = Store(keep_finished=False)
    store.put_execution(body(1, "Running"))
    assert store.put_execution(body(2, "Failed", uploaded=False)) is not None
    assert store.execution(("blog", "m1")) is not None
    store.put_execution(body(3, "Failed", uploaded=True))
    assert store.execution(("blog", "m1")) is None


def test_the_echo_of_a_write_is_reported_but_an_older_version_is_not() -> None:
    store = Store()
    assert store.put_execution(body(5, "Running")) is not None
    assert store.put_execution(body(5, "Running")) is not None
    assert store.put_execution(body(4)) is None
    assert store.put_execution(body(6, "Succeeded", uploaded=True)) is not None


def test_the_consoles_store_keeps_everything() -> None:
    store = Store()
    store.put_execution(body(1, "Succeeded", uploaded=True))
    assert store.execution(("blog", "m1")) is not None
    assert store.settled == {}


def test_a_settled_object_never_kept_leaves_no_tombstone_and_old_ones_are_pruned() -> None:
    store = Store(keep_finished=False)
    store.put_execution(body(7, "Succeeded", uploaded=True))  # a parent fetched by GET
    assert store.settled == {}
    store.put_execution(body(8, "Running"))
    store.put_execution(body(9, "Succeeded", uploaded=True))
    assert set(store.settled) == {("blog", "m1")}
    store.prune_settled(3600)
    assert set(store.settled) == {("blog", "m1")}
    store.prune_settled(-1)
    assert store.settled == {}


def test_a_pod_no_node_can_take_waits_as_unschedulable_with_the_schedulers_message() -> None:
    message = "0/3 nodes are available: 3 Insufficient pods."
    pod = PodState.from_body(
        {
            "metadata": {"name": "m1-x", "namespace": "blog", "resourceVersion": "7"},
            "status": {
                "phase": "Pending",
                "conditions": [
                    {
                        "type": "PodScheduled",
                        "status": "False",
                        "reason": "Unschedulable",
                        "message": message,
                    }
                ],
            },
        }
    )
    assert (pod.phase, pod.waiting_reason, pod.waiting_message) == (
        "Pending",
        "Unschedulable",
        message,
    )
