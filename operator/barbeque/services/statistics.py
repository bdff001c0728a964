"""Hourly statistics of a definition that outlive its executions.

The console's statistics page shows executions per hour and their average duration for
up to 30 days, but history collection deletes finished executions after 7 days (or past
``history.keep``). Before it deletes them, the collector adds them to hourly buckets kept
in a ConfigMap per definition (``barbeque-statistics-<definition>``, owned by the
definition, so it goes with it); the page adds those buckets to the executions still in
the cluster.

An execution is counted exactly once: the names the collector has counted but may not
have deleted yet are kept with the buckets (``pending``), and the console skips live
executions of those names; the collector drops names from ``pending`` once they are gone.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from barbeque.api.models import API_VERSION, LABEL_JOB, LABEL_MANAGED_BY, MANAGED_BY
from barbeque.services.naming import label_value

PREFIX = "barbeque-statistics-"
# The page offers up to 30 days; a day more so the oldest hour shown is whole.
KEEP = timedelta(days=31)
LABEL_COMPONENT = "app.kubernetes.io/component"
COMPONENT = "statistics"


def configmap_name(definition: str) -> str:
    """A ConfigMap name (≤ 253 characters) for a definition name of any length."""
    name = PREFIX + definition
    if len(name) <= 253:
        return name
    digest = hashlib.sha256(definition.encode()).hexdigest()[:10]
    return f"{name[: 253 - 11]}-{digest}"


def hour_of(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


@dataclass
class Bucket:
    """One hour: executions created in it, and the durations of those that ran."""

    count: int = 0
    seconds: float = 0.0
    timed: int = 0

    def add(self, seconds: float | None) -> None:
        self.count += 1
        if seconds is not None:
            self.seconds += seconds
            self.timed += 1


@dataclass
class HourlyStatistics:
    """The buckets of one definition, by the hour they start, and the names counted."""

    hours: dict[datetime, Bucket] = field(default_factory=dict)
    pending: set[str] = field(default_factory=set)
    resource_version: str | None = None

    def add(self, name: str, created: datetime, seconds: float | None) -> None:
        if name in self.pending:
            return  # counted by an earlier sweep whose delete did not happen
        self.hours.setdefault(hour_of(created), Bucket()).add(seconds)
        self.pending.add(name)

    def prune(self, now: datetime, live: Iterable[str]) -> None:
        """Forget hours no page shows and names no longer in the cluster."""
        oldest = hour_of(now - KEEP)
        self.hours = {hour: b for hour, b in self.hours.items() if hour >= oldest}
        self.pending &= set(live)

    # -- the ConfigMap ------------------------------------------------------------------------

    @classmethod
    def from_configmap(cls, body: dict[str, Any] | None) -> HourlyStatistics:
        """Read what ``configmap`` wrote; an unreadable value counts as empty, not an error
        (the page must still show the executions in the cluster)."""
        if not body:
            return cls()
        data = body.get("data") or {}
        hours: dict[datetime, Bucket] = {}
        try:
            for epoch, (count, seconds, timed) in json.loads(data.get("hours", "{}")).items():
                hours[datetime.fromtimestamp(int(epoch), UTC)] = Bucket(
                    int(count), float(seconds), int(timed)
                )
            pending = {str(n) for n in json.loads(data.get("pending", "[]"))}
        except (ValueError, TypeError, AttributeError):
            hours, pending = {}, set()
        return cls(hours, pending, (body.get("metadata") or {}).get("resourceVersion"))

    def configmap(self, namespace: str, definition: str, owner_uid: str | None) -> dict[str, Any]:
        hours = {
            str(int(hour.timestamp())): [b.count, round(b.seconds, 3), b.timed]
            for hour, b in sorted(self.hours.items())
        }
        metadata: dict[str, Any] = {
            "name": configmap_name(definition),
            "namespace": namespace,
            "labels": {
                LABEL_MANAGED_BY: MANAGED_BY,
                LABEL_COMPONENT: COMPONENT,
                LABEL_JOB: label_value(definition),
            },
        }
        if self.resource_version:
            metadata["resourceVersion"] = self.resource_version
        if owner_uid:
            metadata["ownerReferences"] = [
                {
                    "apiVersion": API_VERSION,
                    "kind": "JobDefinition",
                    "name": definition,
                    "uid": owner_uid,
                }
            ]
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": metadata,
            "data": {
                "hours": json.dumps(hours, separators=(",", ":")),
                "pending": json.dumps(sorted(self.pending), separators=(",", ":")),
            },
        }
