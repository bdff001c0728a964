"""Which finished executions to delete, so history does not drown etcd.

An execution is deleted when it is older than its definition's TTL or beyond the number
of executions kept per definition, but only once its record is safe in S3 and only when
no retry of its chain is still to run (a retry is owned by the execution it retries, so
deleting that one would delete the pending retry too).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime

from barbeque.api.models import FINISHED_PHASES, JobDefinition, JobExecution
from barbeque.services.store import Key


def _chain_finished(execution: JobExecution, by_key: dict[Key, JobExecution]) -> bool:
    namespace = execution.metadata.namespace or ""
    seen = set()
    current: JobExecution | None = execution
    while current is not None and current.status.retried_by:
        child_key = (namespace, current.status.retried_by)
        if child_key in seen:
            break
        seen.add(child_key)
        current = by_key.get(child_key)
        if current is not None and current.status.phase not in FINISHED_PHASES:
            return False
    return True


def select_expired(
    executions: Iterable[JobExecution],
    definitions: dict[Key, JobDefinition],
    now: datetime,
    default_ttl_seconds: int,
    default_keep: int,
    limit: int = 500,
) -> list[Key]:
    by_key = {(e.metadata.namespace or "", e.metadata.name): e for e in executions}
    finished: dict[Key, list[JobExecution]] = defaultdict(list)
    for execution in by_key.values():
        if execution.status.phase in FINISHED_PHASES and execution.status.finished_at:
            finished[(execution.metadata.namespace or "", execution.spec.job)].append(execution)

    expired: list[Key] = []
    for definition_key, group in finished.items():
        definition = definitions.get(definition_key)
        history = definition.spec.history if definition is not None else None
        ttl = (history.ttl_seconds if history and history.ttl_seconds is not None else None) or (
            default_ttl_seconds
        )
        keep = history.keep if history and history.keep is not None else default_keep
        group.sort(key=lambda e: e.status.finished_at or now, reverse=True)
        for index, execution in enumerate(group):
            finished_at = execution.status.finished_at or now
            too_old = (now - finished_at).total_seconds() > ttl
            too_many = keep > 0 and index >= keep
            if not (too_old or too_many):
                continue
            logs = execution.status.logs
            if logs is not None and not logs.uploaded:
                continue  # its record is not in S3 yet
            if not _chain_finished(execution, by_key):
                continue
            expired.append((execution.metadata.namespace or "", execution.metadata.name))
            if len(expired) >= limit:
                return expired
    return expired
