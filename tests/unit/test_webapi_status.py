"""barbeque's status words for our phases, and the retry-chain rule."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

import pytest

from barbeque.adapters.watch import Expired
from barbeque.api.models import JobExecution
from barbeque_dashboard import status as words
from barbeque_dashboard.cache import KINDS, Cache, build_watches
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


class FakeWatchApi:
    """The API server's side: LISTs in turn from ``pages``; the first WATCH answers 410
    Gone, later ones send ``event`` and then stay open until cancelled."""

    path = "/apis/barbeque.dev/v1alpha1/jobexecutions"
    resource = "jobexecutions"

    def __init__(self, pages: list[tuple[list[dict[str, Any]], str]], event: dict[str, Any]):
        self.pages = pages
        self.event = event
        self.lists = 0
        self.watched_from: list[str | None] = []
        self.sent = asyncio.Event()

    async def list_page(self, params: dict[str, Any]) -> dict[str, Any]:
        items, resource_version = self.pages[min(self.lists, len(self.pages) - 1)]
        self.lists += 1
        return {"items": items, "metadata": {"resourceVersion": resource_version}}

    async def stream(self, params: dict[str, Any]) -> AsyncGenerator[dict[str, Any], None]:
        self.watched_from.append(params.get("resourceVersion"))
        if len(self.watched_from) == 1:
            raise Expired("410 Gone", 410)
        yield {"type": "MODIFIED", "object": self.event}
        self.sent.set()
        await asyncio.Event().wait()

    async def close(self) -> None:
        pass


async def test_the_cache_lists_again_after_410_gone_and_drops_what_vanished() -> None:
    a = execution_body("a", "j", "m-a", phase="Running")
    b = execution_body("a", "j", "m-b", phase="Running")
    b_done = execution_body("a", "j", "m-b", phase="Succeeded")
    cache = Cache()
    api = FakeWatchApi([([a, b], "10"), ([b], "20")], b_done)
    watch = dict(zip(KINDS, build_watches(cache, lambda kind: api), strict=True))["jobexecutions"]
    task = asyncio.create_task(watch.run())
    try:
        await asyncio.wait_for(api.sent.wait(), 5)
    finally:
        await watch.stop(task)
    assert api.lists == 2
    assert api.watched_from[:2] == ["10", "20"]
    assert "jobexecutions" in cache.synced
    assert cache.execution_by_message_id("m-a") is None
    found = cache.execution_by_message_id("m-b")
    assert found is not None
    assert found.status.phase == "Succeeded"
