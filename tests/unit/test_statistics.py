"""Hourly statistics kept for collected executions: their ConfigMap, read back exactly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from barbeque.services.statistics import HourlyStatistics, configmap_name, hour_of

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
