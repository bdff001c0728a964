"""Conditions as Kubernetes objects keep them: one per type, with the time it last changed.

Every writer of ``status.conditions`` (the reconciler for executions, the pollers for
queues, the definition checker) builds them here, so a condition whose status did not
change keeps its ``lastTransitionTime`` and an unchanged status writes nothing new.
"""

from __future__ import annotations

from datetime import UTC, datetime

from barbeque.api.models import Condition

READY = "Ready"


def condition(
    type_: str, status: bool, reason: str, message: str, generation: int | None
) -> Condition:
    written = Condition(
        type=type_,
        status="True" if status else "False",
        reason=reason,
        message=message,
        last_transition_time=datetime.now(UTC),
    )
    if generation is not None:  # fields never set are left out of the patch, not null
        written.observed_generation = generation
    return written


def merge_conditions(existing: list[Condition], updates: list[Condition]) -> list[Condition]:
    """Replace conditions by type; keep the transition time when the status did not change."""
    merged = {c.type: c for c in existing}
    for update in updates:
        old = merged.get(update.type)
        if old is not None and old.status == update.status:
            update = update.model_copy(update={"last_transition_time": old.last_transition_time})
        merged[update.type] = update
    return list(merged.values())


def find(conditions: list[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.type == type_), None)
