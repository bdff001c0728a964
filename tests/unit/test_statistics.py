"""Hourly statistics kept for collected executions: their ConfigMap, read back exactly."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from barbeque.adapters.kube import TransientError
from barbeque.services.history import HistoryCollector
from barbeque.services.statistics import HourlyStatistics, configmap_name, hour_of
from barbeque.services.store import Store

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 29, 12, 30, tzinfo=UTC)


def test_kept_statistics_survive_their_configmap() -> None:
    stats = HourlyStatistics()
    stats.add("a", NOW - timedelta(minutes=5), 3.0)
    stats.add("b", NOW - timedelta(minutes=20), None)  # never started: counted, not timed
    stats.add("c", NOW - timedelta(days=10), 7.5)
    body = stats.configmap("shop", "send-mail", "uid-1")
    assert body["metadata"]["name"] == "barbeque-statistics-send-mail"
    assert body["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    body["metadata"]["resourceVersion"] = "42"
    again = HourlyStatistics.from_configmap(body)
    assert again.hours[hour_of(NOW)].count == 2
    assert again.hours[hour_of(NOW)].seconds == 3.0
    assert again.hours[hour_of(NOW)].timed == 1
    assert again.hours[hour_of(NOW - timedelta(days=10))].count == 1
    assert again.pending == {"a", "b", "c"}
    assert again.resource_version == "42"


def test_a_name_is_counted_once_and_old_hours_and_gone_names_are_forgotten() -> None:
    stats = HourlyStatistics()
    stats.add("a", NOW, 1.0)
    stats.add("a", NOW, 1.0)  # a sweep whose delete failed sees it again
    stats.add("old", NOW - timedelta(days=32), 1.0)
    assert stats.hours[hour_of(NOW)].count == 1
    stats.prune(NOW, live=["a"])
    assert list(stats.hours) == [hour_of(NOW)]
    assert stats.pending == {"a"}


def test_an_unreadable_configmap_counts_as_empty() -> None:
    broken = {"metadata": {"resourceVersion": "7"}, "data": {"hours": "{not json"}}
    stats = HourlyStatistics.from_configmap(broken)
    assert stats.hours == {}
    assert stats.resource_version == "7"  # so the next write replaces it


def test_long_definition_names_get_a_bounded_configmap_name() -> None:
    name = configmap_name("x" * 253)
    assert len(name) == 253
    assert name != configmap_name("x" * 252 + "y")


class History:
    """The API server as the history collector sees it: executions, ConfigMaps, and a
    delete or ConfigMap write that fails on demand."""

    def __init__(self, executions: list[dict[str, Any]]) -> None:
        self.executions = {e["metadata"]["name"]: e for e in executions}
        self.configmaps: dict[tuple[str, str], dict[str, Any]] = {}
        self.fail_writes = False
        self.fail_deletes = False

    async def pages(self, kind: str) -> AsyncIterator[list[dict[str, Any]]]:
        yield [copy.deepcopy(e) for e in self.executions.values()]

    async def delete_execution(self, namespace: str, name: str) -> None:
        if self.fail_deletes:
            raise TransientError("503 Service Unavailable", 503)
        self.executions.pop(name, None)

    async def get_configmap(self, namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.configmaps.get((namespace, name)))

    async def write_configmap(self, body: dict[str, Any]) -> None:
        if self.fail_writes:
            raise TransientError("503 Service Unavailable", 503)
        meta = body["metadata"]
        stored = copy.deepcopy(body)
        stored["metadata"]["resourceVersion"] = str(int(meta.get("resourceVersion") or 0) + 1)
        self.configmaps[(meta["namespace"], meta["name"])] = stored


def finished(name: str, minutes_ago: int) -> dict[str, Any]:
    at = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    stamp = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "metadata": {"name": name, "namespace": "shop", "creationTimestamp": stamp},
        "spec": {"application": "shop", "job": "mail", "messageId": name},
        "status": {"phase": "Succeeded", "startedAt": stamp, "finishedAt": stamp},
    }


async def test_history_counts_what_it_deletes_once_and_deletes_nothing_uncounted() -> None:
    store = Store()
    store.put_definition(
        {
            "metadata": {"name": "mail", "namespace": "shop", "uid": "uid-mail"},
            "spec": {"image": "x", "history": {"keep": 1}},
        }
    )
    api = History([finished(f"e{i}", minutes_ago=10 - i) for i in range(4)])
    collector = HistoryCollector(store=store, kube=api, reconcile_later=lambda key: None)

    # The statistics cannot be written: nothing is deleted, nothing is lost.
    api.fail_writes = True
    assert await collector.sweep() == 0
    assert len(api.executions) == 4

    # They are written, but the deletes fail: counted once, even when swept again.
    api.fail_writes, api.fail_deletes = False, True
    await collector.sweep()
    await collector.sweep()
    stats = HourlyStatistics.from_configmap(api.configmaps[("shop", configmap_name("mail"))])
    assert sum(b.count for b in stats.hours.values()) == 3
    assert stats.pending == {"e0", "e1", "e2"}

    api.fail_deletes = False
    assert await collector.sweep() == 3
    assert list(api.executions) == ["e3"]
    body = api.configmaps[("shop", configmap_name("mail"))]
    assert body["metadata"]["ownerReferences"][0]["uid"] == "uid-mail"
    stats = HourlyStatistics.from_configmap(body)
    assert sum(b.count for b in stats.hours.values()) == 3
