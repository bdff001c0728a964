"""A watch-backed, in-memory view of the custom resources, for every read of the service.

One ``controller.listwatch.ListWatch`` per kind, on the service's event loop, lists the
objects once, then watches from the list's resourceVersion; when the watch expires
(410 Gone) it lists again and reports what vanished meanwhile. Requests never list the
API server: they read this cache, which reuses the operator's ``Store`` (same parsing,
same "newer resourceVersion wins" rule).
"""

from __future__ import annotations

import functools
import logging
import threading
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from barbeque.api.models import JobDefinition, JobExecution, JobQueue
from barbeque.api.subscriptions import SNSSubscription
from barbeque.controller.listwatch import ListWatch, WatchApi
from barbeque.controller.store import Key, newer
from barbeque.services.store import Store
from barbeque_dashboard.records import ExecutionRecord, ExecutionView

logger = logging.getLogger(__name__)

KINDS = ("jobqueues", "jobdefinitions", "jobexecutions", "snssubscriptions", "namespaces")
# Readiness waits for these; SNS subscriptions only feed their own listing, which should
# not keep the console down (say, before an upgrade has installed their CRD), and
# namespaces only name applications that are not namespace names.
REQUIRED_KINDS = KINDS[:3]
_EPOCH = datetime.fromtimestamp(0, UTC)


def created_at(execution: ExecutionView) -> datetime:
    return execution.metadata.creation_timestamp or _EPOCH


@dataclass(frozen=True)
class Tombstone:
    """What is left of a finished execution deleted from the cluster (its record is in S3)."""

    message_id: str
    namespace: str
    name: str
    status: str
    bucket: str | None
    prefix: str | None


class Cache:
    """Thread-safe view of queues, definitions and executions, fed by watch events."""

    def __init__(self, max_gone: int = 200_000) -> None:
        self.store = Store()
        self.records: dict[Key, ExecutionRecord] = {}
        self._by_message_id: dict[str, Key] = {}
        self._lock = threading.RLock()
        self.generation = 0
        self.synced: set[str] = set()
        self._sorted: tuple[int, list[ExecutionRecord]] = (-1, [])
        # Executions grouped by a key ("job", "retry_of"), with the generation they are of.
        self._indexes: dict[str, tuple[int, dict[tuple[str, str], list[ExecutionRecord]]]] = {}
        self.last_error: str | None = None
        # Finished executions deleted while we watched, by message id, oldest first.
        self.gone: OrderedDict[str, Tombstone] = OrderedDict()
        self.max_gone = max_gone

    # -- feeding ------------------------------------------------------------------------------

    def apply(self, kind: str, event_type: str, body: dict[str, Any]) -> None:
        """Apply one watch event (ADDED, MODIFIED, DELETED) of ``kind``."""
        meta = body.get("metadata") or {}
        namespace, name = meta.get("namespace") or "", meta.get("name") or ""
        with self._lock:
            try:
                if event_type == "DELETED":
                    self._delete(kind, namespace, name)
                elif kind == "jobexecutions":
                    self._put_execution(body)
                elif kind == "jobdefinitions":
                    self.store.put_definition(body)
                elif kind == "jobqueues":
                    self.store.put_queue(body)
                elif kind == "snssubscriptions":
                    self.store.put_subscription(body)
                elif kind == "namespaces":
                    self.store.put_namespace(body)
            except ValueError as exc:  # pydantic's ValidationError is a ValueError
                logger.warning("Ignoring unreadable %s %s/%s: %s", kind, namespace, name, exc)
                return
            self.generation += 1

    def _put_execution(self, body: dict[str, Any]) -> None:
        meta = body.get("metadata") or {}
        key = (meta.get("namespace") or "", meta.get("name") or "")
        old = self.records.get(key)
        if old is not None and not newer(old.resource_version, meta.get("resourceVersion")):
            return
        record = ExecutionRecord.pack(JobExecution.model_validate(body), body)
        if old is not None and self._by_message_id.get(old.message_id) == key:
            del self._by_message_id[old.message_id]
        self.records[key] = record
        self._by_message_id[record.message_id] = key

    def _delete(self, kind: str, namespace: str, name: str) -> None:
        if kind == "jobexecutions":
            key = (namespace, name)
            old = self.records.pop(key, None)
            if old is not None:
                self._remember(old.model())
                if self._by_message_id.get(old.message_id) == key:
                    del self._by_message_id[old.message_id]
        elif kind == "jobdefinitions":
            self.store.delete_definition(namespace, name)
        elif kind == "jobqueues":
            self.store.delete_queue(name)
        elif kind == "snssubscriptions":
            self.store.delete_subscription(namespace, name)
        elif kind == "namespaces":
            self.store.delete_namespace(name)

    def replace(self, kind: str, items: Iterable[dict[str, Any]]) -> None:
        """A fresh list of ``kind``: apply it and forget objects that are gone."""
        items = list(items)
        with self._lock:
            keep = {
                ((i.get("metadata") or {}).get("namespace") or "", i["metadata"]["name"])
                for i in items
            }
            for namespace, name in self._keys(kind):
                if (namespace, name) not in keep:
                    self._delete(kind, namespace, name)
            for item in items:
                self.apply(kind, "ADDED", item)
        self.listed(kind)

    def listed(self, kind: str) -> None:
        """A complete LIST of ``kind`` was applied: the view of it is whole."""
        with self._lock:
            self.synced.add(kind)
            self.generation += 1

    def _keys(self, kind: str) -> list[tuple[str, str]]:
        if kind == "jobexecutions":
            return list(self.records)
        if kind == "jobdefinitions":
            return list(self.store.definitions)
        if kind == "snssubscriptions":
            return list(self.store.subscriptions)
        if kind == "namespaces":
            return [("", name) for name in self.store.named_namespaces]
        return [("", name) for name in self.store.queues]

    def _remember(self, execution: JobExecution) -> None:
        """Keep a line about a finished execution the operator deleted (history)."""
        from barbeque_dashboard import status as words

        if not words.is_finished(execution):
            return
        logs = execution.status.logs
        self.gone[execution.spec.message_id] = Tombstone(
            message_id=execution.spec.message_id,
            namespace=execution.metadata.namespace or "",
            name=execution.metadata.name,
            status=words.barbeque_status(execution, self.next_retry),
            bucket=logs.bucket if logs else None,
            prefix=logs.prefix if logs else None,
        )
        self.gone.move_to_end(execution.spec.message_id)
        while len(self.gone) > self.max_gone:
            self.gone.popitem(last=False)

    def tombstone(self, message_id: str) -> Tombstone | None:
        with self._lock:
            return self.gone.get(message_id)

    @property
    def ready(self) -> bool:
        return self.synced.issuperset(REQUIRED_KINDS)

    # -- reading ------------------------------------------------------------------------------

    def record(self, namespace: str, name: str) -> ExecutionRecord | None:
        return self.records.get((namespace, name))

    def execution(self, namespace: str, name: str) -> JobExecution | None:
        """One execution in full (a model rebuilt from its record)."""
        record = self.records.get((namespace, name))
        return record.model() if record is not None else None

    def execution_by_message_id(self, message_id: str) -> JobExecution | None:
        with self._lock:
            key = self._by_message_id.get(message_id)
            record = self.records.get(key) if key else None
        return record.model() if record is not None else None

    def executions(self) -> list[ExecutionRecord]:
        """Every execution, newest first (memoized until the next change)."""
        with self._lock:
            generation, cached = self._sorted
            if generation == self.generation:
                return cached
            ordered = sorted(
                self.records.values(),
                key=lambda e: (created_at(e), e.metadata.name),
                reverse=True,
            )
            self._sorted = (self.generation, ordered)
            return ordered

    def executions_of(self, application: str, job: str) -> list[ExecutionRecord]:
        """Executions of one job definition, newest first."""
        index = self._index("job", lambda e: (e.spec.application, e.spec.job))
        return index.get((application, job), [])

    def retries_of(self, namespace: str, name: str) -> list[ExecutionRecord]:
        """Executions whose ``spec.retryOf`` is ``name``, newest first."""
        index = self._index(
            "retry_of",
            lambda e: (e.metadata.namespace or "", e.spec.retry_of) if e.spec.retry_of else None,
        )
        return index.get((namespace, name), [])

    def _index(
        self, name: str, key_of: Callable[[ExecutionRecord], tuple[str, str] | None]
    ) -> dict[tuple[str, str], list[ExecutionRecord]]:
        """Executions grouped by ``key_of`` (None: in no group), newest first, built again
        only once the store has changed."""
        with self._lock:
            generation, index = self._indexes.get(name, (-1, {}))
            if generation != self.generation:
                grouped: dict[tuple[str, str], list[ExecutionRecord]] = defaultdict(list)
                for execution in self.executions():
                    key = key_of(execution)
                    if key is not None:
                        grouped[key].append(execution)
                index = dict(grouped)
                self._indexes[name] = (self.generation, index)
            return index

    def next_retry(self, execution: ExecutionView) -> ExecutionRecord | None:
        """The retry that follows ``execution``: its ``retriedBy``, else its newest child.

        Automatic retries are linked both ways by the operator; a manual retry (a JobRetry
        message) may only be linked from the child's ``spec.retryOf``.
        """
        namespace = execution.metadata.namespace or ""
        if execution.status.retried_by:
            return self.record(namespace, execution.status.retried_by)
        children = self.retries_of(namespace, execution.metadata.name)
        return children[0] if children else None

    def definitions(self) -> list[JobDefinition]:
        with self._lock:
            values = list(self.store.definitions.values())
        return sorted(values, key=lambda d: (d.metadata.namespace or "", d.metadata.name))

    def definition(self, application: str, job: str) -> JobDefinition | None:
        """The definition of a job of an application, by its barbeque name or namespace."""
        return self.store.definition(self.namespace_for(application) or application, job)

    def namespace_for(self, application: str) -> str | None:
        with self._lock:
            return self.store.namespace_for(application)

    def application_for(self, namespace: str) -> str:
        with self._lock:
            return self.store.application_for(namespace)

    def queues(self) -> list[JobQueue]:
        with self._lock:
            values = list(self.store.queues.values())
        return sorted(values, key=lambda q: q.metadata.name)

    def queue(self, name: str) -> JobQueue | None:
        return self.store.queues.get(name)

    def subscriptions(self) -> list[SNSSubscription]:
        with self._lock:
            values = list(self.store.subscriptions.values())
        return sorted(values, key=lambda s: (s.metadata.namespace or "", s.metadata.name))

    def applications(self) -> list[str]:
        with self._lock:
            names = {self.store.application_for(ns) for ns, _ in self.store.definitions}
            names.update(e.application for e in self.records.values())
        return sorted(n for n in names if n)


def build_watches(cache: Cache, client_for: Callable[[str], WatchApi]) -> list[ListWatch]:
    """One ListWatch per kind into ``cache``: the operator's watch machinery, so relists,
    bookmarks, 401 re-authentication and the request metrics are one implementation.
    ``client_for(kind)`` makes the HTTP half (``adapters.watch.WatchClient``)."""
    watches = []
    for kind in KINDS:

        def on_event(type_: str, body: dict[str, Any], kind: str = kind) -> None:
            cache.apply(kind, type_, body)

        def on_error(exc: Exception, kind: str = kind) -> None:
            cache.last_error = f"{kind}: {type(exc).__name__}: {exc}"[:500]

        watches.append(
            ListWatch(
                client_for(kind),
                on_event=on_event,
                on_listed=functools.partial(cache.listed, kind),
                on_error=on_error,
            )
        )
    return watches
