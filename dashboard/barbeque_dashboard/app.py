"""Builds the FastAPI application: Web API, console, static files, error shapes.

``create_app()`` with no arguments wires the real adapters from the environment
(``barbeque.config.Settings`` for AWS/S3/namespace, ``DashboardSettings`` for the web
service) and starts the watches on its event loop; tests hand in a ready ``Backend``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator
from http import HTTPStatus
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from barbeque.config import Settings
from barbeque_dashboard import api, console, editing
from barbeque_dashboard.auth import Authenticator
from barbeque_dashboard.instrument import RequestMetrics, metrics_page
from barbeque_dashboard.sampler import QueueSampler
from barbeque_dashboard.services import ApiError, Backend
from barbeque_dashboard.settings import DashboardSettings

logger = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
# Anything larger cannot become an SQS message anyway; refuse it before reading it.
MAX_BODY_BYTES = 1024 * 1024
# Error codes for the refusals Starlette and FastAPI make themselves.
HTTP_ERROR_CODES = {
    400: "invalid_parameter",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def too_large(size: str) -> ApiError:
    return ApiError(
        413,
        "payload_too_large",
        f"the request body is {size} bytes; it may be at most {MAX_BODY_BYTES} "
        "(and SQS accepts messages up to 256 KiB)",
    )


class BodyLimit:
    """Refuses request bodies over ``limit`` bytes with 413, whether their length is
    declared (``Content-Length``: answered before reading) or only seen while streaming
    (chunked: the read stops at the limit). Pure ASGI, so the body is never buffered."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"").decode("latin-1")
        if declared.isdigit() and int(declared) > self.limit:
            error = too_large(declared)
            await JSONResponse(error.body(), status_code=413)(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    # FastAPI passes an HTTPException from the body read on to the app's
                    # handler (any other exception would become a 400 "error parsing").
                    raise HTTPException(413, too_large(f"more than {self.limit}").message)
            return message

        await self.app(scope, limited, send)


_NOT_AN_OBJECT = ("model_attributes_type", "dict_type", "model_type")


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__


def _describe(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        if error.get("type") == "json_invalid":
            position = [p for p in error.get("loc", ()) if p != "body"]
            why = (error.get("ctx") or {}).get("error") or "invalid"
            where = f" (character {position[0]})" if position else ""
            return f"the body is not JSON: {why}{where}"
        if tuple(error.get("loc", ())) == ("body",) and error.get("type") in _NOT_AN_OBJECT:
            return f"the body must be a JSON object, not {_json_kind(error.get('input'))}"
        location = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
        parts.append(f"{location or 'body'}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def _snake(phrase: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", phrase.lower()).strip("_")


def _unreadable(exc: HTTPException) -> str:
    """Why FastAPI could not read the body, in words (it only says it could not)."""
    cause = exc.__cause__
    if isinstance(cause, UnicodeDecodeError):
        return f"the body is not valid UTF-8 (byte {cause.start}); JSON must be UTF-8"
    if isinstance(cause, RecursionError):
        return "the body nests too deeply to be read as JSON"
    if isinstance(cause, ValueError):
        return f"the body is not JSON: {str(cause)[:200]}"
    return "the body could not be read as JSON"


def _error_response(request: Request, exc: ApiError) -> Response:
    if console.wants_html(request):
        return console.error_page(request, exc)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
    return JSONResponse(exc.body(), status_code=exc.status_code, headers=headers)


def create_app(
    backend: Backend | None = None,
    authenticator: Authenticator | None = None,
    settings: DashboardSettings | None = None,
    base_settings: Settings | None = None,
) -> FastAPI:
    dashboard_settings = settings or DashboardSettings()
    stoppers: list[Any] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if app.state.backend is None:
            built, auth, stop = _build(dashboard_settings, base_settings or Settings())
            app.state.backend = built
            app.state.authenticator = authenticator or auth
            stoppers.append(stop)
        sampler = QueueSampler(app.state.backend, dashboard_settings.dashboard_queue_sample_seconds)
        app.state.sampler = sampler
        sampler.start()
        try:
            yield
        finally:
            await sampler.stop()
            for stop in stoppers:
                await stop()

    app = FastAPI(
        title="Barbeque on Kubernetes",
        version="0.1.0",
        description=(
            "Web API compatible with cookpad/barbeque (POST /v2/job_executions, "
            "GET /v1/job_executions/{message_id}, POST /v1/job_executions/{message_id}/retries) "
            "plus listing, cancel and health endpoints."
        ),
        lifespan=lifespan,
        # Swagger UI and ReDoc load their assets from a CDN; the console serves nothing
        # from elsewhere, so only the OpenAPI document itself is published.
        docs_url=None,
        redoc_url=None,
    )
    app.state.backend = backend
    app.state.authenticator = authenticator or Authenticator(dashboard_settings.static_tokens())
    app.state.settings = dashboard_settings
    app.state.sampler = None

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> Response:
        return _error_response(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        return _error_response(request, ApiError(400, "invalid_parameter", _describe(exc)))

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> Response:
        """Starlette's and FastAPI's own refusals (no route, wrong method, an unreadable
        body, too large) in barbeque's shape too, not ``{"detail": ...}``."""
        code = HTTP_ERROR_CODES.get(exc.status_code) or _snake(HTTPStatus(exc.status_code).phrase)
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        if detail == "There was an error parsing the body":
            detail = _unreadable(exc)
        response = _error_response(request, ApiError(exc.status_code, code, detail))
        for name, value in (exc.headers or {}).items():
            response.headers.setdefault(name, value)
        return response

    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)
    # Outermost of ours: it sees the 413s BodyLimit answers too.
    app.add_middleware(RequestMetrics)
    # Prometheus' scrape, unauthenticated like /healthz; not part of the Web API's document.
    app.add_route("/metrics", metrics_page, methods=["GET"], include_in_schema=False)

    app.include_router(api.router)
    # Before the console's pages: /job_queues/new is a form, not a queue named "new".
    app.include_router(editing.router)
    app.include_router(console.router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    return app


SA_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def _own_namespace(base: Settings) -> str:
    """BARBEQUE_NAMESPACE if set, else the pod's own namespace, else the default."""
    if "namespace" in base.model_fields_set:
        return base.namespace
    try:
        return SA_NAMESPACE_FILE.read_text().strip() or base.namespace
    except OSError:
        return base.namespace


def _build(settings: DashboardSettings, base: Settings) -> tuple[Backend, Authenticator, Any]:
    """The real collaborators: Kubernetes watch cache, SQS, S3, token checks."""
    from barbeque.adapters.kube import Connection, load_api_client
    from barbeque.adapters.s3 import S3
    from barbeque.adapters.watch import WatchClient
    from barbeque.api.models import GROUP, VERSION
    from barbeque_dashboard.adapters import DashboardKube, DashboardSqs
    from barbeque_dashboard.cache import Cache, build_watches

    connection = Connection.from_api_client(load_api_client())
    kube = DashboardKube(connection, pool_size=16)
    cache = Cache()
    # Each lists first, then watches; /readyz says "starting" until all three listed.
    watches = [
        (watch, asyncio.create_task(watch.run(), name=f"watch-{watch.resource}"))
        for watch in build_watches(
            cache,
            lambda kind: WatchClient(
                connection,
                "/api/v1/namespaces" if kind == "namespaces" else f"/apis/{GROUP}/{VERSION}/{kind}",
                timeout_seconds=60,
            ),
        )
    ]
    sqs = DashboardSqs(base.aws_region, base.sqs_endpoint_url)
    s3 = S3(base.aws_region, base.s3_endpoint_url, base.s3_bucket)
    backend = Backend(
        cache,
        sqs,
        s3,
        kube,
        console_url=base.console_url,
        s3_for_bucket=lambda bucket: S3(base.aws_region, base.s3_endpoint_url, bucket),
    )
    authenticator = Authenticator(
        settings.static_tokens(),
        reviewer=kube if settings.token_review else None,
        secrets=kube,
        secret=(_own_namespace(base), settings.api_token_secret)
        if settings.api_token_secret
        else None,
        secret_refresh_seconds=settings.api_token_secret_refresh_seconds,
        cache_seconds=settings.token_cache_seconds,
    )

    async def stop() -> None:
        for watch, task in watches:
            await watch.stop(task)
        await kube.close()

    return backend, authenticator, stop
