"""The Web API: cookpad/barbeque's three endpoints, exactly, and our additions.

barbeque's shapes (``POST /v2/job_executions``, ``GET /v1/job_executions/:message_id``,
``POST /v1/job_executions/:message_id/retries``) are held to by barbeque_client users;
the rest (listing, cancel, health) is ours and documented in docs/webapi.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from barbeque.api import revision
from barbeque.api.models import JobExecution, Phase
from barbeque_dashboard.auth import COOKIE, Action, bearer
from barbeque_dashboard.services import (
    MAX_DELAY,
    ApiError,
    Backend,
    ExecutionFilter,
    Namespaced,
    not_found,
)
from barbeque_dashboard.status import STATUSES

STATUS_FILTER = (
    f"A barbeque status word ({', '.join(STATUSES)}) or a phase "
    f"({', '.join(phase.value for phase in Phase)}), in any case; any other word is "
    "answered 400 invalid_parameter."
)

router = APIRouter()
# Only for the OpenAPI document (securitySchemes); the token is checked in ``authorize``.
bearer_scheme = HTTPBearer(auto_error=False, description="A static token or a Kubernetes token")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]


class ErrorBody(BaseModel):
    status_code: int
    error_code: str
    message: str


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "invalid_parameter"},
    401: {"model": ErrorBody, "description": "missing or unknown token"},
    403: {"model": ErrorBody, "description": "the token may not do this"},
    404: {"model": ErrorBody, "description": "record_not_found"},
    503: {"model": ErrorBody, "description": "SQS or Kubernetes unavailable"},
}
JSON_WRITE_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    415: {"model": ErrorBody, "description": "the body is not declared JSON"},
}
READ_ERRORS: dict[int | str, dict[str, Any]] = {
    k: v for k, v in ERRORS.items() if k in (400, 401, 403, 503)
}
# A read of one named object, which may not exist.
READ_ONE_ERRORS = {**READ_ERRORS, 404: ERRORS[404]}


class EnqueueRequest(BaseModel):
    """barbeque's enqueue parameters."""

    model_config = ConfigDict(extra="ignore")

    application: str = Field(
        min_length=1, max_length=253, description="Application name (our namespace)."
    )
    job: str = Field(min_length=1, max_length=253, description="Job name (our JobDefinition name).")
    queue: str = Field(min_length=1, max_length=253, description="JobQueue name.")
    message: Any = Field(description="Any JSON value, handed to the job as BARBEQUE_MESSAGE.")
    delay_seconds: int | None = Field(
        default=None,
        ge=0,
        le=MAX_DELAY,
        description="Start no earlier than this; over 900 s becomes a Scheduled execution.",
    )


class EnqueueResponse(BaseModel):
    message_id: str
    status: str = "pending"
    id: None = None


class StatusResponse(BaseModel):
    model_config = ConfigDict(extra="allow")

    message_id: str
    status: str = Field(description="pending, running, success, failed, retried or error.")
    id: str | None = Field(description="The JobExecution name; null while unknown.")


class RetryRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    delay_seconds: int | None = Field(default=None, ge=0, le=MAX_DELAY)


class RetryResponse(BaseModel):
    message_id: str
    status: str = "pending"


class ExecutionSummary(BaseModel):
    model_config = ConfigDict(extra="allow")

    message_id: str
    id: str
    status: str
    phase: str
    application: str
    job: str
    queue: str


class ExecutionList(BaseModel):
    job_executions: list[ExecutionSummary]
    page: int
    per_page: int
    total: int


def _links(status: int, source: str, **operations: str) -> dict[str, Any]:
    """OpenAPI links from a response to the operations taking its ``message_id`` (what
    clients, and schemathesis's stateful phase, follow: enqueue, then status, retry,
    cancel of the very message)."""
    return {
        "responses": {
            str(status): {
                "links": {
                    name: {
                        "operationId": operation_id,
                        "parameters": {"message_id": f"$response.body#{source}"},
                    }
                    for name, operation_id in operations.items()
                }
            }
        }
    }


# operationIds of the execution endpoints, which the links name.
SHOW, RETRY, CANCEL = "show_job_execution", "retry_job_execution", "cancel_job_execution"
FOLLOW_UP = {"Status": SHOW, "Retry": RETRY, "Cancel": CANCEL}


def backend_of(request: Request) -> Backend:
    backend: Backend = request.app.state.backend
    return backend


def json_content(request: Request) -> None:
    """A body must be declared JSON: 415 names the type sent instead of a 400 about a
    body that was never read as JSON (forms, text/plain, or no Content-Type at all)."""
    headers = request.headers
    has_body = headers.get("content-length", "0") != "0" or "transfer-encoding" in headers
    if not has_body:
        return
    media_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    ):
        return
    sent = f"Content-Type: {media_type}" if media_type else "no Content-Type"
    raise ApiError(
        415,
        "unsupported_media_type",
        f"the body must be JSON sent with Content-Type: application/json; it came with {sent}",
    )


JsonContent = Depends(json_content)


async def authorize(request: Request, action: Action) -> str:
    """Raise 401/403/503 unless the request's token may do ``action``; returns the user."""
    token = bearer(request.headers.get("authorization"), request.cookies.get(COOKIE))
    decision = await request.app.state.authenticator.decide(token, action)
    if not decision.allowed:
        raise ApiError(decision.status_code, decision.error_code, decision.reason)
    user: str = decision.user
    return user


async def authorized_execution(request: Request, message_id: str, verb: str) -> JobExecution:
    """The execution named by ``message_id``; an unknown one answers 401 before 404.

    Anonymous callers must not learn which message ids exist, so a missing execution is
    only reported to a caller whose token is valid.
    """
    execution = backend_of(request).cache.execution_by_message_id(message_id)
    if execution is None:
        token = bearer(request.headers.get("authorization"), request.cookies.get(COOKIE))
        decision = await request.app.state.authenticator.decide(token, Action(verb))
        if decision.status_code in (401, 503):
            raise ApiError(decision.status_code, decision.error_code, decision.reason)
        raise not_found(f"JobExecution with message_id {message_id!r} is not found")
    return execution


async def authorize_read(request: Request) -> None:
    if not request.app.state.settings.public_reads:
        await authorize(request, Action("list"))


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


Handler = TypeVar("Handler", bound=Callable[..., Any])


def barbeque_write(path: str, **route: Any) -> Callable[[Handler], Handler]:
    """One of barbeque's JSON writes: answers 201, takes a JSON body, shares its errors."""
    defaults: dict[str, Any] = {
        "status_code": 201,
        "responses": JSON_WRITE_ERRORS,
        "tags": ["barbeque"],
        "dependencies": [JsonContent],
    }
    return router.post(path, **{**defaults, **route})


def api_read(path: str, tag: str, summary: str, **route: Any) -> Callable[[Handler], Handler]:
    """A GET of the Web API: shares the errors of every read."""
    defaults: dict[str, Any] = {"responses": READ_ERRORS, "tags": [tag], "summary": summary}
    return router.get(path, **{**defaults, **route})


@barbeque_write(
    "/v2/job_executions",
    response_model=EnqueueResponse,
    responses={
        **JSON_WRITE_ERRORS,
        413: {"model": ErrorBody, "description": "message too large"},
    },
    summary="Enqueue a message (barbeque's API)",
    operation_id="enqueue_job_execution",
    openapi_extra=_links(201, "/message_id", **FOLLOW_UP),
)
async def enqueue(body: EnqueueRequest, request: Request, _: Credentials) -> dict[str, Any]:
    backend = backend_of(request)
    await authorize(request, Action("create", backend.namespace_of(body.application)))
    sent = await backend.enqueue(
        body.application, body.job, body.queue, body.message, body.delay_seconds
    )
    return {"message_id": sent.message_id, "status": "pending", "id": None}


@api_read(
    "/v1/job_executions/{message_id}",
    "barbeque",
    "Status of an execution (barbeque's API); unknown ids answer pending",
    response_model=StatusResponse,
    operation_id=SHOW,
    openapi_extra=_links(200, "/message_id", Retry=RETRY, Cancel=CANCEL),
)
async def show(
    message_id: str,
    request: Request,
    _: Credentials,
    fields: Annotated[
        str | None, Query(description="__default__,html_url,message adds those fields")
    ] = None,
) -> dict[str, Any]:
    await authorize_read(request)
    wanted = {f.strip() for f in (fields or "").split(",") if f.strip()}
    return backend_of(request).status_body(message_id, wanted, base_url(request))


@barbeque_write(
    "/v1/job_executions/{message_id}/retries",
    response_model=RetryResponse,
    summary="Retry an execution in any state (barbeque's API)",
    operation_id=RETRY,
    openapi_extra=_links(201, "/message_id", **FOLLOW_UP),
)
async def retry(
    message_id: str, request: Request, _: Credentials, body: RetryRequest | None = None
) -> dict[str, Any]:
    backend = backend_of(request)
    execution = await authorized_execution(request, message_id, "create")
    await authorize(request, Action("create", execution.metadata.namespace))
    sent = await backend.retry(message_id, body.delay_seconds if body else None)
    return {"message_id": sent.message_id, "status": "pending"}


@router.post(
    "/v1/job_executions/{message_id}/cancel",
    status_code=202,
    response_model=StatusResponse,
    responses={**ERRORS, 409: {"model": ErrorBody, "description": "already finished"}},
    tags=["executions"],
    summary="Cancel a pending or running execution (ours)",
    operation_id=CANCEL,
    openapi_extra=_links(202, "/message_id", Status=SHOW, Retry=RETRY),
)
async def cancel(message_id: str, request: Request, _: Credentials) -> dict[str, Any]:
    backend = backend_of(request)
    execution = await authorized_execution(request, message_id, "patch")
    await authorize(request, Action("patch", execution.metadata.namespace))
    await backend.cancel(message_id)
    return backend.status_body(message_id, set(), base_url(request))


@api_read(
    "/v1/job_executions",
    "executions",
    "List executions, newest first (ours)",
    response_model=ExecutionList,
    operation_id="list_job_executions",
    openapi_extra=_links(200, "/job_executions/0/message_id", **FOLLOW_UP),
)
async def list_executions(
    request: Request,
    _: Credentials,
    application: str | None = None,
    job: str | None = None,
    queue: str | None = None,
    status: Annotated[str | None, Query(description=STATUS_FILTER)] = None,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    await authorize_read(request)
    backend = backend_of(request)
    where = ExecutionFilter(application=application, job=job, queue=queue, status=status)
    found = backend.filter_executions(where, page=page, per_page=per_page)
    return {
        "job_executions": [backend.summary(e, base_url(request)) for e in found.items],
        "page": found.page,
        "per_page": found.per_page,
        "total": found.total,
    }


@api_read("/v1/applications", "definitions", "Applications")
async def applications(request: Request, _: Credentials) -> list[dict[str, Any]]:
    await authorize_read(request)
    cache = backend_of(request).cache
    definitions = cache.definitions()
    return [
        {
            "name": name,
            "job_definitions": sorted(
                d.metadata.name
                for d in definitions
                if cache.application_for(d.metadata.namespace or "") == name
            ),
        }
        for name in cache.applications()
    ]


def _listing_by_application(
    path: str,
    summary: str,
    name: str,
    listed: Callable[[Backend], list[Namespaced]],
    body: Callable[[Backend, Namespaced], dict[str, Any]],
) -> None:
    """Route a GET of every object of one kind, or of one application's (``?application=``)."""

    async def listing(
        request: Request, _: Credentials, application: str | None = None
    ) -> list[dict[str, Any]]:
        await authorize_read(request)
        backend = backend_of(request)
        return [body(backend, o) for o in backend.of_application(listed(backend), application)]

    listing.__name__ = name  # the route's name and operationId
    api_read(path, "definitions", summary)(listing)


_listing_by_application(
    "/v1/job_definitions",
    "Job definitions",
    "job_definitions",
    lambda backend: backend.cache.definitions(),
    Backend.definition_body,
)


@api_read(
    "/v1/applications/{application}/job_definitions/{job}",
    "definitions",
    "One job definition",
    responses=READ_ONE_ERRORS,
)
async def job_definition(
    application: str, job: str, request: Request, _: Credentials
) -> dict[str, Any]:
    await authorize_read(request)
    backend = backend_of(request)
    definition = backend.cache.definition(application, job)
    if definition is None:
        raise not_found(f"JobDefinition {job!r} of application {application!r} is not found")
    return backend.definition_body(definition)


class RevisionLockRequest(BaseModel):
    """barbeque's revision lock parameter."""

    model_config = ConfigDict(extra="ignore")

    revision: str = Field(
        pattern=revision.TAG.pattern,
        description="The image tag every job definition of the application runs with.",
    )


class RevisionLockResponse(BaseModel):
    revision: str
    job_definitions: list[str] = Field(description="The definitions pinned (ours).")


@barbeque_write(
    "/v1/apps/{name}/revision_lock",
    response_model=RevisionLockResponse,
    summary="Pin the image tag of every job definition of an application (barbeque's API)",
    operation_id="lock_revision",
)
async def lock_revision(
    name: str, body: RevisionLockRequest, request: Request, _: Credentials
) -> dict[str, Any]:
    await authorize(request, Action("patch", name, resource="jobdefinitions"))
    pinned = await backend_of(request).lock_revision(name, body.revision)
    return {"revision": body.revision, "job_definitions": pinned}


@router.delete(
    "/v1/apps/{name}/revision_lock",
    status_code=204,
    response_class=Response,
    responses=ERRORS,
    tags=["barbeque"],
    summary="Release the revision lock: each definition runs its own image again",
    operation_id="unlock_revision",
)
async def unlock_revision(name: str, request: Request, _: Credentials) -> Response:
    await authorize(request, Action("patch", name, resource="jobdefinitions"))
    await backend_of(request).lock_revision(name, None)
    return Response(status_code=204)


def _queue_body(view: Any) -> dict[str, Any]:
    queue = view.queue
    stats = view.stats
    dlq = view.dead_letter_stats
    return {
        "name": queue.metadata.name,
        "queue_url": view.url,
        "phase": queue.status.phase,
        "max_concurrent_executions": queue.spec.max_concurrent_executions,
        "running_executions": view.running,
        "scheduled_executions": len(view.scheduled),
        "visible": stats.visible if stats else None,
        "in_flight": stats.in_flight if stats else None,
        "delayed": stats.delayed if stats else None,
        "dead_letter_queue_url": view.dead_letter_url,
        "dead_letter_visible": dlq.visible if dlq else None,
        "error": view.error,
    }


@api_read("/v1/job_queues", "queues", "Job queues")
async def job_queues(request: Request, _: Credentials) -> list[dict[str, Any]]:
    await authorize_read(request)
    backend = backend_of(request)
    return [_queue_body(view) for view in await backend.queue_views()]


@api_read(
    "/v1/job_queues/{name}", "queues", "One job queue with SQS figures", responses=READ_ONE_ERRORS
)
async def job_queue(name: str, request: Request, _: Credentials) -> dict[str, Any]:
    await authorize_read(request)
    backend = backend_of(request)
    queue = backend.cache.queue(name)
    if queue is None:
        raise not_found(f"JobQueue {name!r} is not found")
    return _queue_body(await backend.queue_view(queue))


_listing_by_application(
    "/v1/sns_subscriptions",
    "SNS subscriptions: which topic runs which job through which queue (ours)",
    "sns_subscriptions",
    lambda backend: backend.cache.subscriptions(),
    Backend.subscription_body,
)


class LogResponse(BaseModel):
    message_id: str
    log: str = Field(description="The log from byte `offset` (stdout and stderr, merged)")
    offset: int = Field(description="Where `log` starts, in bytes of UTF-8")
    next_offset: int = Field(description="Ask for `offset=next_offset` to get what follows")
    source: str = Field(description="pod (live, while it runs), s3 (kept) or none (not yet)")
    finished: bool = Field(description="The execution is final and this is its whole log")


@api_read(
    "/v1/job_executions/{message_id}/logs",
    "executions",
    "An execution's log: from its pod while it runs, from S3 afterwards",
    response_model=LogResponse,
)
async def execution_logs(
    message_id: str,
    request: Request,
    _: Credentials,
    offset: Annotated[int, Query(ge=0, description="Skip this many bytes (to follow)")] = 0,
) -> dict[str, Any]:
    await authorize_read(request)
    execution = await authorized_execution(request, message_id, "get")
    read = await backend_of(request).log_from(execution, offset)
    return {
        "message_id": message_id,
        "log": read.text,
        "offset": read.offset,
        "next_offset": read.next_offset,
        "source": read.source,
        "finished": read.finished,
    }


@router.get("/healthz", tags=["health"], summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    tags=["health"],
    summary="The cache has listed every kind",
    responses={503: {"description": "not synced yet"}},
)
async def readyz(request: Request, response: Response) -> dict[str, Any]:
    cache = backend_of(request).cache
    if not cache.ready:
        response.status_code = 503
        return {"status": "starting", "synced": sorted(cache.synced), "error": cache.last_error}
    return {"status": "ok"}
