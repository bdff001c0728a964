"""The HTTP half of a list-then-watch: one resource's LIST pages and WATCH stream, on aiohttp.

``controller.listwatch.ListWatch`` keeps the protocol (relist, resourceVersion, 410,
backoff); this module only asks the API server and decodes what it answers, counting
each request in ``kube_requests_total`` with the adapter's own calls and telling the
``Connection`` of every status (a 401 makes the next request read the credentials again).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlencode

import aiohttp
import orjson

from barbeque import metrics
from barbeque.adapters.kube import Connection, KubeError, TransientError


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


class WatchClient:
    """LIST and WATCH requests of one resource path, on a session of their own (a watch
    holds its connection open, so it must not take one of the API calls' pool)."""

    def __init__(self, connection: Connection, path: str, *, timeout_seconds: int = 300) -> None:
        self.connection = connection
        self.path = path
        self.resource = path.rstrip("/").rsplit("/", 1)[-1]
        self.timeout_seconds = timeout_seconds
        self._session: aiohttp.ClientSession | None = None

    def _url(self, params: dict[str, Any]) -> str:
        query = {k: v for k, v in params.items() if v is not None}
        return f"{self.connection.host}{self.path}?{urlencode(query)}"

    def _client(self) -> aiohttp.ClientSession:
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

    @contextlib.asynccontextmanager
    async def _get(
        self, call: str, params: dict[str, Any]
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """One GET, counted by ``call`` and status; a failure to connect or to read (or an
        unreadable body) is a ``TransientError``, counted once: a response broken later
        was counted with its status."""
        answered = False
        try:
            async with self._client().get(
                self._url(params), headers=self.connection.headers()
            ) as response:
                metrics.KUBE_REQUESTS.labels(call=call, code=str(response.status)).inc()
                self.connection.answered(response.status)
                answered = True
                yield response
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            if not answered:
                metrics.KUBE_REQUESTS.labels(call=call, code="error").inc()
            raise TransientError(f"{type(exc).__name__}: {exc}") from exc

    async def list_page(self, params: dict[str, Any]) -> dict[str, Any]:
        """One LIST page: ``Expired`` on 410, ``TransientError`` on anything but 200."""
        async with self._get(f"list_{self.resource}", params) as response:
            data = await response.read()
            if response.status == 410:
                raise Expired(f"410 Gone: {_excerpt(data)}", 410)
            if response.status != 200:
                raise TransientError(f"{response.status}: {_excerpt(data)}", response.status)
            result: dict[str, Any] = orjson.loads(data)
            return result

    async def stream(self, params: dict[str, Any]) -> AsyncGenerator[dict[str, Any], None]:
        """The events of one WATCH request, decoded, until the server ends it."""
        params = {**params, "watch": "true", "timeoutSeconds": self.timeout_seconds}
        async with self._get(f"watch_{self.resource}", params) as response:
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
