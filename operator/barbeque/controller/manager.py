"""Starts and stops the machinery: watches always, the active components while leading.

The watches keep every replica's view warm. The components (reconcile workers, pollers,
history collection: whatever the factory hands in) run only while this replica holds
the Lease, or always without leader election. They start in the order given and stop
in the reverse order, so what feeds work (pollers) stops before what does it (workers).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any, Protocol

from barbeque import metrics
from barbeque.controller.leader import LeaderElector

logger = logging.getLogger(__name__)


class Watch(Protocol):
    """One kind, listed then watched (``controller.listwatch.ListWatch``)."""

    resource: str

    async def sync(self) -> None: ...
    async def run(self) -> None: ...
    async def stop(self, task: asyncio.Task[None]) -> None: ...
    async def close(self) -> None: ...


class Component(Protocol):
    """A part that runs only on the active replica."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...


class Manager:
    def __init__(
        self,
        *,
        watches: Sequence[Watch],
        components: Sequence[Component],
        elector: LeaderElector | None = None,
    ) -> None:
        self.watches = list(watches)
        self.components = list(components)
        self.elector = elector
        self.active = False
        self._watch_tasks: list[tuple[Watch, asyncio.Task[None]]] = []
        self._election: asyncio.Task[None] | None = None

    async def prime(self) -> None:
        """List every watched kind once, then watch each from its LIST's resourceVersion."""
        try:
            for watch in self.watches:
                await watch.sync()
        except BaseException:
            # kopf retries the start-up with a new operator; leave no sessions open.
            for watch in self.watches:
                await watch.close()
            raise
        if not self._watch_tasks:
            self._watch_tasks = [
                (watch, asyncio.create_task(watch.run(), name=f"barbeque-{watch.resource}-watch"))
                for watch in self.watches
            ]

    async def start(self) -> None:
        if self.elector is None:
            await self.activate()
            return
        self._election = asyncio.create_task(
            self.elector.run(self.activate, self.deactivate), name="barbeque-election"
        )

    async def activate(self) -> None:
        if self.active:
            return
        self.active = True
        metrics.LEADER.set(1)
        for component in self.components:
            await component.start()

    async def deactivate(self) -> None:
        """Stop the components, gracefully; the watches keep following the cluster."""
        if not self.active:
            return
        self.active = False
        metrics.LEADER.set(0)
        for component in reversed(self.components):
            await component.stop()

    async def stop(self) -> None:
        if self._election is not None:
            self._election.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._election
        await self.deactivate()
        for watch, task in self._watch_tasks:
            await watch.stop(task)
        self._watch_tasks = []
        if self.elector is not None and self.elector.leading:
            # Hand over now instead of making the next leader wait for the lease to expire.
            with contextlib.suppress(Exception):
                await self.elector.release()


async def cancel_all(*tasks: asyncio.Task[Any]) -> None:
    """Cancel the tasks, then wait for each to end; what they raise on the way is dropped
    (a stopping component has no one left to tell)."""
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
