"""A fault-injecting proxy on 127.0.0.1, put between the operator and one of its servers.

``FaultProxy`` forwards TCP connections to an upstream (the kube-apiserver, moto's SQS or
S3) until a test switches on a fault:

- ``pass``: bytes go through untouched;
- ``refuse``: the listening socket is closed, so a connect fails with ECONNREFUSED, as when
  the server process is down;
- ``reset``: connections are accepted and closed at once (a crashing load balancer);
- ``http``: every request is answered with an HTTP status of the test's choice (503, 429
  with ``Retry-After``, 500, 409 ``Conflict``...) in the Kubernetes ``Status`` shape, and
  the connection closed. With ``only`` (methods and a path pattern) just the matching
  requests are answered so; the others go to the upstream, one request per connection
  (the proxy adds ``Connection: close``), so that every request is looked at.

Switching to any fault also cuts the connections already open (kept-alive pools, watch
streams), so clients meet the fault on their next request instead of sailing through it.

For an HTTPS upstream (the apiserver) the proxy terminates TLS with the upstream's own
certificate and key and opens its own TLS connection upstream, verified against the
cluster CA: clients verify the proxy exactly as they would the apiserver (its certificate
names 127.0.0.1), and bearer tokens pass through in the HTTP headers. That is what lets
the ``http`` mode answer requests itself.

The proxy runs its own event loop in a daemon thread, so tests drive it from plain code.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import ssl
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path

PASS, REFUSE, RESET, HTTP = "pass", "refuse", "reset", "http"
MODES = (PASS, REFUSE, RESET, HTTP)

# Kubernetes names these Status reasons (most clients only look at the code; the reason
# is what tells a 409 AlreadyExists from a 409 Conflict).
_REASONS = {
    409: "Conflict",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
}
_MESSAGES = {
    409: "Operation cannot be fulfilled: the object has been modified; "
    "please apply your changes to the latest version and try again",
}


@dataclass(frozen=True)
class Only:
    """Which requests an ``http`` fault answers; the others pass to the upstream."""

    methods: frozenset[str] = frozenset()  # empty: every method
    path: str = ""  # a regular expression searched in the request target; "": every path

    def matches(self, method: str, target: str) -> bool:
        if self.methods and method.upper() not in self.methods:
            return False
        return not self.path or re.search(self.path, target) is not None


def only(methods: str = "", path: str = "") -> Only:
    """``only("POST,PATCH", r"/jobexecutions")``."""
    return Only(frozenset(m.strip().upper() for m in methods.split(",") if m.strip()), path)


@dataclass
class FaultRecord:
    """One request answered by the proxy itself in ``http`` mode."""

    at: float  # time.monotonic()
    status: int
    method: str
    path: str
    target: str  # X-Amz-Target header (SQS's JSON protocol names the call there), if any


@dataclass
class ProxyStats:
    accepted: int = 0  # connections accepted, in any mode
    forwarded: int = 0  # connections piped to the upstream
    reset: int = 0  # connections closed at once (reset mode)
    cut: int = 0  # live connections severed when a fault was switched on
    answered: Counter[int] = field(default_factory=Counter)  # status -> requests (http mode)
    passed: int = 0  # requests an ``only`` fault let through to the upstream
    faults: list[FaultRecord] = field(default_factory=list)


def server_tls(cert: Path, key: Path) -> ssl.SSLContext:
    """A TLS server context presenting ``cert`` (the upstream's own), HTTP/1.1 only."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))
    context.set_alpn_protocols(["http/1.1"])
    return context


def client_tls(cafile: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(cafile))
    context.set_alpn_protocols(["http/1.1"])
    return context


class FaultProxy:
    """``with FaultProxy(host, port) as proxy: ... proxy.set_mode("http", status=503)``."""

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        tls_server: ssl.SSLContext | None = None,
        tls_client: ssl.SSLContext | None = None,
        port: int = 0,
    ) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.tls_server = tls_server
        self.tls_client = tls_client
        self.port = port
        self.mode = PASS
        self.status = 503
        self.only: Only | None = None
        self.stats = ProxyStats()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._live: set[asyncio.StreamWriter] = set()
        self._lock = threading.Lock()

    # -- control, from the test's thread --------------------------------------------------

    @property
    def url(self) -> str:
        scheme = "https" if self.tls_server is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            loop.run_until_complete(self._listen())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._close_all())
            loop.close()

        self._thread = threading.Thread(target=run, name="fault-proxy", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the fault proxy did not start")
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def set_mode(self, mode: str, status: int = 503, only: Only | None = None) -> None:
        """Switch the fault on (or back to ``pass``); returns once it is in force.

        ``only`` (``http`` mode) limits the fault to the matching requests."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
        if only is not None and mode != HTTP:
            raise ValueError("only the http mode can pick requests")
        assert self._loop is not None, "start the proxy first"
        future = asyncio.run_coroutine_threadsafe(self._switch(mode, status, only), self._loop)
        future.result(10)

    @contextlib.contextmanager
    def fault(self, mode: str, status: int = 503, only: Only | None = None) -> Iterator[FaultProxy]:
        """The fault for the duration of a ``with`` block; ``pass`` again afterwards."""
        self.set_mode(mode, status, only)
        try:
            yield self
        finally:
            self.set_mode(PASS)

    def faults_between(self, start: float, end: float, target: str = "") -> list[FaultRecord]:
        with self._lock:
            return [
                f
                for f in self.stats.faults
                if start <= f.at <= end and (not target or target in f.target)
            ]

    def answered(self, rule: Only | None = None, status: int | None = None) -> int:
        """How many requests (those ``rule`` matches) the proxy answered itself."""
        with self._lock:
            return sum(
                1
                for f in self.stats.faults
                if (rule is None or rule.matches(f.method, f.path))
                and (status is None or f.status == status)
            )

    # -- the event loop's side ------------------------------------------------------------

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", self.port, ssl=self.tls_server, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _switch(self, mode: str, status: int, only: Only | None = None) -> None:
        previous, self.mode, self.status, self.only = self.mode, mode, status, only
        if mode != PASS:
            self._cut_live()
        if mode == REFUSE and self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None
        elif mode != REFUSE and previous == REFUSE:
            await self._listen()

    def _cut_live(self) -> None:
        for writer in list(self._live):
            writer.transport.abort()
            self.stats.cut += 1
        self._live.clear()

    async def _close_all(self) -> None:
        self._cut_live()
        if self._server is not None:
            self._server.close()
        # Connection handlers still running would be destroyed pending when the loop
        # closes, and their coroutines reported as never finished in a later test.
        current = asyncio.current_task()
        pending = [task for task in asyncio.all_tasks() if task is not current]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats.accepted += 1
        mode = self.mode
        if mode in (RESET, REFUSE):
            self.stats.reset += 1
            writer.transport.abort()
            return
        first = b""
        if mode == HTTP:
            rule = self.only
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            except (OSError, TimeoutError, ssl.SSLError, asyncio.IncompleteReadError, ValueError):
                writer.transport.abort()
                return
            method, target, _ = _parse_head(head)
            if rule is None or rule.matches(method, target):
                await self._answer(reader, writer, head)
                return
            # Let it through, and make it the connection's only request, so the next one
            # comes on a new connection and is looked at too.
            first = _closing(head)
            self.stats.passed += 1
        await self._forward(reader, writer, first)

    async def _forward(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, first: bytes
    ) -> None:
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(
                    *self.upstream,
                    ssl=self.tls_client,
                    server_hostname=self.upstream[0] if self.tls_client else None,
                ),
                10,
            )
        except (OSError, TimeoutError, ssl.SSLError):
            writer.transport.abort()
            return
        self.stats.forwarded += 1
        self._live.update((writer, up_writer))
        if first:
            up_writer.write(first)
        pipes = [
            asyncio.ensure_future(self._pipe(reader, up_writer)),
            asyncio.ensure_future(self._pipe(up_reader, writer)),
        ]
        try:
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pipes:
                task.cancel()
            for end in (writer, up_writer):
                self._live.discard(end)
                end.transport.abort()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, ssl.SSLError, asyncio.IncompleteReadError):
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        # The other side finished (an upstream answering ``Connection: close`` does): pass
        # the end on after the buffered bytes, rather than aborting them away.
        with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
            writer.close()
            await asyncio.wait_for(writer.wait_closed(), 5)

    async def _answer(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes
    ) -> None:
        """Answer the request whose ``head`` was read with the fault's status, then close."""
        try:
            method, path, headers = _parse_head(head)
            length = int(headers.get("content-length") or 0)
            if length:
                await asyncio.wait_for(reader.readexactly(length), 10)
            status = self.status
            reason = _REASONS.get(status, HTTPStatus(status).phrase.replace(" ", ""))
            words = _MESSAGES.get(status, "")
            body = json.dumps(
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Failure",
                    "message": f"injected by the test's fault proxy: {status} {words}".strip(),
                    "reason": reason,
                    "code": status,
                }
            ).encode()
            extra = "Retry-After: 1\r\n" if status == 429 else ""
            writer.write(
                (
                    f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
                    "Content-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n"
                    f"{extra}Connection: close\r\n\r\n"
                ).encode()
                + body
            )
            await writer.drain()
            with self._lock:
                self.stats.answered[status] += 1
                self.stats.faults.append(
                    FaultRecord(
                        time.monotonic(), status, method, path, headers.get("x-amz-target", "")
                    )
                )
        except (OSError, TimeoutError, ssl.SSLError, asyncio.IncompleteReadError, ValueError):
            writer.transport.abort()
            return
        # A graceful close, so the client reads the answer before the connection ends.
        writer.close()
        with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
            await asyncio.wait_for(writer.wait_closed(), 5)


def _parse_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    """Method, request target and headers (lower-case names) of an HTTP/1.1 request head."""
    lines = head.decode("latin-1").split("\r\n")
    method, target = [*lines[0].split(" "), "", ""][:2]
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name:
            headers[name.strip().lower()] = value.strip()
    return method, target, headers


def _closing(head: bytes) -> bytes:
    """The request head with ``Connection: close`` (replacing any ``Connection`` header)."""
    lines = head[:-4].split(b"\r\n")
    kept = [lines[0]] + [line for line in lines[1:] if not line.lower().startswith(b"connection:")]
    return b"\r\n".join([*kept, b"Connection: close"]) + b"\r\n\r\n"
