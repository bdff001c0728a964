"""The web console: server-rendered pages over the same Backend as the Web API.

Pages read the watch-backed cache (and SQS and S3 where a page shows them) and render
only one page of rows, so a list of ten thousand executions stays fast. Actions (retry,
cancel) are plain HTML forms authenticated by the login cookie; a small local script
refreshes the live part of each page.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from barbeque.api import revision
from barbeque.services.statistics import Bucket, hour_of
from barbeque_dashboard import charts
from barbeque_dashboard import status as words
from barbeque_dashboard.auth import COOKIE, Action, bearer
from barbeque_dashboard.cache import created_at
from barbeque_dashboard.records import ExecutionView
from barbeque_dashboard.services import ApiError, Backend, ExecutionFilter, not_found

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).resolve().parent / "templates")

API_PREFIXES = ("/v1/", "/v2/", "/healthz", "/readyz", "/openapi", "/docs", "/static", "/redoc")


def wants_html(request: Request) -> bool:
    return not request.url.path.startswith(API_PREFIXES)


def _ago(value: datetime | None, now: datetime | None = None) -> str:
    if value is None:
        return ""
    seconds = int(((now or datetime.now(UTC)) - value).total_seconds())
    if seconds < 0:
        return f"in {_span(-seconds)}"
    return f"{_span(seconds)} ago"


def _span(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60}s"
    if seconds < 86400:
        return f"{seconds // 3600}h {seconds % 3600 // 60}m"
    return f"{seconds // 86400}d {seconds % 86400 // 3600}h"


def _time(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if value else ""


def elapsed(execution: ExecutionView) -> float | None:
    start, end = execution.status.started_at, execution.status.finished_at
    if start and end:
        return max(0.0, (end - start).total_seconds())
    return None


templates.env.filters["ago"] = _ago
templates.env.filters["when"] = _time
templates.env.filters["span"] = lambda s: "" if s is None else _span(s)
templates.env.globals["elapsed"] = elapsed
templates.env.globals["locked_revision"] = revision.locked_revision
templates.env.globals["effective_image"] = revision.effective_image


def _backend(request: Request) -> Backend:
    backend: Backend = request.app.state.backend
    return backend


def _token(request: Request) -> str | None:
    return bearer(request.headers.get("authorization"), request.cookies.get(COOKIE))


class LoginRequired(Exception):
    """A page asked for without a session; the app answers with a redirect to log in."""

    def __init__(self, target: str) -> None:
        super().__init__(target)
        self.target = target

    def response(self) -> Response:
        return RedirectResponse(f"/login?next={quote(self.target)}", status_code=303)


async def require_read(request: Request) -> None:
    """Returns when the page may be shown; raises LoginRequired (no session) or ApiError."""
    if request.app.state.settings.public_reads:
        return
    decision = await request.app.state.authenticator.decide(_token(request), Action("list"))
    if decision.allowed:
        return
    if decision.status_code == 401:
        raise LoginRequired(
            request.url.path + (f"?{request.url.query}" if request.url.query else "")
        )
    raise ApiError(decision.status_code, decision.error_code, decision.reason)


async def _readable(request: Request) -> Backend:
    await require_read(request)
    return _backend(request)


# A page handler's parameter: the backend, after the caller has been allowed to read pages.
Readable = Annotated[Backend, Depends(_readable)]


def _same_origin(request: Request) -> bool:
    """Forms must come from our own pages (the cookie is SameSite=Strict too)."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin or origin == "null":
        return True
    return urlsplit(origin).netloc == request.headers.get("host", "")


async def _form(request: Request) -> dict[str, str]:
    raw = (await request.body()).decode("utf-8", errors="replace")
    return {k: v[0] for k, v in parse_qs(raw).items()}


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
    settings = request.app.state.settings
    context.setdefault("title", "Barbeque")
    context["request"] = request
    context.setdefault("refresh", settings.dashboard_refresh_seconds)
    context["logged_in"] = bool(request.cookies.get(COOKIE))
    context["notice"] = request.query_params.get("notice")
    context["status_word"] = _backend(request).status_word if request.app.state.backend else None
    return templates.TemplateResponse(request, template, context, status_code=status_code)


def error_page(request: Request, exc: ApiError) -> Response:
    return render(request, "error.html", status_code=exc.status_code, error=exc, title="Error")


def _page_number(request: Request) -> int:
    try:
        return max(1, min(1_000_000, int(request.query_params.get("page", "1"))))
    except ValueError:
        return 1


def _pager(request: Request, page: int, pages: int) -> dict[str, Any]:
    params = dict(request.query_params)
    params.pop("notice", None)

    def link(number: int) -> str:
        return "?" + urlencode({**params, "page": str(number)})

    return {
        "page": page,
        "pages": pages,
        "prev": link(page - 1) if page > 1 else None,
        "next": link(page + 1) if page < pages else None,
    }


def _listing(request: Request, backend: Backend, **where: str | None) -> dict[str, Any]:
    """One page of the executions ``where`` says, filtered by the ``status`` query
    parameter: what the executions table of a page renders."""
    status = request.query_params.get("status") or None
    page = backend.filter_executions(
        ExecutionFilter(**where, status=status),
        page=_page_number(request),
        per_page=request.app.state.settings.dashboard_page_size,
    )
    return {
        "page": page,
        "paging": _pager(request, page.page, page.pages),
        "status": status,
        "statuses": words.STATUSES,
    }


# -- pages -------------------------------------------------------------------------------


@router.get("/")
async def home() -> Response:
    return RedirectResponse("/applications", status_code=303)


@router.get("/applications", response_class=HTMLResponse)
async def applications(request: Request, backend: Readable) -> Response:
    cache = backend.cache
    definitions = Counter(d.metadata.namespace for d in cache.definitions())
    executions = Counter(e.spec.application for e in cache.executions())
    rows = [
        {"name": name, "definitions": definitions[name], "executions": executions[name]}
        for name in cache.applications()
    ]
    return render(request, "applications.html", rows=rows, title="Applications")


@router.get("/applications/{application}", response_class=HTMLResponse)
async def application(application: str, request: Request, backend: Readable) -> Response:
    definitions = [d for d in backend.cache.definitions() if d.metadata.namespace == application]
    if not definitions and application not in backend.cache.applications():
        raise not_found(f"application {application!r} is not found")
    rows = [_definition_row(backend, d) for d in definitions]
    return render(
        request, "application.html", application=application, rows=rows, title=application
    )


def _definition_row(backend: Backend, definition: Any) -> dict[str, Any]:
    executions = backend.cache.executions_of(
        definition.metadata.namespace or "", definition.metadata.name
    )
    last = executions[0] if executions else None
    return {
        "definition": definition,
        "count": len(executions),
        "last": last,
        "last_status": backend.status_word(last) if last else None,
    }


@router.get("/job_definitions", response_class=HTMLResponse)
async def definitions(request: Request, backend: Readable) -> Response:
    rows = [_definition_row(backend, d) for d in backend.cache.definitions()]
    return render(request, "definitions.html", rows=rows, title="Job definitions")


@router.get("/applications/{application}/job_definitions/{job}", response_class=HTMLResponse)
async def definition(application: str, job: str, request: Request, backend: Readable) -> Response:
    found = backend.cache.definition(application, job)
    if found is None:
        raise not_found(f"JobDefinition {job!r} of application {application!r} is not found")
    return render(
        request,
        "definition.html",
        definition=found,
        spec_yaml=json.dumps(
            found.spec.model_dump(mode="json", by_alias=True, exclude_none=True), indent=2
        ),
        **_listing(request, backend, application=application, job=job),
        title=f"{application}/{job}",
    )


def _hours(now: datetime, count: int) -> list[datetime]:
    top = now.replace(minute=0, second=0, microsecond=0)
    return [top - timedelta(hours=count - 1 - i) for i in range(count)]


@router.get(
    "/applications/{application}/job_definitions/{job}/statistics", response_class=HTMLResponse
)
async def statistics(application: str, job: str, request: Request, backend: Readable) -> Response:
    found = backend.cache.definition(application, job)
    if found is None:
        raise not_found(f"JobDefinition {job!r} of application {application!r} is not found")
    try:
        days = max(1, min(30, int(request.query_params.get("days", "3"))))
    except ValueError:
        days = 3
    now = datetime.now(UTC)
    hours = _hours(now, days * 24)
    first = hours[0]
    # Collected executions are in the kept statistics; the rest are still in the cluster.
    kept, problem = await backend.kept_statistics(found)
    buckets: dict[datetime, Bucket] = defaultdict(Bucket)
    for hour, bucket in kept.hours.items():
        if hour >= first:
            buckets[hour] = Bucket(bucket.count, bucket.seconds, bucket.timed)
    for execution in backend.cache.executions_of(application, job):
        created = created_at(execution)
        if created < first:
            break  # newest first: the rest is older
        if execution.metadata.name in kept.pending:
            continue  # counted in the kept statistics, and about to be deleted
        buckets[hour_of(created)].add(elapsed(execution))
    label = "%m-%d %H:00"
    count_points = [(h.strftime(label), float(buckets[h].count)) for h in hours]
    duration_points = [
        (h.strftime(label), buckets[h].seconds / buckets[h].timed if buckets[h].timed else 0.0)
        for h in hours
    ]
    return render(
        request,
        "statistics.html",
        definition=found,
        days=days,
        total=sum(b.count for b in buckets.values()),
        problem=problem,
        count_chart=charts.bar_chart(
            count_points, title="Executions per hour", label_every=max(1, len(hours) // 6)
        ),
        duration_chart=charts.bar_chart(
            duration_points,
            title="Average duration per hour (seconds)",
            unit=" s",
            label_every=max(1, len(hours) // 6),
            css_class="bars duration",
        ),
        title=f"Statistics of {application}/{job}",
    )


@router.get("/job_executions", response_class=HTMLResponse)
async def executions(request: Request, backend: Readable) -> Response:
    keys = ("application", "job", "queue")
    filters = {k: request.query_params.get(k, "") for k in keys}
    return render(
        request,
        "executions.html",
        **_listing(request, backend, **{k: v or None for k, v in filters.items()}),
        filters=filters,
        title="Executions",
    )


@router.get("/failures", response_class=HTMLResponse)
async def failures(request: Request, backend: Readable) -> Response:
    rows = backend.failures()
    number = _page_number(request)
    size = request.app.state.settings.dashboard_page_size
    pages = max(1, -(-len(rows) // size))
    return render(
        request,
        "failures.html",
        rows=rows[(number - 1) * size : number * size],
        total=len(rows),
        paging=_pager(request, number, pages),
        title="Failures",
    )


@router.get("/job_executions/{message_id}", response_class=HTMLResponse)
async def execution(message_id: str, request: Request, backend: Readable) -> Response:
    archived = False
    try:
        found = backend.execution(message_id)
    except ApiError:
        restored = await backend.archived(message_id)
        if restored is None:
            raise
        found, archived = restored, True
    logs = await backend.logs(found)
    timeline: list[tuple[datetime, str, str]] = []
    if found.metadata.creation_timestamp:
        timeline.append((found.metadata.creation_timestamp, "Recorded", "message received"))
    if found.spec.not_before:
        timeline.append((found.spec.not_before, "Scheduled", "not before this time"))
    for condition in found.status.conditions:
        if condition.last_transition_time:
            timeline.append(
                (
                    condition.last_transition_time,
                    f"{condition.type}={condition.status}",
                    " ".join(p for p in (condition.reason, condition.message) if p),
                )
            )
    if found.status.started_at:
        timeline.append((found.status.started_at, "Started", found.status.pod_name or ""))
    if found.status.finished_at:
        timeline.append(
            (found.status.finished_at, found.status.phase or "Finished", found.status.reason or "")
        )
    timeline.sort(key=lambda item: item[0])
    chain = backend.retry_chain(found)
    target = words.last_retry(found, backend.cache.next_retry) or found
    return render(
        request,
        "execution.html",
        execution=found,
        status=backend.status_word(found) if not archived else words.own_status(found),
        message_json=json.dumps(found.spec.message, indent=2, ensure_ascii=False),
        logs=logs,
        timeline=timeline,
        chain=chain,
        retryable=not archived and words.is_retryable(target, backend.cache.next_retry),
        cancellable=not archived and not words.is_finished(found),
        archived=archived,
        definition=backend.cache.definition(found.spec.application, found.spec.job),
        job_name=_job_name(found),
        job_url=_job_url(request, found),
        title=f"Execution {message_id}",
    )


def _job_name(execution: ExecutionView) -> str | None:
    """The execution's Job. The operator does not write ``jobName`` when it creates the
    Job of a fresh execution (no phase yet): that Job is named after the execution."""
    if execution.status.job_name:
        return execution.status.job_name
    if execution.status.phase is None and execution.spec.invalid_reason is None:
        return execution.metadata.name
    return None


def _job_url(request: Request, execution: ExecutionView) -> str | None:
    template: str | None = request.app.state.settings.dashboard_job_url
    name = _job_name(execution)
    if not template or not name:
        return None
    return template.format(namespace=quote(execution.metadata.namespace or ""), name=quote(name))


async def _authorize_form(request: Request, verb: str, namespace: str | None) -> None:
    if not _same_origin(request):
        raise ApiError(403, "forbidden", "the form was not posted from this console")
    decision = await request.app.state.authenticator.decide(
        _token(request), Action(verb, namespace)
    )
    if not decision.allowed:
        raise ApiError(decision.status_code, decision.error_code, decision.reason)


def _back(request: Request, default: str, notice: str) -> Response:
    referer = request.headers.get("referer")
    target = default
    if referer and _same_origin(request):
        parts = urlsplit(referer)
        query = [(k, v) for k, v in parse_qs(parts.query).items() if k != "notice"]
        flat = [(k, v[0]) for k, v in query]
        target = parts.path + "?" + urlencode([*flat, ("notice", notice)])
        return RedirectResponse(target, status_code=303)
    return RedirectResponse(f"{target}?{urlencode({'notice': notice})}", status_code=303)


@router.post("/job_executions/{message_id}/retry")
async def retry(message_id: str, request: Request) -> Response:
    backend = _backend(request)
    found = backend.execution(message_id)
    await _authorize_form(request, "create", found.metadata.namespace)
    form = await _form(request)
    sent = await backend.retry(message_id, form.get("delay_seconds") or None)
    return _back(
        request, f"/job_executions/{message_id}", f"Retry enqueued as message {sent.message_id}"
    )


@router.post("/job_executions/{message_id}/cancel")
async def cancel(message_id: str, request: Request) -> Response:
    backend = _backend(request)
    found = backend.execution(message_id)
    await _authorize_form(request, "patch", found.metadata.namespace)
    await backend.cancel(message_id)
    return _back(request, f"/job_executions/{message_id}", "Cancel requested")


@router.get("/job_queues", response_class=HTMLResponse)
async def queues(request: Request, backend: Readable) -> Response:
    views = await backend.queue_views()
    return render(request, "queues.html", views=views, title="Queues")


@router.get("/job_queues/{name}", response_class=HTMLResponse)
async def queue(name: str, request: Request, backend: Readable) -> Response:
    found = backend.cache.queue(name)
    if found is None:
        raise not_found(f"JobQueue {name!r} is not found")
    view = await backend.queue_view(found)
    sampler = request.app.state.sampler
    samples = sampler.samples(name) if sampler is not None else []
    chart = None
    if len(samples) >= 2:
        chart = charts.line_chart(
            [
                ("visible", [float(x.stats.visible) for x in samples]),
                ("in flight", [float(x.stats.in_flight) for x in samples]),
                ("delayed", [float(x.stats.delayed) for x in samples]),
                ("running", [float(x.running) for x in samples]),
            ],
            [x.at.strftime("%H:%M") for x in samples],
            title=f"Queue {name}: messages and running executions",
        )
    return render(
        request,
        "queue.html",
        view=view,
        now=datetime.now(UTC),
        chart=chart,
        samples=len(samples),
        title=f"Queue {name}",
    )


@router.get("/sns_subscriptions", response_class=HTMLResponse)
async def sns_subscriptions(request: Request, backend: Readable) -> Response:
    return render(
        request,
        "sns_subscriptions.html",
        subscriptions=backend.cache.subscriptions(),
        title="SNS subscriptions",
    )


@router.get("/monitors", response_class=HTMLResponse)
async def monitors(request: Request, backend: Readable) -> Response:
    now = datetime.now(UTC)
    hours = _hours(now, 6)
    first = hours[0]
    table: dict[tuple[str, str], Counter[datetime]] = defaultdict(Counter)
    failed: Counter[tuple[str, str]] = Counter()
    for execution in backend.cache.executions():
        created = created_at(execution)
        if created < first:
            break
        key = (execution.spec.application, execution.spec.job)
        table[key][created.replace(minute=0, second=0, microsecond=0)] += 1
        if words.own_status(execution) in (words.FAILED, words.ERROR):
            failed[key] += 1
    rows = [
        {
            "application": app,
            "job": job,
            "counts": [table[(app, job)][h] for h in hours],
            "failed": failed[(app, job)],
        }
        for app, job in sorted(table)
    ]
    totals = [sum(table[key][hour] for key in table) for hour in hours]
    chart = charts.bar_chart(
        [(h.strftime("%H:00"), float(t)) for h, t in zip(hours, totals, strict=True)],
        title="Executions per hour, all applications",
        label_every=1,
        height=160,
    )
    return render(
        request,
        "monitors.html",
        hours=hours,
        rows=rows,
        totals=totals,
        chart=chart,
        title="Monitor",
    )


# -- login --------------------------------------------------------------------------------


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request) -> Response:
    return render(request, "login.html", next=request.query_params.get("next", "/"), title="Log in")


def _safe_next(value: str | None) -> str:
    if not value or not value.startswith("/") or value.startswith("//"):
        return "/"
    return value


@router.post("/login")
async def login(request: Request) -> Response:
    form = await _form(request)
    token = form.get("token", "").strip()
    target = _safe_next(form.get("next"))
    decision = await request.app.state.authenticator.decide(token or None, Action("list"))
    if decision.status_code == 401 or decision.status_code == 503:
        return render(
            request,
            "login.html",
            status_code=401,
            next=target,
            error=decision.reason,
            title="Log in",
        )
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        max_age=12 * 3600,
    )
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE)
    return response
