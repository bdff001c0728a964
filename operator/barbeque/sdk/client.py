"""A typed client of the Barbeque Web API over httpx; every refusal is an exception."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
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
    """409: the execution is not in a state that allows this (e.g. retrying a success)."""


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


class Client:
    """The Barbeque Web API.

    ``application`` and ``queue`` are defaults for ``enqueue``; ``token`` is sent as
    ``Authorization: Bearer <token>``.
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        application: str | None = None,
        queue: str = "default",
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Accept": "application/json", "User-Agent": "barbeque-sdk-python"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.application = application
        self.queue = queue
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"), headers=headers, timeout=timeout, transport=transport
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
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ServiceUnavailable(f"cannot reach {self._http.base_url}: {exc}") from exc
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
        application = application or self.application
        if not application:
            raise ValueError("enqueue needs an application (argument or Client(application=))")
        body: dict[str, Any] = {
            "application": application,
            "job": job,
            "queue": queue or self.queue,
            "message": message,
        }
        if delay_seconds is not None:
            body["delay_seconds"] = delay_seconds
        result = self._request("POST", "/v2/job_executions", json=body)
        return str(result["message_id"])

    def status(self, message_id: str) -> Execution:
        """The execution's status in barbeque's words (unknown ids are ``pending``)."""
        body = self._request(
            "GET",
            f"/v1/job_executions/{message_id}",
            params={"fields": "__default__,html_url,message"},
        )
        return Execution(
            message_id=body["message_id"],
            status=body["status"],
            id=body.get("id"),
            html_url=body.get("html_url"),
            message=body.get("message"),
        )

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
        params: dict[str, str | int] = {"page": page, "per_page": per_page}
        for key, value in (
            ("application", application),
            ("job", job),
            ("queue", queue),
            ("status", status),
        ):
            if value:
                params[key] = value
        body = self._request("GET", "/v1/job_executions", params=params)
        return [ExecutionSummary.from_json(item) for item in body["job_executions"]]

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
        started = time.monotonic()
        while True:
            execution = self.status(message_id)
            elapsed = time.monotonic() - started
            if progress is not None:
                progress(execution, elapsed)
            if execution.finished:
                return execution
            if elapsed + interval > timeout:
                raise WaitTimeout(
                    f"execution {message_id} is still {execution.status} after {timeout:.0f} s",
                    execution,
                )
            time.sleep(interval)
