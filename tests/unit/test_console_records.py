"""The console keeps each execution as a compact record and rebuilds the model on demand.

The cache holds every execution the cluster retains (100,000 is a goal of the growth
benchmark, ``python -m bench.growth``), so what one costs is a property of the design:
bytes counted by tracemalloc are deterministic, unlike a wall-clock or RSS budget.
"""

from __future__ import annotations

import gc
import tracemalloc
import uuid

import pytest

from barbeque.api.models import JobExecution
from barbeque_dashboard.cache import Cache
from barbeque_dashboard.records import ExecutionRecord
from tests.support import samples

pytestmark = pytest.mark.unit

LISTED = {
    "metadata": ("name", "namespace", "creation_timestamp"),
    "spec": (
        "application", "job", "queue", "message_id", "attempt", "retry_of", "not_before",
        "invalid_reason",
    ),
    "status": (
        "phase", "reason", "message", "job_name", "exit_code", "started_at", "finished_at",
        "retried_by",
    ),
}  # fmt: skip


def test_a_record_answers_the_listed_fields_and_rebuilds_the_same_model() -> None:
    body = samples.execution("blog", "m-1", retryOf="m-0", attempt=1)
    model = JobExecution.model_validate(body)
    record = ExecutionRecord.pack(model, body)

    for part, names in LISTED.items():
        for name in names:
            assert getattr(getattr(record, part), name) == getattr(getattr(model, part), name)
    assert record.model() == model
    assert body["metadata"]["managedFields"], "the caller's body is left as it was"


def test_the_cache_serves_models_for_one_execution_and_records_for_lists() -> None:
    cache = Cache()
    for i in range(3):
        cache.apply("jobexecutions", "ADDED", samples.execution("blog", f"m-{i}"))
    cache.apply("jobexecutions", "MODIFIED", samples.execution("blog", "m-1", queue="other"))

    found = cache.execution_by_message_id("m-1")
    assert isinstance(found, JobExecution)
    assert found.spec.queue == "other"
    assert found.status.logs is not None
    assert found.status.logs.prefix == "blog/send-mail/m-1/"
    assert [e.metadata.name for e in cache.executions()] == ["m-2", "m-1", "m-0"]
    assert all(isinstance(e, ExecutionRecord) for e in cache.executions_of("blog", "send-mail"))


def test_an_older_version_does_not_replace_a_newer_record() -> None:
    cache = Cache()
    cache.apply("jobexecutions", "ADDED", samples.execution("blog", "m-1", queue="new"))
    stale = samples.execution("blog", "m-1", queue="old")
    stale["metadata"]["resourceVersion"] = "7"
    cache.apply("jobexecutions", "MODIFIED", stale)

    found = cache.execution("blog", "m-1")
    assert found is not None
    assert found.spec.queue == "new"


def test_a_retained_execution_costs_the_cache_under_two_kilobytes() -> None:
    count = 1000
    bodies = [samples.execution("blog", str(uuid.uuid4())) for _ in range(count)]
    cache = Cache()
    gc.collect()
    tracemalloc.start()
    try:
        for body in bodies:
            cache.apply("jobexecutions", "ADDED", body)
        cache.listed("jobexecutions")
        cache.executions()
        cache.executions_of("blog", "send-mail")
        gc.collect()
        held, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    # As pydantic models they held ~7,400 bytes each.
    assert len(cache.records) == count
    assert held / count < 2000, f"{held / count:.0f} bytes per execution"
