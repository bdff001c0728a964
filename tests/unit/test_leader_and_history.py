"""Leader election on a Lease, and which finished executions history collection deletes."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from barbeque.adapters.kube import AlreadyExists, Conflict
from barbeque.api.models import JobDefinition
from barbeque.controller.leader import LeaderElector
from barbeque.services.history import Record, select_expired

pytestmark = pytest.mark.unit


class FakeLeases:
    """A Lease store with the API server's optimistic concurrency (resourceVersion)."""

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.version = 0

    async def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.lease)

    async def create_lease(self, body: dict[str, Any]) -> dict[str, Any]:
        if self.lease is not None:
            raise AlreadyExists("exists", 409)
        self.version += 1
        self.lease = copy.deepcopy(body)
        self.lease["metadata"]["resourceVersion"] = str(self.version)
        return copy.deepcopy(self.lease)

    async def replace_lease(self, body: dict[str, Any]) -> dict[str, Any]:
        assert self.lease is not None
        if body["metadata"]["resourceVersion"] != self.lease["metadata"]["resourceVersion"]:
            raise Conflict("409 Conflict: the object has been modified", 409)
        self.version += 1
        self.lease = copy.deepcopy(body)
        self.lease["metadata"]["resourceVersion"] = str(self.version)
        return copy.deepcopy(self.lease)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_one_replica_leads_and_another_takes_over_after_the_lease_expires() -> None:
    leases, clock = FakeLeases(), Clock()
    a = LeaderElector(leases, "ns", "lease", "a", lease_seconds=15, clock=clock)
    b = LeaderElector(leases, "ns", "lease", "b", lease_seconds=15, clock=clock)

    assert await a.try_acquire_or_renew() is True
    assert await b.try_acquire_or_renew() is False
    clock.now += 10
    assert await a.try_acquire_or_renew() is True  # renewed
    clock.now += 10
    assert await b.try_acquire_or_renew() is False  # a renewed 10 s ago: not expired
    clock.now += 16  # a died: no renewal for longer than the lease
    assert await b.try_acquire_or_renew() is True
    assert leases.lease is not None
    assert leases.lease["spec"]["holderIdentity"] == "b"
    assert leases.lease["spec"]["leaseTransitions"] == 1
    assert await a.try_acquire_or_renew() is False  # a came back: b leads now


async def test_a_released_lease_is_taken_at_once() -> None:
    leases, clock = FakeLeases(), Clock()
    a = LeaderElector(leases, "ns", "lease", "a", clock=clock)
    b = LeaderElector(leases, "ns", "lease", "b", clock=clock)
    assert await a.try_acquire_or_renew()
    a.leading = True
    await a.release()
    assert await b.try_acquire_or_renew() is True


async def test_two_candidates_racing_for_an_expired_lease_cannot_both_win() -> None:
    leases, clock = FakeLeases(), Clock()
    old = LeaderElector(leases, "ns", "lease", "old", clock=clock)
    assert await old.try_acquire_or_renew()
    b = LeaderElector(leases, "ns", "lease", "b", clock=clock)
    c = LeaderElector(leases, "ns", "lease", "c", clock=clock)
    await b.try_acquire_or_renew()
    await c.try_acquire_or_renew()
    clock.now += 20
    stale = await leases.get_lease("ns", "lease")
    assert await b.try_acquire_or_renew() is True
    original_get = leases.get_lease

    async def stale_get(namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(stale)

    leases.get_lease = stale_get  # type: ignore[method-assign]
    assert await c.try_acquire_or_renew() is False
    leases.get_lease = original_get  # type: ignore[method-assign]


NOW = datetime(2030, 1, 1, tzinfo=UTC)


def execution(
    name: str, finished_hours_ago: float | None, *, job: str = "notify", **status: Any
) -> Record:
    body: dict[str, Any] = {
        "metadata": {"name": name, "namespace": "blog"},
        "spec": {"application": "blog", "job": job, "messageId": name},
        "status": {"phase": "Running"},
    }
    if finished_hours_ago is not None:
        finished = NOW - timedelta(hours=finished_hours_ago)
        body["status"] = {
            "phase": "Succeeded",
            "finishedAt": finished.isoformat(),
            "logs": {"bucket": "b", "prefix": "p", "url": "s3://b/p", "uploaded": True},
        }
    body["status"].update(status)
    return Record.from_body(body)


def definition(**history: Any) -> dict[tuple[str, str], JobDefinition]:
    return {
        ("blog", "notify"): JobDefinition.model_validate(
            {
                "metadata": {"name": "notify", "namespace": "blog"},
                "spec": {"image": "x", "history": history},
            }
        )
    }


def test_finished_executions_older_than_the_ttl_are_deleted() -> None:
    executions = [execution("old", 30), execution("new", 1), execution("running", None)]
    expired = select_expired(executions, definition(ttlSeconds=24 * 3600), NOW, 10**9, 0)
    assert expired == [("blog", "old")]


def test_only_the_newest_are_kept_beyond_the_count() -> None:
    executions = [execution(f"e{i}", i) for i in range(5)]
    expired = select_expired(executions, definition(keep=2), NOW, 10**9, 1000)
    assert sorted(expired) == [("blog", "e2"), ("blog", "e3"), ("blog", "e4")]


def test_operator_defaults_apply_without_a_policy() -> None:
    executions = [execution("a", 2), execution("b", 0.5)]
    assert select_expired(executions, {}, NOW, 3600, 0) == [("blog", "a")]


def test_an_execution_whose_record_is_not_in_s3_yet_is_kept() -> None:
    pending_upload = execution(
        "x", 100, logs={"bucket": "b", "prefix": "p", "url": "s3://b/p", "uploaded": False}
    )
    assert select_expired([pending_upload], {}, NOW, 3600, 0) == []


def test_an_execution_with_a_retry_still_to_run_is_kept() -> None:
    parent = execution("p", 100, phase="Failed", retriedBy="p-retry-1")
    child = execution("p-retry-1", None, phase="Scheduled")
    assert select_expired([parent, child], {}, NOW, 3600, 0) == []
    child_done = execution("p-retry-1", 99)
    assert sorted(select_expired([parent, child_done], {}, NOW, 3600, 0)) == [
        ("blog", "p"),
        ("blog", "p-retry-1"),
    ]
