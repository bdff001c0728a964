"""barbeque's status words for our phases, and the retry-chain rule."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
from kubernetes.client.exceptions import ApiException

from barbeque.api.models import JobExecution
from barbeque_dashboard import status as words
from barbeque_dashboard.cache import Cache, Watcher
from tests.support.webapi import ago, execution_body

pytestmark = pytest.mark.unit


def chain(*phases: str | None) -> Cache:
    cache = Cache()
    ids = [f"m{i}" for i in range(len(phases))]
    for i, phase in enumerate(phases):
        cache.apply(
            "jobexecutions",
            "ADDED",
            execution_body(
                "app",
                "job",
                ids[i],
                phase=phase,
                retried_by=ids[i + 1] if i + 1 < len(ids) else None,
                retry_of=ids[i - 1] if i else None,
                attempt=i,
            ),
        )
    return cache


def word(cache: Cache, message_id: str) -> str:
    execution = cache.execution_by_message_id(message_id)
    assert execution is not None
    return words.barbeque_status(execution, cache.next_retry)


def test_a_chain_follows_its_last_retry_once_finished() -> None:
    cache = chain("Failed", "Failed", "Succeeded")
    assert [word(cache, f"m{i}") for i in range(3)] == ["success", "success", "success"]


def test_a_chain_still_running_reads_retried() -> None:
    cache = chain("Failed", "Error", "Running")
    assert [word(cache, f"m{i}") for i in range(3)] == ["retried", "retried", "running"]


def test_a_retry_not_yet_recorded_reads_retried() -> None:
    cache = Cache()
    cache.apply(
        "jobexecutions", "ADDED", execution_body("a", "j", "x", phase="Failed", retried_by="y")
    )
    assert word(cache, "x") == "retried"


def test_only_final_failures_are_retryable() -> None:
    cache = chain("Failed", "Error")
    first = cache.execution_by_message_id("m0")
    last = cache.execution_by_message_id("m1")
    assert isinstance(first, JobExecution)
    assert isinstance(last, JobExecution)
    assert not words.is_retryable(first, cache.next_retry)
    assert words.is_retryable(last, cache.next_retry)


def test_a_manual_retry_linked_only_by_retry_of_is_followed() -> None:
    cache = Cache()
    parent = execution_body("a", "j", "p", phase="Failed", created=ago(minutes=5))
    child = execution_body("a", "j", "c", phase="Running", retry_of="p", attempt=1)
    cache.apply("jobexecutions", "ADDED", parent)
    assert word(cache, "p") == "failed"
    cache.apply("jobexecutions", "ADDED", child)
    assert word(cache, "p") == "retried"
    parent_execution = cache.execution_by_message_id("p")
    assert parent_execution is not None
    assert not words.is_retryable(parent_execution, cache.next_retry)
    child["status"]["phase"] = "Succeeded"
    child["metadata"]["resourceVersion"] = "999999"
    cache.apply("jobexecutions", "MODIFIED", child)
    assert word(cache, "p") == "success"


def test_an_invalid_message_without_status_reads_error() -> None:
    body = execution_body("a", "j", "bad")
    body["spec"]["invalidReason"] = "InvalidJSON: nope"
    execution = JobExecution.model_validate(body)
    assert words.own_status(execution) == "error"


@pytest.mark.parametrize(
    ("wanted", "phase", "expected"),
    [
        ("failed", "Failed", True),
        ("FAILED", "Failed", True),
        ("Scheduled", "Scheduled", True),
        ("pending", "Scheduled", True),
        ("running", "Pending", False),
    ],
)
def test_filters_accept_words_and_phases(wanted: str, phase: str, expected: bool) -> None:
    execution = JobExecution.model_validate(execution_body("a", "j", "f", phase=phase))
    assert words.matches(execution, wanted, words.own_status(execution)) is expected


def test_cache_relist_forgets_deleted_objects_and_keeps_newer_versions() -> None:
    cache = Cache()
    old = execution_body("a", "j", "keep", phase="Running")
    gone = execution_body("a", "j", "gone")
    cache.replace("jobexecutions", [old, gone])
    newer = execution_body("a", "j", "keep", phase="Succeeded")
    cache.apply("jobexecutions", "MODIFIED", newer)
    cache.apply("jobexecutions", "MODIFIED", old)  # a stale event must not undo the news
    cache.replace("jobexecutions", [newer])
    assert cache.execution_by_message_id("gone") is None
    kept = cache.execution_by_message_id("keep")
    assert kept is not None
    assert kept.status.phase == "Succeeded"
    assert cache.ready is False
    cache.replace("jobqueues", [])
    cache.replace("jobdefinitions", [])
    assert cache.ready


class FakeCustomObjects:
    """Lists in turn from ``pages``; the API server's side of a list."""

    def __init__(self, pages: list[tuple[list[dict[str, Any]], str]]) -> None:
        self.pages = pages
        self.lists = 0

    def list_cluster_custom_object(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        items, resource_version = self.pages[min(self.lists, len(self.pages) - 1)]
        self.lists += 1
        return {"items": items, "metadata": {"resourceVersion": resource_version}}


class FakeWatch:
    """First watch: 410 Gone. Later watches: one MODIFIED event, then idle until stopped."""

    calls: ClassVar[list[str | None]] = []

    def __init__(self, event: dict[str, Any], stopped: threading.Event) -> None:
        self.event = event
        self.stopped = stopped

    def stream(self, func: Any, *args: Any, **kwargs: Any) -> Iterator[dict[str, Any]]:
        FakeWatch.calls.append(kwargs.get("resource_version"))
        if len(FakeWatch.calls) == 1:
            raise ApiException(status=410, reason="Gone")
        yield {"type": "MODIFIED", "raw_object": self.event}
        self.stopped.wait(5)

    def stop(self) -> None:
        self.stopped.set()


def test_watcher_lists_again_after_410_gone_and_drops_what_vanished() -> None:
    a = execution_body("a", "j", "m-a", phase="Running")
    b = execution_body("a", "j", "m-b", phase="Running")
    b_done = execution_body("a", "j", "m-b", phase="Succeeded")
    cache = Cache()
    watcher = Watcher(cache, api_client=None, kind="jobexecutions")
    api = FakeCustomObjects([([a, b], "10"), ([b], "20")])
    watcher._custom = api
    stopped = threading.Event()
    FakeWatch.calls = []
    watcher.watch_factory = lambda: FakeWatch(b_done, stopped)
    watcher.start()
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            found = cache.execution_by_message_id("m-b")
            if found is not None and found.status.phase == "Succeeded":
                break
            time.sleep(0.01)
    finally:
        watcher.stop()
        watcher.thread.join(timeout=5)
    assert api.lists == 2
    assert FakeWatch.calls[:2] == ["10", "20"]
    assert cache.execution_by_message_id("m-a") is None
    found = cache.execution_by_message_id("m-b")
    assert found is not None
    assert found.status.phase == "Succeeded"
