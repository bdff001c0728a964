"""List-then-watch of one resource with server-side selectors: client-go's reflector in small.

kopf's watches take no server-side selector, so a kopf watch on JobExecutions would hand
the operator every execution history retains (10,000 are ~300 MB of parsed objects).
This one asks the API server for the unfinished ones only (a field selector on the
CRD's selectable ``status.phase``); an object that leaves the selection arrives as
DELETED, as the API server's watch cache sends it.

A paginated LIST gives the objects and a resourceVersion; a WATCH from there (with
bookmarks, so the version stays fresh) streams changes; when the version is too old
(410 Gone) the LIST is done again and objects that vanished meanwhile are reported
DELETED. Errors back off exponentially, capped. The HTTP requests are the adapter's
(``adapters.watch.WatchClient``); this module holds the protocol only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Callable
from typing import Any, Protocol

from barbeque import metrics
from barbeque.adapters.kube import TransientError
from barbeque.adapters.watch import Expired

logger = logging.getLogger(__name__)

Key = tuple[str, str]
EventHandler = Callable[[str, dict[str, Any]], None]


class WatchApi(Protocol):
    """LIST pages and WATCH streams of one resource (``adapters.watch.WatchClient``)."""

    path: str
    resource: str

    async def list_page(self, params: dict[str, Any]) -> dict[str, Any]: ...
    def stream(self, params: dict[str, Any]) -> AsyncGenerator[dict[str, Any], None]: ...
    async def close(self) -> None: ...


class ListWatch:
    """Keeps ``on_event`` told of every object of a resource that matches the selectors.

    ``on_listed`` is called after every complete LIST (the view is whole again), and
    ``on_error`` with every failure the watch backs off from.
    """

    def __init__(
        self,
        client: WatchApi,
        *,
        on_event: EventHandler,
        field_selector: str | None = None,
        label_selector: str | None = None,
        remembered_label: str | None = None,
        page_size: int = 500,
        backoff_max: float = 30.0,
        on_listed: Callable[[], None] | None = None,
        on_error: Callable[[Exception], None] | None = None,
    ) -> None:
        self.client = client
        self.path = client.path
        self.resource = client.resource
        self.on_event = on_event
        self.on_listed = on_listed
        self.on_error = on_error
        self.selectors = {
            k: v
            for k, v in (("fieldSelector", field_selector), ("labelSelector", label_selector))
            if v
        }
        self.page_size = page_size
        self.backoff_max = backoff_max
        self.resource_version: str | None = None
        # The objects reported so far, so a re-list can report those that vanished, with
        # the value of ``remembered_label``: a pod's DELETED is useless without the
        # execution it belongs to. Only that value, not the labels: pods carry a dozen.
        self.remembered_label = remembered_label
        self.known: dict[Key, str | None] = {}
        self.relists = 0

    async def close(self) -> None:
        await self.client.close()

    async def sync(self, attempts: int = 8) -> None:
        """The first LIST, retried through a short unavailability (a CRD just created
        answers 429 "storage is (re)initializing" for a moment)."""
        delay = 0.5
        for attempt in range(attempts):
            try:
                await self.relist()
                return
            except TransientError as exc:
                if attempt == attempts - 1:
                    raise
                logger.info("Listing %s failed, again in %.1fs: %s", self.path, delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.backoff_max)

    async def relist(self) -> None:
        """LIST page by page, reporting each object; then report what vanished as DELETED."""
        seen: dict[Key, str | None] = {}
        # The next page is asked for before this one is handed out: the API server reads
        # and encodes it while ``on_event`` digests this one (the console's 100,000
        # executions are 200 pages, and both halves take a core).
        ahead: asyncio.Task[dict[str, Any]] | None = self._page(None)
        try:
            while ahead is not None:
                page = await ahead
                meta = page.get("metadata") or {}
                token = meta.get("continue")
                ahead = self._page(token) if token else None
                # Let the request go out before the loop below holds the event loop.
                await asyncio.sleep(0)
                for item in page.get("items") or []:
                    item_meta = item.get("metadata") or {}
                    key = (item_meta.get("namespace") or "", item_meta.get("name") or "")
                    seen[key] = self._remembered(item_meta)
                    self.on_event("ADDED", item)
                if not token:
                    self.resource_version = meta.get("resourceVersion")
        finally:
            if ahead is not None:
                ahead.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await ahead
        for (namespace, name), value in self.known.items():
            if (namespace, name) in seen:
                continue
            stub: dict[str, Any] = {"namespace": namespace, "name": name}
            if self.remembered_label and value is not None:
                stub["labels"] = {self.remembered_label: value}
            self.on_event("DELETED", {"metadata": stub})
        self.known = seen
        self.relists += 1
        if self.on_listed is not None:
            self.on_listed()

    def _page(self, token: str | None) -> asyncio.Task[dict[str, Any]]:
        return asyncio.ensure_future(
            self.client.list_page({**self.selectors, "limit": self.page_size, "continue": token})
        )

    def _apply(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        obj = event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise Expired(obj.get("message") or "410 Gone", 410)
            raise TransientError(f"watch error: {obj.get('message')}", obj.get("code"))
        meta = obj.get("metadata") or {}
        self.resource_version = meta.get("resourceVersion") or self.resource_version
        if kind == "BOOKMARK":
            return
        key = (meta.get("namespace") or "", meta.get("name") or "")
        if kind == "DELETED":
            self.known.pop(key, None)
        else:
            self.known[key] = self._remembered(meta)
        self.on_event(str(kind), obj)

    def _remembered(self, meta: dict[str, Any]) -> str | None:
        if self.remembered_label is None:
            return None
        value: str | None = (meta.get("labels") or {}).get(self.remembered_label)
        return value

    async def run(self) -> None:
        """Watch until cancelled, listing first whenever there is no resourceVersion."""
        delay = 0.5
        while True:
            try:
                if self.resource_version is None:
                    await self.relist()
                params = {
                    **self.selectors,
                    "allowWatchBookmarks": "true",
                    "resourceVersion": self.resource_version,
                }
                async with contextlib.aclosing(self.client.stream(params)) as events:
                    async for event in events:
                        self._apply(event)
                        delay = 0.5
            except Expired:
                logger.info("Watch of %s expired; listing again", self.path)
                metrics.WATCH_RESTARTS.labels(resource=self.resource, reason="expired").inc()
                self.resource_version = None
                continue
            except TransientError as exc:
                logger.warning("Watch of %s failed, again in %.1fs: %s", self.path, delay, exc)
                metrics.WATCH_RESTARTS.labels(resource=self.resource, reason="error").inc()
                if self.on_error is not None:
                    self.on_error(exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.backoff_max)

    async def stop(self, task: asyncio.Task[None]) -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        await self.close()
