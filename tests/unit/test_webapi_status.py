"""barbeque's status words for our phases, and the retry-chain rule."""

from __future__ import annotations

import pytest

from barbeque.api.models import JobExecution
from barbeque_dashboard import status as words
from barbeque_dashboard.cache import Cache
from tests.support.webapi import execution_body

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
    return words.barbeque_status(execution, cache.execution)


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
    assert not words.is_retryable(first)
    assert words.is_retryable(last)


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
