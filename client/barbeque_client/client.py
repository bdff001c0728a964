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
import functools
import inspect
import random
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Concatenate, Generic, ParamSpec, Protocol, TypeVar

import httpx

T = TypeVar("T")
P = ParamSpec("P")

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


# One try's outcome: the service's answer, or the transport error that stood in its way.
Outcome = httpx.Response | httpx.HTTPError


def _should_retry(method: str, outcome: Outcome) -> bool:
    if isinstance(outcome, httpx.Response):
        if outcome.status_code in RETRY_ANY_METHOD:
            return True
        return outcome.status_code in RETRY_IDEMPOTENT and method in IDEMPOTENT_METHODS
    if isinstance(outcome, httpx.ConnectError | httpx.ConnectTimeout):
        return True  # the request never left
    return isinstance(outcome, httpx.TransportError) and method in IDEMPOTENT_METHODS


def _answer_or_delay(
    policy: Retry, attempt: int, method: str, outcome: Outcome, base_url: httpx.URL
) -> httpx.Response | float:
    """After one try: the response to answer with, or the seconds to wait before the next
    try; ServiceUnavailable when there is neither a response nor a try left."""
    last = attempt + 1 >= policy.attempts
    if not last and _should_retry(method, outcome):
        return policy.delay(attempt, outcome if isinstance(outcome, httpx.Response) else None)
    if isinstance(outcome, httpx.HTTPError):
        raise ServiceUnavailable(f"cannot reach {base_url}: {outcome}") from outcome
    return outcome


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


def _execution(body: dict[str, Any]) -> Execution:
    return Execution(
        message_id=body["message_id"],
        status=body["status"],
        id=body.get("id"),
        html_url=body.get("html_url"),
        message=body.get("message"),
    )


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


@dataclass(frozen=True)
class _Call(Generic[T]):
    """One Web API call, the same for both clients: what to send and how to read the answer."""

    method: str
    path: str
    read: Callable[[Any], T]
    params: dict[str, Any] | None = None
    json: Any = None

    def request(self, http: httpx.Client | httpx.AsyncClient) -> httpx.Request:
        return http.build_request(self.method, self.path, params=self.params, json=self.json)


def _message_id(body: dict[str, Any]) -> str:
    return str(body["message_id"])


def _cancelled(body: dict[str, Any]) -> Execution:
    return Execution(message_id=body["message_id"], status=body["status"], id=body.get("id"))


def _summaries(body: dict[str, Any]) -> list[ExecutionSummary]:
    return [ExecutionSummary.from_json(item) for item in body["job_executions"]]


class _Defaults(Protocol):
    """What a call takes from its client: the defaults of ``enqueue``."""

    application: str | None
    queue: str


# The Web API's calls, each declared once with the signature and docstring of the method
# both clients expose: ``_blocking`` and ``_awaited`` turn them into methods that send it.


def _enqueue(
    client: _Defaults,
    job: str,
    message: Any,
    *,
    queue: str | None = None,
    application: str | None = None,
    delay_seconds: int | None = None,
) -> _Call[str]:
    """Send ``message`` to ``job``; returns the SQS message id that names the execution."""
    application = application or client.application
    if not application:
        raise ValueError("enqueue needs an application (argument or Client(application=))")
    body: dict[str, Any] = {
        "application": application,
        "job": job,
        "queue": queue or client.queue,
        "message": message,
    }
    if delay_seconds is not None:
        body["delay_seconds"] = delay_seconds
    return _Call("POST", "/v2/job_executions", _message_id, json=body)


def _status(client: _Defaults, message_id: str) -> _Call[Execution]:
    """The execution's status in barbeque's words (unknown ids are ``pending``)."""
    fields = {"fields": "__default__,html_url,message"}
    return _Call("GET", f"/v1/job_executions/{message_id}", _execution, params=fields)


def _retry(client: _Defaults, message_id: str, delay_seconds: int = 0) -> _Call[str]:
    """Retry a failed execution; returns the retry's new message id."""
    body = {"delay_seconds": delay_seconds}
    return _Call("POST", f"/v1/job_executions/{message_id}/retries", _message_id, json=body)


def _cancel(client: _Defaults, message_id: str) -> _Call[Execution]:
    """Stop a pending or running execution."""
    return _Call("POST", f"/v1/job_executions/{message_id}/cancel", _cancelled)


def _executions(
    client: _Defaults,
    *,
    application: str | None = None,
    job: str | None = None,
    queue: str | None = None,
    status: str | None = None,
    page: int = 1,
    per_page: int = 50,
) -> _Call[list[ExecutionSummary]]:
    """Executions, newest first, filtered."""
    params: dict[str, str | int] = {"page": page, "per_page": per_page}
    for key, value in (
        ("application", application),
        ("job", job),
        ("queue", queue),
        ("status", status),
    ):
        if value:
            params[key] = value
    return _Call("GET", "/v1/job_executions", _summaries, params=params)


def _logs(client: _Defaults, message_id: str, offset: int = 0) -> _Call[LogChunk]:
    """The execution's log from byte ``offset``: the pod's while it runs, S3's after."""
    where = {"offset": offset}
    return _Call("GET", f"/v1/job_executions/{message_id}/logs", _log_chunk, params=where)


def _as_method(method: Callable[..., Any], owner: str, build: Callable[..., Any]) -> None:
    """Name and sign ``method`` as ``owner``'s: ``self`` first, answering what the call reads
    (so help() and inspect show the method, not the builder)."""
    signature = inspect.signature(build)
    client, *rest = signature.parameters.values()
    answer = str(signature.return_annotation).removeprefix("_Call[").removesuffix("]")
    method.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[client.replace(name="self", annotation=client.empty), *rest],
        return_annotation=answer,
    )
    method.__name__ = build.__name__.removeprefix("_")
    method.__qualname__ = f"{owner}.{method.__name__}"


def _blocking(
    build: Callable[Concatenate[_Defaults, P], _Call[T]],
) -> Callable[Concatenate[Client, P], T]:
    @functools.wraps(build)
    def method(self: Client, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._call(build(self, *args, **kwargs))

    _as_method(method, "Client", build)
    return method


def _awaited(
    build: Callable[Concatenate[_Defaults, P], _Call[T]],
) -> Callable[Concatenate[AsyncClient, P], Coroutine[Any, Any, T]]:
    @functools.wraps(build)
    async def method(self: AsyncClient, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._call(build(self, *args, **kwargs))

    _as_method(method, "AsyncClient", build)
    return method


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

    def _call(self, call: _Call[T]) -> T:
        policy = self.retry_policy
        for attempt in range(policy.attempts):
            outcome: Outcome
            try:
                outcome = self._http.send(call.request(self._http))
            except httpx.HTTPError as exc:
                outcome = exc
            after = _answer_or_delay(policy, attempt, call.method, outcome, self._http.base_url)
            if isinstance(after, httpx.Response):
                return call.read(_raise_for(after))
            self._sleep(after)
        raise AssertionError("unreachable")  # pragma: no cover

    enqueue = _blocking(_enqueue)
    status = _blocking(_status)
    retry = _blocking(_retry)
    cancel = _blocking(_cancel)
    executions = _blocking(_executions)
    logs = _blocking(_logs)

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

    async def _call(self, call: _Call[T]) -> T:
        policy = self.retry_policy
        for attempt in range(policy.attempts):
            outcome: Outcome
            try:
                outcome = await self._http.send(call.request(self._http))
            except httpx.HTTPError as exc:
                outcome = exc
            after = _answer_or_delay(policy, attempt, call.method, outcome, self._http.base_url)
            if isinstance(after, httpx.Response):
                return call.read(_raise_for(after))
            await asyncio.sleep(after)
        raise AssertionError("unreachable")  # pragma: no cover

    enqueue = _awaited(_enqueue)
    status = _awaited(_status)
    retry = _awaited(_retry)
    cancel = _awaited(_cancel)
    executions = _awaited(_executions)
    logs = _awaited(_logs)

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
