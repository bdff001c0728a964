"""The Ready condition of JobDefinitions: valid, and its image a well-formed reference.

A component of the active replica (``controller.manager``). Every replica's store keeps
the definitions (``EventRouter.on_definition``); the active one writes their status, once
per change of what it says: a definition's status write comes back as a watch event,
which then finds nothing to write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import KW_ONLY, dataclass
from typing import Any, Protocol

from pydantic import ValidationError

from barbeque.adapters.kube import KubeError, NotFound
from barbeque.api.models import JobDefinitionStatus
from barbeque.services.conditions import READY, condition, find, merge_conditions
from barbeque.services.recorder import Recorder
from barbeque.services.store import Key, Store

logger = logging.getLogger(__name__)


class DefinitionStatusApi(Protocol):
    async def patch_definition_status(
        self, namespace: str, name: str, status: dict[str, Any]
    ) -> None: ...


@dataclass(eq=False, repr=False)
class DefinitionChecker:
    _: KW_ONLY
    store: Store
    kube: DefinitionStatusApi
    recorder: Recorder | None = None

    def __post_init__(self) -> None:
        self.active = False
        # The latest body of every definition: its status is compared before writing.
        self.bodies: dict[Key, dict[str, Any]] = {}
        self._background: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.active = True
        for key in list(self.bodies):
            await self.check(key)

    async def stop(self) -> None:
        self.active = False
        tasks = list(self._background)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def on_definition(self, body: dict[str, Any] | None, key: Key) -> None:
        """A definition changed (``body``, already in the store) or was deleted (None)."""
        if body is None:
            self.bodies.pop(key, None)
            return
        self.bodies[key] = body
        if self.active:
            task = asyncio.get_running_loop().create_task(self.check(key))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    def verdict(self, key: Key) -> tuple[bool, str, str]:
        """Ready or not, the reason and the message, from what the store made of it."""
        problem = self.store.bad_definitions.get(key)
        if problem is not None:
            reason = "InvalidImage" if problem.startswith("image ") else "InvalidSpec"
            return False, reason, problem
        definition = self.store.definitions.get(key)
        image = definition.spec.image if definition is not None else ""
        return True, "Valid", f"runs {image}"

    async def check(self, key: Key) -> None:
        body = self.bodies.get(key)
        if body is None:
            return
        ready, reason, message = self.verdict(key)
        try:
            current = JobDefinitionStatus.model_validate(body.get("status") or {})
        except ValidationError:
            current = JobDefinitionStatus()
        generation = (body.get("metadata") or {}).get("generation")
        old = find(current.conditions, READY)
        wanted = ("True" if ready else "False", reason, message)
        if (
            old is not None
            and current.observed_generation == generation
            and (old.status, old.reason, old.message) == wanted
        ):
            return
        status = JobDefinitionStatus(
            observed_generation=generation,
            conditions=merge_conditions(
                current.conditions, [condition(READY, ready, reason, message, generation)]
            ),
        )
        try:
            await self.kube.patch_definition_status(
                *key, status.model_dump(by_alias=True, mode="json", exclude_none=True)
            )
        except NotFound:
            return  # deleted meanwhile
        except KubeError as exc:
            logger.warning("Could not update the status of JobDefinition %s/%s: %s", *key, exc)
            return
        turned_bad = not ready and (old is None or old.status == "True" or old.reason != reason)
        if turned_bad and self.recorder is not None:
            meta = body.get("metadata") or {}
            await self.recorder.warning(
                "JobDefinition",
                key[1],
                key[0],
                meta.get("uid"),
                reason=reason,
                note=message,
                action="Validate",
            )
