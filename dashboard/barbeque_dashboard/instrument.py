"""Request counts and latency of the console and Web API, and their ``/metrics`` page.

The label is the matched route's template, so ``/v1/job_executions/{message_id}`` is one
series however many ids are asked for; a path no route matched is ``other``.
"""

from __future__ import annotations

import time

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from barbeque import metrics

OTHER = "other"


class RequestMetrics:
    """Pure ASGI middleware: counts every answered request, times it to the first byte."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        recorded = False

        def record() -> None:
            nonlocal recorded
            if recorded:
                return
            recorded = True
            route = getattr(scope.get("route"), "path", None) or OTHER
            method = scope["method"] if scope["method"] in _METHODS else OTHER
            metrics.HTTP_REQUESTS.labels(route, method, str(status)).inc()
            metrics.HTTP_REQUEST_SECONDS.labels(route, method).observe(
                time.perf_counter() - started
            )

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)
            if message["type"] == "http.response.start":
                # Streams (a followed log) would otherwise count only when they end.
                record()

        try:
            await self.app(scope, receive, sending)
        finally:
            record()


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


async def metrics_page(request: Request) -> Response:
    return Response(generate_latest(metrics.CONSOLE_REGISTRY), media_type=CONTENT_TYPE_LATEST)
