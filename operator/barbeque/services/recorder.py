"""Warning Events on our objects, so `kubectl describe` says what went wrong.

Only trouble is recorded (a failed or erroring execution, one waiting for a node, a queue
that cannot be resolved, a definition that is invalid): the happy path writes no Event,
so an execution that succeeds costs the API server nothing more. An Event is a side
note, best effort: when its create fails the operator logs it and goes on.
"""

from __future__ import annotations

import logging
from dataclasses import KW_ONLY, dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from barbeque import metrics
from barbeque.adapters.kube import AlreadyExists, KubeError
from barbeque.services.builders import build_event, object_reference

logger = logging.getLogger(__name__)


class EventApi(Protocol):
    async def create_event(self, body: dict[str, Any]) -> None: ...


@dataclass(eq=False, repr=False)
class Recorder:
    _: KW_ONLY
    kube: EventApi
    # reportingInstance: this replica (the pod name in the chart).
    instance: str

    async def warning(
        self,
        kind: str,
        name: str,
        namespace: str | None,
        uid: str | None,
        *,
        reason: str,
        note: str,
        action: str,
    ) -> None:
        body = build_event(
            object_reference(kind, name, namespace, uid),
            reason=reason,
            note=note,
            action=action,
            instance=self.instance,
            at=datetime.now(UTC),
        )
        try:
            await self.kube.create_event(body)
        except AlreadyExists:
            pass  # the same occurrence, written already
        except KubeError as exc:
            metrics.EVENT_FAILURES.inc()
            logger.warning("Could not record the %s Event of %s %s: %s", reason, kind, name, exc)
        else:
            metrics.EVENTS_RECORDED.labels(kind=kind, reason=reason).inc()
