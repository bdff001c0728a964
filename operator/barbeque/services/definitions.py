"""The Ready condition of JobDefinitions: valid, its image a well-formed reference, and
the Job it makes one the API server would create.

A component of the active replica (``controller.manager``). Every replica's store keeps
the definitions (``EventRouter.on_definition``); the active one writes their status, once
per change of what it says: a definition's status write comes back as a watch event,
which then finds nothing to write.

The last check is a dry-run create (nothing stored) of the Job a sample execution would
get, with strict field validation: a jobTemplate passes the pod spec through as written,
and this is where a typo or a sidecar without an image shows, before any message does.
It runs once per generation of a definition (an API request, not a write).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from dataclasses import KW_ONLY, dataclass
from typing import Any, Protocol

from pydantic import ValidationError

from barbeque.adapters.kube import AlreadyExists, Invalid, KubeError, NotFound
from barbeque.api.models import (
    JobDefinition,
    JobDefinitionStatus,
    JobExecution,
    JobExecutionSpec,
    ObjectMeta,
)
from barbeque.services.builders import build_job
from barbeque.services.conditions import READY, condition, find, merge_conditions
from barbeque.services.recorder import Recorder
from barbeque.services.store import Key, Store

logger = logging.getLogger(__name__)


class DefinitionStatusApi(Protocol):
    async def patch_definition_status(
        self, namespace: str, name: str, status: dict[str, Any]
    ) -> None: ...
    async def create_job(self, body: dict[str, Any], *, dry_run: bool = False) -> None: ...


class Unjudged(Exception):
    """The dry run could not be made (the API server unavailable): no verdict yet."""


# Reasons of a definition judged with a dry run of its Job.
JUDGED_BY_DRY_RUN = frozenset({"Valid", "InvalidJobTemplate"})


def sample_execution(definition: JobDefinition) -> JobExecution:
    """An execution of ``definition`` to build a Job from, for a dry run only."""
    namespace = definition.metadata.namespace or ""
    return JobExecution(
        metadata=ObjectMeta(
            name=f"barbeque-check-{definition.metadata.name}"[:63].rstrip("-."),
            namespace=namespace,
            uid="00000000-0000-0000-0000-000000000000",
        ),
        spec=JobExecutionSpec(
            application=namespace,
            job=definition.metadata.name,
            queue=definition.spec.queue,
            message_id="dry-run",
        ),
    )


@dataclass(eq=False, repr=False)
class DefinitionChecker:
    _: KW_ONLY
    store: Store
    kube: DefinitionStatusApi
    recorder: Recorder | None = None
    # After a failed dry run or status write (the API server unavailable).
    retry_seconds: float = 30.0

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
            self._spawn(self.check(key))

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        # The loop keeps only weak references to tasks; hold them until they finish.
        task = asyncio.get_running_loop().create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _check_later(self, key: Key) -> None:
        await asyncio.sleep(self.retry_seconds)
        if self.active:
            await self.check(key)

    def local_verdict(self, key: Key) -> tuple[bool, str, str] | None:
        """Not Ready, the reason and the message, from what the store made of it; None when
        it found nothing wrong."""
        problem = self.store.bad_definitions.get(key)
        if problem is None:
            return None
        reason = "InvalidImage" if problem.startswith("image ") else "InvalidSpec"
        return False, reason, problem

    async def dry_run_verdict(self, key: Key) -> tuple[bool, str, str]:
        definition = self.store.definitions.get(key)
        if definition is None:
            raise Unjudged("not in the store")
        try:
            await self.kube.create_job(
                build_job(sample_execution(definition), definition), dry_run=True
            )
        except AlreadyExists:
            pass  # a Job of the sample's name exists: the body itself was acceptable
        except Invalid as exc:
            return False, "InvalidJobTemplate", f"the API server would refuse its Job: {exc}"
        except KubeError as exc:
            raise Unjudged(str(exc)) from exc
        return True, "Valid", f"runs {definition.spec.image}"

    async def check(self, key: Key) -> None:
        body = self.bodies.get(key)
        if body is None:
            return
        try:
            current = JobDefinitionStatus.model_validate(body.get("status") or {})
        except ValidationError:
            current = JobDefinitionStatus()
        generation = (body.get("metadata") or {}).get("generation")
        old = find(current.conditions, READY)
        judged = old is not None and current.observed_generation == generation
        verdict = self.local_verdict(key)
        if verdict is None:
            if judged and old is not None and old.reason in JUDGED_BY_DRY_RUN:
                return  # this generation's Job was tried already
            try:
                verdict = await self.dry_run_verdict(key)
            except Unjudged as exc:
                logger.warning(
                    "Could not check JobDefinition %s/%s, again in %.0fs: %s",
                    *key,
                    self.retry_seconds,
                    exc,
                )
                self._spawn(self._check_later(key))
                return
        ready, reason, message = verdict
        wanted = ("True" if ready else "False", reason, message)
        if judged and old is not None and (old.status, old.reason, old.message) == wanted:
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
            self._spawn(self._check_later(key))
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
