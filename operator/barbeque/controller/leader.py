"""Leader election on a coordination.k8s.io Lease, as client-go's leaderelection does.

Several operator replicas may run; one holds the Lease and drains the queues and
reconciles, the others keep their stores warm and take over when the holder stops
renewing. Expiry is judged by this process's own clock from the moment it last saw
the Lease change, so clock skew between nodes does not matter.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from barbeque.adapters.kube import AlreadyExists, Conflict, KubeError

logger = logging.getLogger(__name__)


class LeaseApi(Protocol):
    async def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    async def create_lease(self, body: dict[str, Any]) -> dict[str, Any]: ...
    async def replace_lease(self, body: dict[str, Any]) -> dict[str, Any]: ...


def _micro_time() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(eq=False, repr=False)
class LeaderElector:
    kube: LeaseApi
    namespace: str
    name: str
    identity: str
    lease_seconds: float = 15.0
    renew_seconds: float = 5.0
    retry_seconds: float = 2.0
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        self.leading = False
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        self._renewed_at = 0.0

    def _spec(self, acquire: bool, transitions: int) -> dict[str, Any]:
        now = _micro_time()
        spec: dict[str, Any] = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(self.lease_seconds),
            "renewTime": now,
            "leaseTransitions": transitions,
        }
        if acquire:
            spec["acquireTime"] = now
        return spec

    async def try_acquire_or_renew(self) -> bool:
        """One round; returns whether this process holds the Lease afterwards."""
        lease = await self.kube.get_lease(self.namespace, self.name)
        if lease is None:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec(acquire=True, transitions=0),
            }
            try:
                await self.kube.create_lease(body)
            except AlreadyExists:
                return False
            return True

        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity")
        observed = (holder, spec.get("renewTime"), spec.get("leaseDurationSeconds"))
        now = self.clock()
        if observed != self._observed:
            self._observed, self._observed_at = observed, now
        duration = float(spec.get("leaseDurationSeconds") or self.lease_seconds)
        expired = now - self._observed_at > duration
        if holder and holder != self.identity and not expired:
            return False

        acquiring = holder != self.identity
        transitions = int(spec.get("leaseTransitions") or 0) + (1 if acquiring else 0)
        new_spec = self._spec(acquire=acquiring, transitions=transitions)
        if not acquiring and spec.get("acquireTime"):
            new_spec["acquireTime"] = spec["acquireTime"]
        lease["spec"] = new_spec
        try:
            await self.kube.replace_lease(lease)
        except (Conflict, AlreadyExists):
            return False  # somebody else renewed or took it first (a stale resourceVersion)
        return True

    async def release(self) -> None:
        """Give the Lease up so another replica takes over at once (graceful shutdown)."""
        lease = await self.kube.get_lease(self.namespace, self.name)
        if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
            return
        lease["spec"]["holderIdentity"] = ""
        lease["spec"]["renewTime"] = _micro_time()
        await self.kube.replace_lease(lease)
        self.leading = False

    async def run(
        self,
        on_started: Callable[[], Awaitable[None]],
        on_stopped: Callable[[], Awaitable[None]],
    ) -> None:
        """Acquire, then renew until the Lease is lost; call back on both transitions."""
        while True:
            try:
                held = await self.try_acquire_or_renew()
            except KubeError as exc:
                logger.warning("Leader election: the API call failed: %s", exc)
                held = False
                if self.leading and self.clock() - self._renewed_at < self.lease_seconds:
                    # A blip: still inside our own lease; try again soon.
                    await asyncio.sleep(self.retry_seconds)
                    continue
            if held:
                self._renewed_at = self.clock()
                if not self.leading:
                    self.leading = True
                    logger.info("Became the leader (%s)", self.identity)
                    await on_started()
                await asyncio.sleep(self.renew_seconds)
                continue
            if self.leading:
                self.leading = False
                logger.warning("Lost the leadership (%s)", self.identity)
                await on_stopped()
            await asyncio.sleep(self.retry_seconds)
