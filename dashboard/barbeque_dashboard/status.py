"""cookpad/barbeque's status words for our JobExecution phases.

barbeque has one status per execution: ``pending``, ``running``, ``success``, ``failed``,
``retried``, ``error``. An execution that was retried reads ``retried`` while its retry
chain is still going, and once the last retry of the chain has finished, the final
status of that last retry (barbeque updates the retried execution the same way).
"""

from __future__ import annotations

from collections.abc import Callable

from barbeque.api.models import Phase
from barbeque_dashboard.records import ExecutionView

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


def own_status(execution: ExecutionView) -> str:
    """The status of this execution alone, ignoring its retries."""
    phase = execution.status.phase
    if execution.spec.invalid_reason and phase is None:
        return ERROR
    return _BY_PHASE.get(phase, PENDING)


def is_finished(execution: ExecutionView) -> bool:
    return own_status(execution) in (SUCCESS, FAILED, ERROR)


Following = Callable[[ExecutionView], "ExecutionView | None"]
"""The next execution of a retry chain (``status.retriedBy``, or the newest execution whose
``spec.retryOf`` names it), or None when none is known yet."""


def is_retryable(execution: ExecutionView, following: Following | None = None) -> bool:
    """barbeque's ``retryable?``: failed or error, and not retried already."""
    if own_status(execution) not in (FAILED, ERROR) or execution.status.retried_by:
        return False
    return following is None or following(execution) is None


def last_retry(execution: ExecutionView, following: Following) -> ExecutionView | None:
    """The last execution of the chain starting at ``execution``.

    None when the chain names a retry that is not recorded (yet).
    """
    current = execution
    seen = {execution.metadata.name}
    for _ in range(MAX_CHAIN):
        after = following(current)
        if after is None:
            return None if current.status.retried_by else current
        if after.metadata.name in seen:
            return current  # a loop: stop where it closes
        seen.add(after.metadata.name)
        current = after
    return None


def barbeque_status(execution: ExecutionView, following: Following) -> str:
    """The status barbeque's API would answer for ``execution``.

    An execution that was retried reads ``retried`` until the last retry of its chain has
    finished, then that retry's status.
    """
    last = last_retry(execution, following)
    if last is execution:
        return own_status(execution)
    if last is None or not is_finished(last):
        return RETRIED
    return own_status(last)


def matches(execution: ExecutionView, wanted: str, status: str) -> bool:
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
