"""The Python SDK: request shapes, typed errors, waiting; and the CLI around it."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from barbeque.__main__ import main
from barbeque.sdk import (
    NO_RETRY,
    Client,
    Conflict,
    Forbidden,
    InvalidParameter,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    Unauthorized,
    WaitTimeout,
)
from barbeque.sdk.cli import Progress

pytestmark = pytest.mark.unit

Handler = Callable[[httpx.Request], httpx.Response]


def client(handler: Handler, **kwargs: Any) -> Client:
    # Retries are tested in test_client_retries.py; here an answer is final.
    kwargs.setdefault("retry", NO_RETRY)
    return Client(
        "http://barbeque.test/", token="t0k", transport=httpx.MockTransport(handler), **kwargs
    )


def test_enqueue_posts_barbeques_body_with_the_token() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json={"message_id": "m-1", "status": "pending", "id": None})

    with client(handler, application="shop") as sdk:
        assert sdk.enqueue("SendMail", {"a": 1}, delay_seconds=5) == "m-1"
    request = seen[0]
    assert request.method == "POST"
    assert request.url.path == "/v2/job_executions"
    assert request.headers["authorization"] == "Bearer t0k"
    assert json.loads(request.content) == {
        "application": "shop",
        "job": "SendMail",
        "queue": "default",
        "message": {"a": 1},
        "delay_seconds": 5,
    }


def test_enqueue_needs_an_application() -> None:
    with (
        client(lambda r: httpx.Response(500)) as sdk,
        pytest.raises(ValueError, match="application"),
    ):
        sdk.enqueue("SendMail", {})


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (400, InvalidParameter),
        (401, Unauthorized),
        (403, Forbidden),
        (404, NotFound),
        (409, Conflict),
        (413, PayloadTooLarge),
        (503, ServiceUnavailable),
    ],
)
def test_refusals_become_typed_exceptions(code: int, error: type[Exception]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            code, json={"status_code": code, "error_code": "x", "message": "because"}
        )

    with client(handler) as sdk, pytest.raises(error, match="because"):
        sdk.retry("m-1")


def test_unreachable_service_is_service_unavailable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    with client(handler) as sdk, pytest.raises(ServiceUnavailable):
        sdk.status("m")


def statuses(*words: str) -> Handler:
    remaining = list(words)

    def handler(request: httpx.Request) -> httpx.Response:
        word = remaining.pop(0) if len(remaining) > 1 else remaining[0]
        return httpx.Response(
            200, json={"message_id": "m", "status": word, "id": "m", "html_url": "u"}
        )

    return handler


class FakeClock:
    """Time that passes only when the client sleeps."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_wait_polls_until_a_final_status_and_reports_progress() -> None:
    clock = FakeClock()
    calls: list[tuple[str, float]] = []
    words = statuses("pending", "running", "retried", "success")
    with client(words, sleep=clock.sleep, clock=clock) as sdk:
        result = sdk.wait(
            "m", timeout=60, interval=2, progress=lambda e, t: calls.append((e.status, t))
        )
    assert result.succeeded
    assert calls == [("pending", 0), ("running", 2), ("retried", 4), ("success", 6)]


def test_wait_times_out_with_the_last_status() -> None:
    clock = FakeClock()
    with (
        client(statuses("running"), sleep=clock.sleep, clock=clock) as sdk,
        pytest.raises(WaitTimeout) as caught,
    ):
        sdk.wait("m", timeout=10, interval=3)
    assert caught.value.last.status == "running"
    assert clock.now == 9  # polled at 0, 3, 6 and 9 s; a 4th sleep would pass the timeout


def test_progress_prints_one_line_per_change() -> None:
    from barbeque.sdk.client import Execution

    stream = io.StringIO()
    progress = Progress(stream)
    for word in ("pending", "pending", "running", "success"):
        progress(Execution("m", word), 1.0)
    assert stream.getvalue().splitlines() == [
        "m: pending (1s)",
        "m: running (1s)",
        "m: success (1s)",
    ]


def test_cli_reports_a_refused_request_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    # Nothing listens on port 9 (discard): the CLI must say so and exit 4, not trace back.
    code = main(["status", "m-1", "--url", "http://127.0.0.1:9"])
    assert code == 4
    assert "cannot reach" in capsys.readouterr().err


def test_cli_parses_every_client_command() -> None:
    from barbeque.__main__ import build_parser

    parser = build_parser()
    args = parser.parse_args(
        ["enqueue", "Job", '{"a":1}', "-a", "shop", "--delay", "5", "--wait", "--timeout", "9"]
    )
    assert (args.job, args.application, args.delay, args.wait, args.timeout) == (
        "Job",
        "shop",
        5,
        True,
        9.0,
    )
    assert parser.parse_args(["executions", "--watch", "-s", "failed"]).watch
    assert parser.parse_args(["retry", "m", "--delay", "3"]).delay == 3
