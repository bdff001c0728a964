"""moto's server in a process of its own, counting the calls it answers.

``python -m bench.moto_server --port P`` serves SQS and S3 like
``moto.server.ThreadedMotoServer(ip_address="127.0.0.1", port=P)`` and wraps the WSGI
application in a counter, so the benchmarks read SQS and S3 calls from the server's side
rather than from the operator's own report. Its own process keeps moto's CPU off the
benchmark's (and the operator's) GIL.

- ``GET /_bench/calls``: ``{"calls": [{"client", "service", "action", "count", "messages",
  "first", "last"}]}``; ``client`` is ``bench`` for requests whose User-Agent carries
  ``barbeque-bench`` (the benchmark's own boto3 clients), else ``other`` (the operator);
  ``messages`` is the number of messages a ReceiveMessage returned; ``first``/``last`` are
  wall-clock times of the first and last call (and ``first_with_messages`` for receives).
- ``POST /_bench/reset``: zero the counters.

moto's ReceiveMessage looks at every message of the queue and asks each, twice, for the
time as a ``datetime`` (``unix_time_millis()``): with 1,000 queued messages one receive
took ~640 ms of moto's CPU here, and a plain boto3 loop needed 80 s to drain 1,000
messages, with four parallel receivers no faster. Real SQS does not behave like that, so
unless ``--plain`` is given the SQS models' ``unix_time``/``unix_time_millis`` called
without an argument use ``time.time()`` (the same value, computed without datetimes).
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

BENCH_AGENT = "barbeque-bench"
_SERVICE = re.compile(r"Credential=[^/]+/[^/]+/[^/]+/(?P<service>[^/]+)/aws4_request")

StartResponse = Callable[..., Any]


class Counting:
    """WSGI middleware: count requests by client, service and action."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.lock = threading.Lock()
        self.calls: dict[tuple[str, str, str], dict[str, Any]] = {}

    def reset(self) -> None:
        with self.lock:
            self.calls.clear()

    def snapshot(self) -> list[dict[str, Any]]:
        with self.lock:
            return [
                {"client": c, "service": s, "action": a, **v}
                for (c, s, a), v in sorted(self.calls.items())
            ]

    def _record(self, key: tuple[str, str, str], started: float, messages: int) -> None:
        with self.lock:
            entry = self.calls.setdefault(
                key,
                {"count": 0, "messages": 0, "first": started, "last": started},
            )
            entry["count"] += 1
            entry["messages"] += messages
            entry["last"] = started
            if messages and "first_with_messages" not in entry:
                entry["first_with_messages"] = started

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/_bench/"):
            return self._control(environ, start_response)
        started = time.time()
        agent = environ.get("HTTP_USER_AGENT", "")
        client = "bench" if BENCH_AGENT in agent else "other"
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        match = _SERVICE.search(environ.get("HTTP_AUTHORIZATION", ""))
        service = match.group("service") if match else ("sqs" if target else "s3")
        action = target.rsplit(".", 1)[-1] if target else environ.get("REQUEST_METHOD", "?")
        if action != "ReceiveMessage":
            self._record((client, service, action), started, 0)
            return self.app(environ, start_response)  # type: ignore[no-any-return]
        body = b"".join(self.app(environ, start_response))
        try:
            messages = len(json.loads(body or b"{}").get("Messages", []))
        except ValueError:
            messages = body.count(b"<Message>")
        self._record((client, service, action), started, messages)
        return [body]

    def _control(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        if environ.get("PATH_INFO") == "/_bench/reset":
            self.reset()
            payload: dict[str, Any] = {"reset": True}
        else:
            payload = {"calls": self.snapshot(), "now": time.time()}
        body = json.dumps(payload).encode()
        start_response(
            "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        )
        return [body]


def speed_up_sqs_clock() -> None:
    """Same results, fewer datetimes: see the module's docstring."""
    import moto.sqs.models as sqs_models

    slow_seconds = sqs_models.unix_time
    slow_millis = sqs_models.unix_time_millis

    def unix_time(dt: Any = None) -> float:
        return time.time() if dt is None else float(slow_seconds(dt))

    def unix_time_millis(dt: Any = None) -> float:
        return time.time() * 1000.0 if dt is None else float(slow_millis(dt))

    sqs_models.unix_time = unix_time  # type: ignore[assignment]
    sqs_models.unix_time_millis = unix_time_millis  # type: ignore[assignment]


class CountingMotoServer(ThreadedMotoServer):
    """ThreadedMotoServer whose application is wrapped in :class:`Counting`."""

    def __init__(self, ip_address: str, port: int) -> None:
        super().__init__(ip_address=ip_address, port=port, verbose=False)
        self.counting = Counting(DomainDispatcherApplication(create_backend_app))

    def _server_entry(self) -> None:
        self._server = make_server(
            self._ip_address, self._port, self.counting, True, request_handler=MotoRequestHandler
        )
        self._server_ready_event.set()
        self._server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.moto_server", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--plain", action="store_true", help="moto exactly as released")
    args = parser.parse_args(argv)
    if not args.plain:
        speed_up_sqs_clock()
    server = CountingMotoServer(args.host, args.port)
    server.start()
    sys.stderr.write(f"moto listening on http://{args.host}:{args.port}\n")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
