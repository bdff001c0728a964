"""cookpad/barbeque's status words for our JobExecution phases.

barbeque has one status per execution: ``pending``, ``running``, ``success``, ``failed``,
``retried``, ``error``. An execution that was retried reads ``retried`` while its retry
chain is still going, and once the last retry of the chain has finished, the final
status of that last retry (barbeque updates the retried execution the same way).
"""

from __future__ import annotations

from collections.abc import Callable

from barbeque.api.models import JobExecution, Phase

PENDING = "pending"
RUNNING = "running"
SUCCESS = "success"
FAILED = "failed"
RETRIED = "retried"
ERROR = "error"
STATUSES = (PENDING, RUNNING, SUCCESS, FAILED, RETRIED, ERROR)

_BY_PHASE = {
    None: PENDING,
    Phase.PENDING.value: PENDING,
    Phase.SCHEDULED.value: PENDING,
    Phase.RUNNING.value: RUNNING,
    Phase.SUCCEEDED.value: SUCCESS,
    Phase.FAILED.value: FAILED,
    Phase.ERROR.value: ERROR,
}

MAX_CHAIN = 1000


def own_status(execution: JobExecution) -> str:
    """The status of this execution alone, ignoring its retries."""
    phase = execution.status.phase
    if execution.spec.invalid_reason and phase is None:
        return ERROR
    return _BY_PHASE.get(phase, PENDING)


def is_finished(execution: JobExecution) -> bool:
    return own_status(execution) in (SUCCESS, FAILED, ERROR)


def is_retryable(execution: JobExecution) -> bool:
    """barbeque's ``retryable?``: failed or error, and not retried already."""
    return own_status(execution) in (FAILED, ERROR) and not execution.status.retried_by


def last_retry(
    execution: JobExecution, find: Callable[[str, str], JobExecution | None]
) -> JobExecution | None:
    """The last execution of the retry chain starting at ``execution`` (None if unknown)."""
    current = execution
    for _ in range(MAX_CHAIN):
        name = current.status.retried_by
        if not name:
            return current
        following = find(current.metadata.namespace or "", name)
        if following is None:
            return None
        current = following
    return None


def barbeque_status(
    execution: JobExecution, find: Callable[[str, str], JobExecution | None]
) -> str:
    """The status barbeque's API would answer for ``execution``.

    ``find(namespace, name)`` looks up an execution by name (the cache's lookup).
    """
    if not execution.status.retried_by:
        return own_status(execution)
    last = last_retry(execution, find)
    if last is None or not is_finished(last):
        return RETRIED
    return own_status(last)


def matches(execution: JobExecution, wanted: str, status: str) -> bool:
    """Whether an execution whose barbeque status is ``status`` passes a filter word.

    Filters accept barbeque's words and our phase names (case-insensitive).
    """
    wanted = wanted.lower()
    if wanted in STATUSES:
        return status == wanted
    if wanted == "scheduled":
        return execution.status.phase == Phase.SCHEDULED.value
    phase = (execution.status.phase or "Pending").lower()
    return phase == wanted
