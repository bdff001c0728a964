"""List-then-watch of one resource with server-side selectors, on aiohttp.

kopf's watches take no server-side selector, so a kopf watch on JobExecutions would hand
the operator every execution history retains (10,000 are ~300 MB of parsed objects).
This one asks the API server for the unfinished ones only (a field selector on the
CRD's selectable ``status.phase``); an object that leaves the selection arrives as
DELETED, as the API server's watch cache sends it.

The protocol is client-go's reflector in small: a paginated LIST gives the objects and a
resourceVersion; a WATCH from there (with bookmarks, so the version stays fresh) streams
changes; when the version is too old (410 Gone) the LIST is done again and objects that
vanished meanwhile are reported DELETED. Errors back off exponentially, capped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Callable, Iterator
from typing import Any
from urllib.parse import urlencode

import aiohttp
import orjson

from barbeque import metrics
from barbeque.adapters.kube import Connection, KubeError, TransientError

logger = logging.getLogger(__name__)

Key = tuple[str, str]
EventHandler = Callable[[str, dict[str, Any]], None]


class Expired(KubeError):
    """410 Gone: the resourceVersion is older than the API server keeps; list again."""


def split_lines(buffer: bytearray, chunk: bytes) -> Iterator[bytes]:
    """The complete, non-blank lines that ``chunk`` ends; the unfinished rest stays in
    ``buffer`` for the next chunk.

    A bytearray and ``find`` on the new chunk only: appending chunks to a bytes buffer and
    splitting it again copies a long line once per chunk (a 256 KiB execution arrives in
    dozens), and a watch stream is mostly lines shorter than a chunk.
    """
    end = chunk.find(b"\n")
    if end < 0:
        buffer += chunk
        return
    if buffer:
        buffer += chunk[:end]
        line = bytes(buffer)
        buffer.clear()
    else:
        line = chunk[:end]
    if line.strip():
        yield line
    start = end + 1
    while (end := chunk.find(b"\n", start)) >= 0:
        line = chunk[start:end]
        if line.strip():
            yield line
        start = end + 1
    buffer += chunk[start:]


def _excerpt(data: bytes) -> str:
    return data[:300].decode(errors="replace")


class ListWatch:
    """Keeps ``on_event`` told of every object of ``path`` that matches the selectors."""

    def __init__(
        self,
        connection: Connection,
        path: str,
        on_event: EventHandler,
        field_selector: str | None = None,
        label_selector: str | None = None,
        remembered_label: str | None = None,
        page_size: int = 500,
        timeout_seconds: int = 300,
        backoff_max: float = 30.0,
    ) -> None:
        self.connection = connection
        self.path = path
        self.resource = path.rstrip("/").rsplit("/", 1)[-1]
        self.on_event = on_event
        self.selectors = {
            k: v
            for k, v in (("fieldSelector", field_selector), ("labelSelector", label_selector))
            if v
        }
        self.page_size = page_size
        self.timeout_seconds = timeout_seconds
        self.backoff_max = backoff_max
        self.resource_version: str | None = None
        # The objects reported so far, so a re-list can report those that vanished, with
        # the value of ``remembered_label``: a pod's DELETED is useless without the
        # execution it belongs to. Only that value, not the labels: pods carry a dozen.
        self.remembered_label = remembered_label
        self.known: dict[Key, str | None] = {}
        self.relists = 0
        self._session: aiohttp.ClientSession | None = None

    def _url(self, **params: Any) -> str:
        query = {**self.selectors, **{k: v for k, v in params.items() if v is not None}}
        return f"{self.connection.host}{self.path}?{urlencode(query)}"

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self.connection.ssl_context, limit=4),
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=10, sock_read=self.timeout_seconds + 30
                ),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
            # TLS transports finish closing on the next loop turns (aiohttp's advice).
            await asyncio.sleep(0.25)

    async def _get(self, url: str) -> dict[str, Any]:
        call = f"list_{self.resource}"
        answered = False
        try:
            async with self.session().get(url, headers=self.connection.headers()) as response:
                self._answered(call, response.status)
                answered = True
                data = await response.read()
                if response.status == 410:
                    raise Expired(f"410 Gone: {_excerpt(data)}", 410)
                if response.status != 200:
                    raise TransientError(f"{response.status}: {_excerpt(data)}", response.status)
                result: dict[str, Any] = orjson.loads(data)
                return result
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            if not answered:
                metrics.KUBE_REQUESTS.labels(call=call, code="error").inc()
            raise TransientError(f"{type(exc).__name__}: {exc}") from exc

    def _answered(self, call: str, status: int) -> None:
        """Counted with the adapter's own calls, so 429s and 5xx of watches show too."""
        metrics.KUBE_REQUESTS.labels(call=call, code=str(status)).inc()
        self.connection.answered(status)

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
        token: str | None = None
        while True:
            page = await self._get(self._url(limit=self.page_size, **{"continue": token}))
            for item in page.get("items") or []:
                meta = item.get("metadata") or {}
                key = (meta.get("namespace") or "", meta.get("name") or "")
                seen[key] = self._remembered(meta)
                self.on_event("ADDED", item)
            meta = page.get("metadata") or {}
            token = meta.get("continue")
            if not token:
                self.resource_version = meta.get("resourceVersion")
                break
        for (namespace, name), value in self.known.items():
            if (namespace, name) in seen:
                continue
            stub: dict[str, Any] = {"namespace": namespace, "name": name}
            if self.remembered_label and value is not None:
                stub["labels"] = {self.remembered_label: value}
            self.on_event("DELETED", {"metadata": stub})
        self.known = seen
        self.relists += 1

    async def _stream(self) -> AsyncGenerator[dict[str, Any], None]:
        url = self._url(
            watch="true",
            allowWatchBookmarks="true",
            resourceVersion=self.resource_version,
            timeoutSeconds=self.timeout_seconds,
        )
        call = f"watch_{self.resource}"
        answered = False
        try:
            async with self.session().get(url, headers=self.connection.headers()) as response:
                self._answered(call, response.status)
                answered = True
                if response.status == 410:
                    raise Expired("410 Gone", 410)
                if response.status != 200:
                    text = await response.text()
                    raise TransientError(f"{response.status}: {text[:300]}", response.status)
                buffer = bytearray()
                # Chunks, not readline: an execution may carry a 256 KiB message, more
                # than aiohttp's line limit.
                async for chunk in response.content.iter_any():
                    for line in split_lines(buffer, chunk):
                        yield orjson.loads(line)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            if not answered:  # a stream broken later was counted with its status
                metrics.KUBE_REQUESTS.labels(call=call, code="error").inc()
            raise TransientError(f"{type(exc).__name__}: {exc}") from exc

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
        """Watch until cancelled; ``relist`` must have succeeded once before."""
        delay = 0.5
        while True:
            try:
                if self.resource_version is None:
                    await self.relist()
                async with contextlib.aclosing(self._stream()) as events:
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
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.backoff_max)

    async def stop(self, task: asyncio.Task[None]) -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        await self.close()
