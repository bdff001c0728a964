"""Which finished executions to delete, so history does not drown etcd.

An execution is deleted when it is older than its definition's TTL or beyond the number
of executions kept per definition, but only once its record is safe in S3 and only when
no retry of its chain is still to run (a retry is owned by the execution it retries, so
deleting that one would delete the pending retry too).

The operator keeps no finished execution in memory; a periodic sweep pages through all
of them as plain ``Record`` tuples (a few hundred bytes each, dropped after the sweep).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from barbeque.api.models import FINISHED_PHASES, JobDefinition
from barbeque.services.store import Key, parse_time


@dataclass(frozen=True, slots=True)
class Record:
    """What history collection needs to know of one execution."""

    namespace: str
    name: str
    application: str
    job: str
    phase: str | None
    finished_at: datetime | None
    uploaded: bool | None  # None: no upload attempted yet
    retried_by: str | None

    @property
    def key(self) -> Key:
        return (self.namespace, self.name)

    @property
    def finished(self) -> bool:
        return self.phase in FINISHED_PHASES

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> Record:
        meta = body.get("metadata") or {}
        spec = body.get("spec") or {}
        status = body.get("status") or {}
        logs = status.get("logs")
        return cls(
            namespace=meta.get("namespace", ""),
            name=meta.get("name", ""),
            application=spec.get("application") or "",
            job=spec.get("job") or "",
            phase=status.get("phase"),
            finished_at=parse_time(status.get("finishedAt")),
            uploaded=bool(logs.get("uploaded")) if isinstance(logs, dict) else None,
            retried_by=status.get("retriedBy"),
        )


def _chain_finished(record: Record, by_key: dict[Key, Record]) -> bool:
    seen = set()
    current: Record | None = record
    while current is not None and current.retried_by:
        child_key = (record.namespace, current.retried_by)
        if child_key in seen:
            break
        seen.add(child_key)
        current = by_key.get(child_key)
        if current is not None and not current.finished:
            return False
    return True


def select_expired(
    records: Iterable[Record],
    definitions: dict[Key, JobDefinition],
    now: datetime,
    default_ttl_seconds: int,
    default_keep: int,
    limit: int = 500,
) -> list[Key]:
    by_key = {record.key: record for record in records}
    finished: dict[Key, list[Record]] = defaultdict(list)
    for record in by_key.values():
        if record.finished and record.finished_at:
            finished[(record.namespace, record.job)].append(record)

    expired: list[Key] = []
    for definition_key, group in finished.items():
        definition = definitions.get(definition_key)
        history = definition.spec.history if definition is not None else None
        ttl = (history.ttl_seconds if history and history.ttl_seconds is not None else None) or (
            default_ttl_seconds
        )
        keep = history.keep if history and history.keep is not None else default_keep
        group.sort(key=lambda r: r.finished_at or now, reverse=True)
        for index, record in enumerate(group):
            finished_at = record.finished_at or now
            too_old = (now - finished_at).total_seconds() > ttl
            too_many = keep > 0 and index >= keep
            if not (too_old or too_many):
                continue
            if record.uploaded is False:
                continue  # its record is not in S3 yet
            if not _chain_finished(record, by_key):
                continue
            expired.append(record.key)
            if len(expired) >= limit:
                return expired
    return expired
