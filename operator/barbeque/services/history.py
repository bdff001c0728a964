"""Which finished executions to delete, so history does not drown etcd.

An execution is deleted when it is older than its definition's TTL or beyond the number
of executions kept per definition, but only once its record is safe in S3 and only when
no retry of its chain is still to run (a retry is owned by the execution it retries, so
deleting that one would delete the pending retry too).

The operator keeps no finished execution in memory; a periodic sweep
(``HistoryCollector``, a component of the active replica) pages through all of them as
plain ``Record`` tuples (a few hundred bytes each, dropped after the sweep). The sweep
also counts them for the executions-by-phase gauge and picks up uploads to S3 left to do.
Before deleting, it adds the executions to their definition's hourly statistics
(``services.statistics``), which the console's statistics page reads for the hours whose
executions are gone.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import KW_ONLY, dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from barbeque import metrics
from barbeque.adapters.kube import KubeError, NotFound
from barbeque.api.models import FINISHED_PHASES, JobDefinition
from barbeque.controller.manager import cancel_all
from barbeque.services import statistics
from barbeque.services.store import Key, Store, parse_time

logger = logging.getLogger(__name__)


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
    created_at: datetime | None = None
    started_at: datetime | None = None

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
            created_at=parse_time(meta.get("creationTimestamp")),
            started_at=parse_time(status.get("startedAt")),
        )

    @property
    def seconds(self) -> float | None:
        """How long it ran, as the console shows it (None if it never started)."""
        if self.started_at and self.finished_at:
            return max(0.0, (self.finished_at - self.started_at).total_seconds())
        return None


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


def needs_follow_up(body: dict[str, Any]) -> bool:
    """Finished, but the upload of its record to S3 is still to be done."""
    status = body.get("status") or {}
    logs = status.get("logs")
    return (
        status.get("phase") in FINISHED_PHASES
        and isinstance(logs, dict)
        and logs.get("uploaded") is False
    )


class HistoryApi(Protocol):
    def pages(self, kind: str) -> AsyncIterator[list[dict[str, Any]]]: ...
    async def delete_execution(self, namespace: str, name: str) -> None: ...
    async def get_configmap(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    async def write_configmap(self, body: dict[str, Any]) -> None: ...


@dataclass(eq=False, repr=False)
class HistoryCollector:
    """Sweeps finished executions on the active replica; exports the phase gauge."""

    _: KW_ONLY
    store: Store
    kube: HistoryApi
    reconcile_later: Callable[[Key], None]
    ttl_seconds: int = 7 * 24 * 3600
    keep: int = 1000
    interval_seconds: float = 60.0
    gauge_seconds: float = 15.0

    def __post_init__(self) -> None:
        # Finished executions by (application, job, phase), counted by the last sweep.
        self._finished_counts: Counter[tuple[str, str, str]] = Counter()
        self._phase_series: set[tuple[str, str, str]] = set()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._sweep_loop(), name="barbeque-history"),
            asyncio.create_task(self._gauge_loop(), name="barbeque-phase-gauge"),
        ]

    async def stop(self) -> None:
        await cancel_all(*self._tasks)
        self._tasks = []

    async def _sweep_loop(self) -> None:
        while True:
            try:
                await self.sweep()
            except KubeError as exc:
                logger.warning("Sweeping finished executions failed: %s", exc)
            await asyncio.sleep(self.interval_seconds)

    async def _gauge_loop(self) -> None:
        while True:
            self.export_phase_gauge()
            await asyncio.sleep(self.gauge_seconds)

    async def sweep(self) -> int:
        """Page through every execution: count finished ones, pick up uploads left to do
                (finished while S3 was down, then the operator restarted) and delete executions
                past their definition's history policy, once their definition's hourly statistics
        count them. Returns how many were deleted."""
        records: list[Record] = []
        finished: Counter[tuple[str, str, str]] = Counter()
        async for page in self.kube.pages("jobexecutions"):
            for body in page:
                record = Record.from_body(body)
                records.append(record)
                if not record.finished:
                    continue
                labels = metrics.definition_labels(
                    record.application,
                    record.job,
                    known=self.store.definition(record.key[0], record.job) is not None,
                )
                finished[(*labels, record.phase or "")] += 1
                if (
                    needs_follow_up(body)
                    and self.store.execution(record.key) is None
                    and self.store.put_execution(body) is not None
                ):
                    self.reconcile_later(record.key)
        self._finished_counts = finished
        # Stale events arrive within seconds; a tombstone older than a sweep has served.
        self.store.prune_settled(max(60.0, self.interval_seconds))
        now = datetime.now(UTC)
        expired = select_expired(records, self.store.definitions, now, self.ttl_seconds, self.keep)
        expired = await self._keep_statistics(expired, records, now)
        deleted = 0
        for namespace, name in expired:
            try:
                await self.kube.delete_execution(namespace, name)
            except NotFound:
                pass
            except KubeError as exc:
                logger.warning("Could not delete old execution %s/%s: %s", namespace, name, exc)
                continue
            self.store.delete_execution(namespace, name)
            deleted += 1
        if deleted:
            metrics.EXECUTIONS_COLLECTED.inc(deleted)
            logger.info("Deleted %d finished executions past their history policy", deleted)
        return deleted

    async def _keep_statistics(
        self, expired: list[Key], records: list[Record], now: datetime
    ) -> list[Key]:
        """Add the executions about to be deleted to their definition's hourly statistics
        (services.statistics); returns those that may be deleted now. A definition whose
        statistics cannot be written keeps its executions until a later sweep."""
        by_key = {record.key: record for record in records}
        groups: dict[tuple[str, str], list[Record]] = defaultdict(list)
        for key in expired:
            record = by_key[key]
            definition = self.store.definition(record.namespace, record.job)
            # No definition, no page to show them on: they go without statistics.
            name = definition.metadata.name if definition is not None else ""
            groups[(record.namespace, name)].append(record)
        live: dict[str, set[str]] = defaultdict(set)
        for record in records:
            live[record.namespace].add(record.name)
        deletable: list[Key] = []
        for (namespace, name), group in groups.items():
            if name and not await self._record(namespace, name, group, live[namespace], now):
                continue
            deletable.extend(record.key for record in group)
        return deletable

    async def _record(
        self, namespace: str, name: str, group: list[Record], live: set[str], now: datetime
    ) -> bool:
        definition = self.store.definitions.get((namespace, name))
        try:
            found = await self.kube.get_configmap(namespace, statistics.configmap_name(name))
            stats = statistics.HourlyStatistics.from_configmap(found)
            stats.prune(now, live)
            for record in group:
                stats.add(
                    record.name, record.created_at or record.finished_at or now, record.seconds
                )
            uid = definition.metadata.uid if definition is not None else None
            await self.kube.write_configmap(stats.configmap(namespace, name, uid))
        except KubeError as exc:
            logger.warning(
                "Keeping %d executions of %s/%s: cannot write their statistics: %s",
                len(group),
                namespace,
                name,
                exc,
            )
            return False
        return True

    def export_phase_gauge(self) -> None:
        counts: Counter[tuple[str, str, str]] = Counter(self._finished_counts)
        for execution in self.store.iter_executions():
            phase = execution.status.phase or "Pending"
            if phase not in FINISHED_PHASES:
                known = self.store.definition(
                    execution.metadata.namespace or "", execution.spec.job
                )
                application, definition = metrics.definition_labels(
                    execution.spec.application, execution.spec.job, known=known is not None
                )
                counts[(application, definition, phase)] += 1
        for series in self._phase_series - set(counts):
            metrics.EXECUTIONS_BY_PHASE.labels(*series).set(0)
        for series, count in counts.items():
            metrics.EXECUTIONS_BY_PHASE.labels(*series).set(count)
        self._phase_series |= set(counts)

    def forget_definition(self, namespace: str, name: str) -> None:
        """A deleted definition's phase series: no longer exported, not even as zeros."""
        gone = {labels for labels in self._phase_series if labels[:2] == (namespace, name)}
        self._phase_series -= gone
        for labels in gone:
            self._finished_counts.pop(labels, None)
        metrics.forget_definition(namespace, name)
