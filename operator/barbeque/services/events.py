"""Watch events into the store, and the keys they concern into the work queue.

Every replica keeps its store warm, leading or not: JobQueues and JobDefinitions arrive
from kopf's watches (``handlers``), Jobs, pods and unfinished JobExecutions from the
operator's own (``controller.listwatch``). Only the active replica's workers take keys.
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass
from typing import Any

from barbeque import metrics
from barbeque.api.models import LABEL_EXECUTION
from barbeque.controller.workqueue import WorkQueue
from barbeque.services.definitions import DefinitionChecker
from barbeque.services.history import HistoryCollector
from barbeque.services.pollers import Pollers
from barbeque.services.store import Key, Store, settled

DELETED = "DELETED"


def _meta(body: dict[str, Any]) -> tuple[str, str, str | None]:
    """Namespace, name and the execution a Job or pod belongs to (its label)."""
    meta = body.get("metadata", {})
    execution = (meta.get("labels") or {}).get(LABEL_EXECUTION)
    return meta.get("namespace", ""), meta.get("name", ""), execution


@dataclass(eq=False, repr=False)
class EventRouter:
    _: KW_ONLY
    store: Store
    queue: WorkQueue[Key]
    pollers: Pollers
    history: HistoryCollector
    definitions: DefinitionChecker

    def on_execution(self, type_: str | None, body: dict[str, Any]) -> None:
        namespace, name, _ = _meta(body)
        key = (namespace, name)
        if type_ == DELETED:
            # Deleted, or finished and so out of the watch's selection (the event then
            # carries the last state that matched, not the final one): forgotten, unless
            # the store holds it finished with its logs still to go to S3.
            kept = self.store.execution(key)
            if kept is None or not (
                kept.phase is not None and kept.phase.finished and not settled(kept)
            ):
                self.store.delete_execution(*key)
            return
        if self.store.put_execution(body) is not None:
            self.queue.add(key)

    def on_definition(self, type_: str | None, body: dict[str, Any]) -> None:
        namespace, name, _ = _meta(body)
        if type_ == DELETED:
            self.store.delete_definition(namespace, name)
            # Its series go too, and the phase gauge stops re-exporting them.
            self.history.forget_definition(namespace, name)
            self.definitions.on_definition(None, (namespace, name))
        else:
            self.store.put_definition(body)
            self.definitions.on_definition(body, (namespace, name))

    def on_job(self, type_: str | None, body: dict[str, Any]) -> None:
        namespace, name, execution = _meta(body)
        if not execution:
            return
        if type_ == DELETED:
            self.store.delete_job(namespace, name)
        elif self.store.put_job(body) is None:
            return
        self.queue.add((namespace, execution))

    def on_pod(self, type_: str | None, body: dict[str, Any]) -> None:
        namespace, name, execution = _meta(body)
        if not execution:
            return
        if type_ == DELETED:
            self.store.delete_pod(namespace, execution, name)
            return
        if self.store.put_pod(body) is not None:
            self.queue.add((namespace, execution))

    def on_namespace(self, type_: str | None, body: dict[str, Any]) -> None:
        """Namespaces name the application they hold (annotation barbeque.dev/application)."""
        if type_ == DELETED:
            self.store.delete_namespace((body.get("metadata") or {}).get("name") or "")
        else:
            self.store.put_namespace(body)

    def on_queue(self, type_: str | None, body: dict[str, Any]) -> None:
        name = body.get("metadata", {}).get("name", "")
        if type_ == DELETED:
            self.store.delete_queue(name)
            self.pollers.on_queue(None, name)
            metrics.forget_queue(name)
            return
        self.pollers.on_queue(self.store.put_queue(body), name)
