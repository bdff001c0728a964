"""Typed clients of the Barbeque Web API over httpx, sync and async; every refusal is an
exception.

Both retry what is safe to retry, with exponential backoff and jitter, honouring the
server's ``Retry-After``: any request the service answered 429 or 503 (it did nothing),
any request that could not connect (nothing was sent), and idempotent requests (GET) that
met another transport error or a 502/504. A POST that may have been received is never
sent twice.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import httpx

FINAL_STATUSES = frozenset({"success", "failed", "error"})


class BarbequeError(Exception):
    """The Web API refused a request, or could not be reached."""

    def __init__(self, message: str, status_code: int | None = None, error_code: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.error_code = error_code


class InvalidParameter(BarbequeError):
    """400: a parameter is missing or wrong."""


class Unauthorized(BarbequeError):
    """401: no token, or a token the service does not know."""


class Forbidden(BarbequeError):
    """403: the token may not do this."""


class NotFound(BarbequeError):
    """404: no such queue, job definition or execution."""


class Conflict(BarbequeError):
    """409: the execution is not in a state that allows this (e.g. cancelling a finished one)."""


class PayloadTooLarge(BarbequeError):
    """413: the message is larger than SQS accepts (256 KiB)."""


class ServiceUnavailable(BarbequeError):
    """5xx or a transport error: SQS, Kubernetes or the service itself is unavailable."""


class WaitTimeout(BarbequeError):
    """``wait`` gave up before the execution finished."""

    def __init__(self, message: str, last: Execution) -> None:
        super().__init__(message)
        self.last = last


_BY_STATUS: dict[int, type[BarbequeError]] = {
    400: InvalidParameter,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
}


@dataclass(frozen=True)
class Execution:
    """What ``GET /v1/job_executions/:message_id`` says about one execution."""

    message_id: str
    status: str
    id: str | None = None
    html_url: str | None = None
    message: Any = None

    @property
    def finished(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def succeeded(self) -> bool:
        return self.status == "success"


@dataclass(frozen=True)
class ExecutionSummary:
    """One row of ``GET /v1/job_executions``."""

    message_id: str
    status: str
    application: str
    job: str
    queue: str
    phase: str
    attempt: int = 0
    created_at: str | None = None
    finished_at: str | None = None
    html_url: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> ExecutionSummary:
        return cls(
            message_id=body["message_id"],
            status=body["status"],
            application=body.get("application", ""),
            job=body.get("job", ""),
            queue=body.get("queue", ""),
            phase=body.get("phase", ""),
            attempt=int(body.get("attempt") or 0),
            created_at=body.get("created_at"),
            finished_at=body.get("finished_at"),
            html_url=body.get("html_url"),
            raw=body,
        )


Progress = Callable[[Execution, float], None]

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
# Statuses that say "nothing was done, come back later": safe to resend whatever the method.
RETRY_ANY_METHOD = frozenset({429, 503})
# Statuses after which only an idempotent request is sent again.
RETRY_IDEMPOTENT = frozenset({502, 504})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


@dataclass(frozen=True)
class Retry:
    """How often and how patiently to try again.

    ``attempts`` counts every try (1: never retry). The n-th wait is a random value in
    [0, min(backoff * 2**n, max_backoff)], or the server's Retry-After when it sent one
    (capped at ``max_retry_after``).
    """

    attempts: int = 4
    backoff: float = 0.5
    max_backoff: float = 10.0
    max_retry_after: float = 60.0

    def delay(self, attempt: int, response: httpx.Response | None) -> float:
        if response is not None:
            after = retry_after(response)
            if after is not None:
                return min(after, self.max_retry_after)
        return random.uniform(0, min(self.backoff * 2**attempt, self.max_backoff))


NO_RETRY = Retry(attempts=1)


def retry_after(response: httpx.Response) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), if any."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _should_retry(method: str, response: httpx.Response | None, error: Exception | None) -> bool:
    if response is not None:
        if response.status_code in RETRY_ANY_METHOD:
            return True
        return response.status_code in RETRY_IDEMPOTENT and method in IDEMPOTENT_METHODS
    if isinstance(error, httpx.ConnectError | httpx.ConnectTimeout):
        return True  # the request never left
    return isinstance(error, httpx.TransportError) and method in IDEMPOTENT_METHODS


def _answer_or_delay(
    policy: Retry,
    attempt: int,
    method: str,
    response: httpx.Response | None,
    error: httpx.HTTPError | None,
    base_url: httpx.URL,
) -> httpx.Response | float:
    """After one try: the response to answer with, or the seconds to wait before the next
    try; ServiceUnavailable when there is neither a response nor a try left."""
    last = attempt + 1 >= policy.attempts
    if not last and _should_retry(method, response, error):
        return policy.delay(attempt, response)
    if response is None:
        raise ServiceUnavailable(f"cannot reach {base_url}: {error}") from error
    return response


def _raise_for(response: httpx.Response) -> Any:
    if response.is_success:
        return response.json()
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    message = str(body.get("message") or body.get("detail") or response.text[:200])
    error_class = _BY_STATUS.get(response.status_code)
    if error_class is None:
        error_class = ServiceUnavailable if response.status_code >= 500 else BarbequeError
    raise error_class(message, response.status_code, str(body.get("error_code", "")))


def _headers(token: str | None) -> dict[str, str]:
    from barbeque_client import __version__

    headers = {"Accept": "application/json", "User-Agent": f"barbeque-client/{__version__}"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def _enqueue_body(
    default_application: str | None,
    default_queue: str,
    job: str,
    message: Any,
    queue: str | None,
    application: str | None,
    delay_seconds: int | None,
) -> dict[str, Any]:
    application = application or default_application
    if not application:
        raise ValueError("enqueue needs an application (argument or Client(application=))")
    body: dict[str, Any] = {
        "application": application,
        "job": job,
        "queue": queue or default_queue,
        "message": message,
    }
    if delay_seconds is not None:
        body["delay_seconds"] = delay_seconds
    return body


def _execution(body: dict[str, Any]) -> Execution:
    return Execution(
        message_id=body["message_id"],
        status=body["status"],
        id=body.get("id"),
        html_url=body.get("html_url"),
        message=body.get("message"),
    )


def _list_params(
    application: str | None,
    job: str | None,
    queue: str | None,
    status: str | None,
    page: int,
    per_page: int,
) -> dict[str, str | int]:
    params: dict[str, str | int] = {"page": page, "per_page": per_page}
    for key, value in (
        ("application", application),
        ("job", job),
        ("queue", queue),
        ("status", status),
    ):
        if value:
            params[key] = value
    return params


def _waited(
    message_id: str,
    execution: Execution,
    elapsed: float,
    interval: float,
    timeout: float,
    progress: Progress | None,
) -> bool:
    """After one poll of ``wait``: True when the execution has finished; WaitTimeout when
    another poll would come after ``timeout``."""
    if progress is not None:
        progress(execution, elapsed)
    if execution.finished:
        return True
    if elapsed + interval > timeout:
        raise WaitTimeout(
            f"execution {execution.message_id} is still {execution.status} after {timeout:.0f} s",
            execution,
        )
    return False


@dataclass(frozen=True)
class LogChunk:
    """Part of an execution's log: ``text`` from byte ``offset``; ``next_offset`` asks for
    what follows. ``source`` is ``pod`` (live, while it runs) or ``s3`` (kept)."""

    message_id: str
    text: str
    offset: int
    next_offset: int
    source: str
    finished: bool


def _log_chunk(body: dict[str, Any]) -> LogChunk:
    return LogChunk(
        message_id=body["message_id"],
        text=body.get("log", ""),
        offset=int(body.get("offset", 0)),
        next_offset=int(body.get("next_offset", 0)),
        source=str(body.get("source", "")),
        finished=bool(body.get("finished")),
    )


class Client:
    """The Barbeque Web API.

    ``application`` and ``queue`` are defaults for ``enqueue``; ``token`` is sent as
    ``Authorization: Bearer <token>``; ``timeout`` is httpx's (seconds or an
    ``httpx.Timeout``); ``retry`` says how to retry (``NO_RETRY`` to never).
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        application: str | None = None,
        queue: str = "default",
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retry: Retry = Retry(),
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.application = application
        self.queue = queue
        self.retry_policy = retry
        # Injectable, so that a test's fake clock stands in for real waiting.
        self._sleep = sleep
        self._clock = clock
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers=_headers(token),
            timeout=timeout,
            transport=transport,
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        policy = self.retry_policy
        for attempt in range(policy.attempts):
            response: httpx.Response | None = None
            error: httpx.HTTPError | None = None
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.HTTPError as exc:
                error = exc
            after = _answer_or_delay(policy, attempt, method, response, error, self._http.base_url)
            if isinstance(after, httpx.Response):
                return _raise_for(after)
            self._sleep(after)
        raise AssertionError("unreachable")  # pragma: no cover

    def enqueue(
        self,
        job: str,
        message: Any,
        *,
        queue: str | None = None,
        application: str | None = None,
        delay_seconds: int | None = None,
    ) -> str:
        """Send ``message`` to ``job``; returns the SQS message id that names the execution."""
        body = _enqueue_body(
            self.application, self.queue, job, message, queue, application, delay_seconds
        )
        result = self._request("POST", "/v2/job_executions", json=body)
        return str(result["message_id"])

    def status(self, message_id: str) -> Execution:
        """The execution's status in barbeque's words (unknown ids are ``pending``)."""
        body = self._request(
            "GET",
            f"/v1/job_executions/{message_id}",
            params={"fields": "__default__,html_url,message"},
        )
        return _execution(body)

    def retry(self, message_id: str, delay_seconds: int = 0) -> str:
        """Retry a failed execution; returns the retry's new message id."""
        body = self._request(
            "POST",
            f"/v1/job_executions/{message_id}/retries",
            json={"delay_seconds": delay_seconds},
        )
        return str(body["message_id"])

    def cancel(self, message_id: str) -> Execution:
        """Stop a pending or running execution."""
        body = self._request("POST", f"/v1/job_executions/{message_id}/cancel")
        return Execution(message_id=body["message_id"], status=body["status"], id=body.get("id"))

    def executions(
        self,
        *,
        application: str | None = None,
        job: str | None = None,
        queue: str | None = None,
        status: str | None = None,
        page: int = 1,
        per_page: int = 50,
    ) -> list[ExecutionSummary]:
        """Executions, newest first, filtered."""
        params = _list_params(application, job, queue, status, page, per_page)
        body = self._request("GET", "/v1/job_executions", params=params)
        return [ExecutionSummary.from_json(item) for item in body["job_executions"]]

    def logs(self, message_id: str, offset: int = 0) -> LogChunk:
        """The execution's log from byte ``offset``: the pod's while it runs, S3's after."""
        body = self._request(
            "GET", f"/v1/job_executions/{message_id}/logs", params={"offset": offset}
        )
        return _log_chunk(body)

    def follow_logs(self, message_id: str, interval: float = 1.0) -> Iterator[str]:
        """Yield the log as it grows until the execution has finished."""
        offset = 0
        while True:
            chunk = self.logs(message_id, offset)
            if chunk.text:
                yield chunk.text
            offset = chunk.next_offset
            if chunk.finished:
                return
            self._sleep(interval)

    def wait(
        self,
        message_id: str,
        timeout: float = 600.0,
        *,
        interval: float = 1.0,
        progress: Progress | None = None,
    ) -> Execution:
        """Poll until the execution (following its retries) is success, failed or error.

        ``progress(execution, elapsed_seconds)`` is called after every poll. Raises
        ``WaitTimeout`` (carrying the last status) when ``timeout`` passes first.
        """
        started = self._clock()
        while True:
            execution = self.status(message_id)
            elapsed = self._clock() - started
            if _waited(message_id, execution, elapsed, interval, timeout, progress):
                return execution
            self._sleep(interval)


class AsyncClient:
    """``Client`` for asyncio: the same methods, awaited (``follow_logs`` is an async
    iterator)."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        application: str | None = None,
        queue: str = "default",
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retry: Retry = Retry(),
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.application = application
        self.queue = queue
        self.retry_policy = retry
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers=_headers(token),
            timeout=timeout,
            transport=transport,
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        policy = self.retry_policy
        for attempt in range(policy.attempts):
            response: httpx.Response | None = None
            error: httpx.HTTPError | None = None
            try:
                response = await self._http.request(method, path, **kwargs)
            except httpx.HTTPError as exc:
                error = exc
            after = _answer_or_delay(policy, attempt, method, response, error, self._http.base_url)
            if isinstance(after, httpx.Response):
                return _raise_for(after)
            await asyncio.sleep(after)
        raise AssertionError("unreachable")  # pragma: no cover

    async def enqueue(
        self,
        job: str,
        message: Any,
        *,
        queue: str | None = None,
        application: str | None = None,
        delay_seconds: int | None = None,
    ) -> str:
        body = _enqueue_body(
            self.application, self.queue, job, message, queue, application, delay_seconds
        )
        result = await self._request("POST", "/v2/job_executions", json=body)
        return str(result["message_id"])

    async def status(self, message_id: str) -> Execution:
        body = await self._request(
            "GET",
            f"/v1/job_executions/{message_id}",
            params={"fields": "__default__,html_url,message"},
        )
        return _execution(body)

    async def retry(self, message_id: str, delay_seconds: int = 0) -> str:
        body = await self._request(
            "POST",
            f"/v1/job_executions/{message_id}/retries",
            json={"delay_seconds": delay_seconds},
        )
        return str(body["message_id"])

    async def cancel(self, message_id: str) -> Execution:
        body = await self._request("POST", f"/v1/job_executions/{message_id}/cancel")
        return Execution(message_id=body["message_id"], status=body["status"], id=body.get("id"))

    async def executions(
        self,
        *,
        application: str | None = None,
        job: str | None = None,
        queue: str | None = None,
        status: str | None = None,
        page: int = 1,
        per_page: int = 50,
    ) -> list[ExecutionSummary]:
        params = _list_params(application, job, queue, status, page, per_page)
        body = await self._request("GET", "/v1/job_executions", params=params)
        return [ExecutionSummary.from_json(item) for item in body["job_executions"]]

    async def logs(self, message_id: str, offset: int = 0) -> LogChunk:
        body = await self._request(
            "GET", f"/v1/job_executions/{message_id}/logs", params={"offset": offset}
        )
        return _log_chunk(body)

    async def wait(
        self,
        message_id: str,
        timeout: float = 600.0,  # noqa: ASYNC109  (Client.wait's signature)
        *,
        interval: float = 1.0,
        progress: Progress | None = None,
    ) -> Execution:
        started = time.monotonic()
        while True:
            execution = await self.status(message_id)
            elapsed = time.monotonic() - started
            if _waited(message_id, execution, elapsed, interval, timeout, progress):
                return execution
            await asyncio.sleep(interval)
