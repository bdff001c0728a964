"""A local stand-in for Slack's Web API that records every call.

slack_sdk is pointed at it with ``base_url``; tests read what was posted and can make it
answer 5xx or 429 for a while, or stall past the client's timeout, to show that Slack
trouble never holds up a job.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import pytest


@dataclass
class SlackRecorder:
    url: str = ""
    calls: list[dict[str, Any]] = field(default_factory=list)
    failures: list[int] = field(default_factory=list)  # statuses to answer before succeeding
    stall_seconds: float = 0.0  # > 0: every call waits this long before it is answered
    lock: threading.Lock = field(default_factory=threading.Lock)

    def posts(self, channel: str) -> list[dict[str, Any]]:
        """Every ``chat.postMessage`` to ``channel`` with the status it was answered
        (0: the client hung up before the answer), in order."""
        with self.lock:
            return [
                c
                for c in self.calls
                if c["method"] == "chat.postMessage" and c.get("channel") == channel
            ]

    def messages(self, channel: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [
                c
                for c in self.calls
                if c["method"] == "chat.postMessage"
                and (channel is None or c.get("channel") == channel)
                and c["status"] == 200
            ]

    def wait_for(self, predicate: Any, timeout: float = 30.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [m for m in self.messages() if predicate(m)]
            if found:
                return found
            time.sleep(0.1)
        raise AssertionError(f"no matching Slack message in {timeout}s; got {self.messages()}")


def _handler(recorder: SlackRecorder) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length).decode()
            if "json" in (self.headers.get("Content-Type") or ""):
                payload = json.loads(raw or "{}")
            else:
                payload = {k: v[0] for k, v in parse_qs(raw).items()}
                if isinstance(payload.get("attachments"), str):
                    payload["attachments"] = json.loads(payload["attachments"])
            with recorder.lock:
                status = recorder.failures.pop(0) if recorder.failures else 200
                stall = recorder.stall_seconds
                call = {
                    "method": self.path.rsplit("/", 1)[-1],
                    "auth": self.headers.get("Authorization"),
                    "status": status,
                    "at": time.monotonic(),
                    **payload,
                }
                recorder.calls.append(call)
            if stall:
                time.sleep(stall)
            body = json.dumps({"ok": status == 200, "error": None if status == 200 else "fail"})
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                if status == 429:
                    self.send_header("Retry-After", "1")
                self.end_headers()
                self.wfile.write(body.encode())
            except OSError:
                call["status"] = 0  # the client hung up first (its timeout)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextlib.contextmanager
def slack_recorder() -> Iterator[SlackRecorder]:
    """A recorder on a port of its own, for as long as the block runs."""
    recorder = SlackRecorder()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(recorder))
    server.daemon_threads = True
    recorder.url = f"http://127.0.0.1:{server.server_address[1]}/api/"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield recorder
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def slack() -> Iterator[SlackRecorder]:
    with slack_recorder() as recorder:
        yield recorder
