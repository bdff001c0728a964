"""Builds the FastAPI application: Web API, console, static files, error shapes.

``create_app()`` with no arguments wires the real adapters from the environment
(``barbeque.config.Settings`` for AWS/S3/namespace, ``DashboardSettings`` for the web
service) and starts the watch threads; tests hand in a ready ``Backend`` instead.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from barbeque.config import Settings
from barbeque_dashboard import api, console
from barbeque_dashboard.auth import Authenticator
from barbeque_dashboard.sampler import QueueSampler
from barbeque_dashboard.services import ApiError, Backend
from barbeque_dashboard.settings import DashboardSettings

logger = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
# Anything larger cannot become an SQS message anyway; refuse it before reading it.
MAX_BODY_BYTES = 1024 * 1024


def _describe(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        location = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
        parts.append(f"{location or 'body'}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


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
                stop()

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

    @app.middleware("http")
    async def _limit_body(request: Request, call_next: Any) -> Response:
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > MAX_BODY_BYTES:
            error = ApiError(
                413,
                "payload_too_large",
                f"the request body is {length} bytes; SQS accepts messages up to 256 KiB",
            )
            return JSONResponse(error.body(), status_code=413)
        response: Response = await call_next(request)
        return response

    app.include_router(api.router)
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
    from barbeque.adapters.kube import load_api_client
    from barbeque.adapters.s3 import S3
    from barbeque_dashboard.adapters import DashboardKube, DashboardSqs
    from barbeque_dashboard.cache import Cache, start_watchers

    api_client = load_api_client()
    kube = DashboardKube(api_client)
    # The watch threads need their own client: a watch holds its connection open.
    watch_client = load_api_client()
    cache = Cache()
    watchers = start_watchers(cache, watch_client)
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

    def stop() -> None:
        for watcher in watchers:
            watcher.stop()
        kube.close()

    return backend, authenticator, stop
