"""The console's forms that write: JobDefinitions, JobQueues and applications.

cookpad/barbeque's users registered jobs in forms; here the forms write the same custom
resources ``kubectl apply`` would. Each write is first checked against the signed-in
user's own Kubernetes permissions (a SubjectAccessReview for that verb on that resource in
that namespace, through the same ``Authenticator`` as the Web API), then made with the
console's ServiceAccount. What the model or the API server refuses comes back on the form,
next to the field, with what the user typed.
"""

from __future__ import annotations

from typing import Any, Protocol
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from barbeque.adapters.kube import AlreadyExists, Conflict, Invalid, KubeError, NotFound
from barbeque.api.models import LABEL_MANAGED_BY, MANAGED_BY
from barbeque_dashboard import forms
from barbeque_dashboard.auth import Action
from barbeque_dashboard.console import _backend, _form, _require_read, _same_origin, _token, render
from barbeque_dashboard.services import ApiError, not_found

router = APIRouter(include_in_schema=False)


class Writer(Protocol):
    """The console's writes (``adapters.DashboardKube``)."""

    async def get_resource(
        self, plural: str, namespace: str | None, name: str
    ) -> dict[str, Any] | None: ...
    async def write_resource(
        self, plural: str, body: dict[str, Any], *, replace: bool
    ) -> dict[str, Any]: ...
    async def delete_resource(self, plural: str, namespace: str | None, name: str) -> None: ...
    async def get_namespace(self, name: str) -> dict[str, Any] | None: ...
    async def create_namespace(self, body: dict[str, Any]) -> dict[str, Any]: ...
    async def delete_namespace(self, name: str) -> None: ...


def _writer(request: Request) -> Writer:
    kube: Any = _backend(request).kube
    if kube is None:
        raise ApiError(503, "unavailable", "no Kubernetes API to write with")
    writer: Writer = kube
    return writer


async def _allowed(request: Request, action: Action) -> None:
    """The signed-in user may do ``action`` themselves, or the write is refused (403)."""
    if not _same_origin(request):
        raise ApiError(403, "forbidden", "the form was not posted from this console")
    decision = await request.app.state.authenticator.decide(_token(request), action)
    if not decision.allowed:
        raise ApiError(decision.status_code, decision.error_code, decision.reason)


def _done(path: str, notice: str) -> Response:
    return RedirectResponse(f"{path}?{urlencode({'notice': notice})}", status_code=303)


async def _write(
    request: Request,
    form: forms.Form,
    fields: dict[str, str],
    call: Any,
) -> dict[str, Any] | None:
    """Make the write; a refusal the user can fix lands on the form (None is returned)."""
    try:
        written: dict[str, Any] = await call()
    except Invalid as exc:
        for cause in exc.causes or [{"field": "", "message": str(exc)}]:
            forms.place(form, cause["field"], cause["message"], fields)
        return None
    except AlreadyExists:
        form.add("name", "this name is taken")
        return None
    except Conflict:
        form.add("", "someone changed it since this form was opened: reload it and edit again")
        return None
    except NotFound as exc:
        raise not_found(f"not found: {exc}") from exc
    except KubeError as exc:
        raise ApiError(503, "unavailable", f"Kubernetes refused the write: {exc}") from exc
    return written


async def _save(
    request: Request,
    form: forms.Form,
    fields: dict[str, str],
    plural: str,
    body: dict[str, Any],
    *,
    replace: bool,
) -> dict[str, Any] | None:
    """Create or replace a JobDefinition or JobQueue unless the form has errors; the cache
    takes the answer, so the page redirected to shows it at once."""
    if form.errors:
        return None
    kube = _writer(request)
    written = await _write(
        request, form, fields, lambda: kube.write_resource(plural, body, replace=replace)
    )
    if written is not None:
        _backend(request).cache.apply(plural, "MODIFIED" if replace else "ADDED", written)
    return written


async def _delete(call: Any) -> None:
    """A delete; one already gone is done."""
    try:
        await call()
    except NotFound:
        pass
    except KubeError as exc:
        raise ApiError(503, "unavailable", f"Kubernetes refused the delete: {exc}") from exc


def _form_page(
    request: Request, template: str, form: forms.Form, *, status_code: int = 200, **context: Any
) -> Response:
    # No live refresh on a form: it would put back what was typed.
    return render(request, template, status_code=status_code, form=form, refresh=0, **context)


# -- applications -----------------------------------------------------------------------------


@router.get("/applications/new", response_class=HTMLResponse)
async def new_application(request: Request) -> Response:
    if (redirect := await _require_read(request)) is not None:
        return redirect
    form = forms.Form({"name": "", "description": ""})
    return _form_page(request, "application_form.html", form, title="New application")


@router.post("/applications/new", response_class=HTMLResponse)
async def create_application(request: Request) -> Response:
    await _allowed(request, Action("create", None, resource="namespaces", group=""))
    form = forms.Form(await _form(request))
    body = forms.application_body(form)
    if not form.errors:
        kube = _writer(request)
        created = await _write(
            request, form, forms.APPLICATION_FIELDS, lambda: kube.create_namespace(body)
        )
        if created is not None:
            name = created["metadata"]["name"]
            return _done(
                f"/applications/{quote(name)}/job_definitions/new",
                f"Application {name} created: add its first job definition",
            )
    return _form_page(
        request, "application_form.html", form, status_code=422, title="New application"
    )


@router.post("/applications/{application}/delete")
async def delete_application(application: str, request: Request) -> Response:
    await _allowed(request, Action("delete", None, resource="namespaces", group=""))
    backend = _backend(request)
    kube = _writer(request)
    if any(d.metadata.namespace == application for d in backend.cache.definitions()):
        raise ApiError(
            409, "not_empty", f"application {application!r} has job definitions: delete them first"
        )
    namespace = await kube.get_namespace(application)
    if namespace is None:
        raise not_found(f"application {application!r} is not found")
    labels = (namespace.get("metadata") or {}).get("labels") or {}
    if labels.get(LABEL_MANAGED_BY) != MANAGED_BY:
        raise ApiError(
            409,
            "not_ours",
            f"namespace {application!r} was not created by this console, and deleting it "
            "would delete everything in it; delete it with kubectl if you mean to",
        )
    await _delete(lambda: kube.delete_namespace(application))
    return _done("/applications", f"Application {application} deleted")


# -- job definitions --------------------------------------------------------------------------


def _definition_page(
    request: Request, application: str, form: forms.Form, *, editing: str | None, status: int
) -> Response:
    queues = [q.metadata.name for q in _backend(request).cache.queues()]
    title = f"Edit {application}/{editing}" if editing else f"New job definition of {application}"
    return _form_page(
        request,
        "definition_form.html",
        form,
        status_code=status,
        application=application,
        editing=editing,
        queues=queues,
        title=title,
    )


@router.get("/applications/{application}/job_definitions/new", response_class=HTMLResponse)
async def new_definition(application: str, request: Request) -> Response:
    if (redirect := await _require_read(request)) is not None:
        return redirect
    form = forms.Form(forms.definition_values(None))
    return _definition_page(request, application, form, editing=None, status=200)


@router.post("/applications/{application}/job_definitions/new", response_class=HTMLResponse)
async def create_definition(application: str, request: Request) -> Response:
    await _allowed(request, Action("create", application, resource="jobdefinitions"))
    form = forms.Form(await _form(request))
    body = forms.definition_body(form, application)
    fields = forms.DEFINITION_FIELDS
    if created := await _save(request, form, fields, "jobdefinitions", body, replace=False):
        name = created["metadata"]["name"]
        return _done(
            f"/applications/{quote(application)}/job_definitions/{quote(name)}",
            f"Job definition {name} created",
        )
    return _definition_page(request, application, form, editing=None, status=422)


async def _stored_definition(request: Request, application: str, job: str) -> dict[str, Any]:
    found = await _writer(request).get_resource("jobdefinitions", application, job)
    if found is None:
        raise not_found(f"JobDefinition {job!r} of application {application!r} is not found")
    return found


@router.get("/applications/{application}/job_definitions/{job}/edit", response_class=HTMLResponse)
async def edit_definition(application: str, job: str, request: Request) -> Response:
    if (redirect := await _require_read(request)) is not None:
        return redirect
    stored = await _stored_definition(request, application, job)
    values = forms.definition_values(stored)
    values["resource_version"] = stored["metadata"].get("resourceVersion", "")
    return _definition_page(request, application, forms.Form(values), editing=job, status=200)


@router.post("/applications/{application}/job_definitions/{job}/edit", response_class=HTMLResponse)
async def update_definition(application: str, job: str, request: Request) -> Response:
    await _allowed(request, Action("update", application, resource="jobdefinitions"))
    form = forms.Form(await _form(request))
    stored = await _stored_definition(request, application, job)
    # The version the user edited, so a change made meanwhile is not overwritten.
    stored["metadata"]["resourceVersion"] = form.values.get("resource_version", "")
    body = forms.definition_body(form, application, stored)
    if await _save(request, form, forms.DEFINITION_FIELDS, "jobdefinitions", body, replace=True):
        return _done(
            f"/applications/{quote(application)}/job_definitions/{quote(job)}",
            f"Job definition {job} saved",
        )
    return _definition_page(request, application, form, editing=job, status=422)


@router.post("/applications/{application}/job_definitions/{job}/delete")
async def delete_definition(application: str, job: str, request: Request) -> Response:
    await _allowed(request, Action("delete", application, resource="jobdefinitions"))
    kube = _writer(request)
    await _delete(lambda: kube.delete_resource("jobdefinitions", application, job))
    _backend(request).cache.apply(
        "jobdefinitions", "DELETED", {"metadata": {"namespace": application, "name": job}}
    )
    return _done("/job_definitions", f"Job definition {application}/{job} deleted")


# -- job queues -------------------------------------------------------------------------------


def _queue_page(
    request: Request, form: forms.Form, *, editing: str | None, status: int
) -> Response:
    title = f"Edit queue {editing}" if editing else "New queue"
    return _form_page(
        request, "queue_form.html", form, status_code=status, editing=editing, title=title
    )


@router.get("/job_queues/new", response_class=HTMLResponse)
async def new_queue(request: Request) -> Response:
    if (redirect := await _require_read(request)) is not None:
        return redirect
    return _queue_page(request, forms.Form(forms.queue_values(None)), editing=None, status=200)


@router.post("/job_queues/new", response_class=HTMLResponse)
async def create_queue(request: Request) -> Response:
    await _allowed(request, Action("create", None, resource="jobqueues"))
    form = forms.Form(await _form(request))
    body = forms.queue_body(form)
    if created := await _save(request, form, forms.QUEUE_FIELDS, "jobqueues", body, replace=False):
        name = created["metadata"]["name"]
        return _done(f"/job_queues/{quote(name)}", f"Queue {name} created")
    return _queue_page(request, form, editing=None, status=422)


async def _stored_queue(request: Request, name: str) -> dict[str, Any]:
    found = await _writer(request).get_resource("jobqueues", None, name)
    if found is None:
        raise not_found(f"JobQueue {name!r} is not found")
    return found


@router.get("/job_queues/{name}/edit", response_class=HTMLResponse)
async def edit_queue(name: str, request: Request) -> Response:
    if (redirect := await _require_read(request)) is not None:
        return redirect
    stored = await _stored_queue(request, name)
    values = forms.queue_values(stored)
    values["resource_version"] = stored["metadata"].get("resourceVersion", "")
    return _queue_page(request, forms.Form(values), editing=name, status=200)


@router.post("/job_queues/{name}/edit", response_class=HTMLResponse)
async def update_queue(name: str, request: Request) -> Response:
    await _allowed(request, Action("update", None, resource="jobqueues"))
    form = forms.Form(await _form(request))
    stored = await _stored_queue(request, name)
    stored["metadata"]["resourceVersion"] = form.values.get("resource_version", "")
    body = forms.queue_body(form, stored)
    if await _save(request, form, forms.QUEUE_FIELDS, "jobqueues", body, replace=True):
        return _done(f"/job_queues/{quote(name)}", f"Queue {name} saved")
    return _queue_page(request, form, editing=name, status=422)


@router.post("/job_queues/{name}/delete")
async def delete_queue(name: str, request: Request) -> Response:
    await _allowed(request, Action("delete", None, resource="jobqueues"))
    kube = _writer(request)
    await _delete(lambda: kube.delete_resource("jobqueues", None, name))
    _backend(request).cache.apply("jobqueues", "DELETED", {"metadata": {"name": name}})
    return _done("/job_queues", f"Queue {name} deleted")
