"""The console's forms that write: JobDefinitions, JobQueues, SNSSubscriptions and
applications.

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


async def _stored(
    request: Request, plural: str, namespace: str | None, name: str, what: str
) -> dict[str, Any]:
    """The object as stored now (an edit starts from it), or 404 naming ``what``."""
    found = await _writer(request).get_resource(plural, namespace, name)
    if found is None:
        raise not_found(f"{what} is not found")
    return found


# -- kinds of an application: job definitions and SNS subscriptions ---------------------------


Stored = dict[str, Any] | None  # the object as stored, None for a new one


class Kind:
    """A kind the forms edit in an application's namespace: what the generic routes below
    need to know of it. Subclasses say how its form becomes an object."""

    plural: str
    label: str  # in notices and errors: "Job definition"
    listing: str  # where a delete lands
    template: str
    fields: dict[str, str]  # object path → form field

    def values(self, stored: Stored) -> dict[str, str]:
        raise NotImplementedError

    def body(
        self, form: forms.Form, application: str, stored: Stored, choices: dict[str, Any]
    ) -> dict[str, Any]:
        """The object to send; ``choices`` are what the form offered (``choices()``)."""
        raise NotImplementedError

    def title(self, application: str, editing: str | None) -> str:
        raise NotImplementedError

    def choices(self, request: Request, application: str) -> dict[str, Any]:
        """What the form offers to pick from: the queues."""
        return {"queues": [q.metadata.name for q in _backend(request).cache.queues()]}

    def shown(self, application: str, name: str) -> str:
        """The page to land on after a create or save."""
        return self.listing

    def page(
        self,
        request: Request,
        application: str,
        form: forms.Form,
        *,
        editing: str | None,
        status: int,
    ) -> Response:
        return _form_page(
            request,
            self.template,
            form,
            status_code=status,
            title=self.title(application, editing),
            application=application,
            editing=editing,
            **self.choices(request, application),
        )


async def _new(kind: Kind, application: str, request: Request) -> Response:
    if (redirect := await _require_read(request)) is not None:
        return redirect
    form = forms.Form(kind.values(None))
    return kind.page(request, application, form, editing=None, status=200)


async def _create(kind: Kind, application: str, request: Request) -> Response:
    await _allowed(request, Action("create", application, resource=kind.plural))
    form = forms.Form(await _form(request))
    body = kind.body(form, application, None, kind.choices(request, application))
    if created := await _save(request, form, kind.fields, kind.plural, body, replace=False):
        name = created["metadata"]["name"]
        return _done(kind.shown(application, name), f"{kind.label} {name} created")
    return kind.page(request, application, form, editing=None, status=422)


async def _stored_of(kind: Kind, request: Request, application: str, name: str) -> dict[str, Any]:
    what = f"{kind.label} {name!r} of application {application!r}"
    return await _stored(request, kind.plural, application, name, what)


async def _edit(kind: Kind, application: str, name: str, request: Request) -> Response:
    if (redirect := await _require_read(request)) is not None:
        return redirect
    stored = await _stored_of(kind, request, application, name)
    values = kind.values(stored)
    values["resource_version"] = stored["metadata"].get("resourceVersion", "")
    return kind.page(request, application, forms.Form(values), editing=name, status=200)


async def _update(kind: Kind, application: str, name: str, request: Request) -> Response:
    await _allowed(request, Action("update", application, resource=kind.plural))
    form = forms.Form(await _form(request))
    stored = await _stored_of(kind, request, application, name)
    # The version the user edited, so a change made meanwhile is not overwritten.
    stored["metadata"]["resourceVersion"] = form.values.get("resource_version", "")
    body = kind.body(form, application, stored, kind.choices(request, application))
    if await _save(request, form, kind.fields, kind.plural, body, replace=True):
        return _done(kind.shown(application, name), f"{kind.label} {name} saved")
    return kind.page(request, application, form, editing=name, status=422)


async def _remove(kind: Kind, application: str, name: str, request: Request) -> Response:
    await _allowed(request, Action("delete", application, resource=kind.plural))
    kube = _writer(request)
    await _delete(lambda: kube.delete_resource(kind.plural, application, name))
    _backend(request).cache.apply(
        kind.plural, "DELETED", {"metadata": {"namespace": application, "name": name}}
    )
    return _done(kind.listing, f"{kind.label} {application}/{name} deleted")


def _route(kind: Kind, prefix: str) -> None:
    """The five routes of a kind's forms under ``prefix`` (which holds ``{application}``)."""

    async def new(application: str, request: Request) -> Response:
        return await _new(kind, application, request)

    async def create(application: str, request: Request) -> Response:
        return await _create(kind, application, request)

    async def edit(application: str, name: str, request: Request) -> Response:
        return await _edit(kind, application, name, request)

    async def update(application: str, name: str, request: Request) -> Response:
        return await _update(kind, application, name, request)

    async def delete(application: str, name: str, request: Request) -> Response:
        return await _remove(kind, application, name, request)

    for path, method, endpoint in (
        ("/new", "GET", new),
        ("/new", "POST", create),
        ("/{name}/edit", "GET", edit),
        ("/{name}/edit", "POST", update),
        ("/{name}/delete", "POST", delete),
    ):
        router.add_api_route(prefix + path, endpoint, methods=[method], response_class=HTMLResponse)


# -- job definitions --------------------------------------------------------------------------


class _Definitions(Kind):
    plural, label, listing = "jobdefinitions", "Job definition", "/job_definitions"
    template, fields = "definition_form.html", forms.DEFINITION_FIELDS

    def values(self, stored: Stored) -> dict[str, str]:
        return forms.definition_values(stored)

    def title(self, application: str, editing: str | None) -> str:
        return (
            f"Edit {application}/{editing}" if editing else f"New job definition of {application}"
        )

    def body(
        self, form: forms.Form, application: str, stored: Stored, choices: dict[str, Any]
    ) -> dict[str, Any]:
        return forms.definition_body(form, application, stored)

    def shown(self, application: str, name: str) -> str:
        return f"/applications/{quote(application)}/job_definitions/{quote(name)}"


DEFINITIONS = _Definitions()
_route(DEFINITIONS, "/applications/{application}/job_definitions")


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
    return await _stored(request, "jobqueues", None, name, f"JobQueue {name!r}")


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


# -- SNS subscriptions ------------------------------------------------------------------------


def _jobs(request: Request, application: str) -> set[str]:
    """What a subscription's ``job`` may name: a definition of the namespace, by resource
    name or ``spec.jobName``, as the operator routes by either."""
    names: set[str] = set()
    for definition in _backend(request).cache.definitions():
        if definition.metadata.namespace == application:
            names.add(definition.metadata.name)
            if definition.spec.job_name:
                names.add(definition.spec.job_name)
    return names


class _Subscriptions(Kind):
    """Deleting one lets the operator's finalizer unsubscribe the queue before it goes."""

    plural, label, listing = "snssubscriptions", "SNS subscription", "/sns_subscriptions"
    template, fields = "subscription_form.html", forms.SUBSCRIPTION_FIELDS

    def choices(self, request: Request, application: str) -> dict[str, Any]:
        """The queues, and the jobs a subscription may name."""
        jobs = sorted(_jobs(request, application))
        return {**super().choices(request, application), "jobs": jobs}

    def title(self, application: str, editing: str | None) -> str:
        if editing:
            return f"Edit SNS subscription {application}/{editing}"
        return f"New SNS subscription of {application}"

    def values(self, stored: Stored) -> dict[str, str]:
        return forms.subscription_values(stored)

    def body(
        self, form: forms.Form, application: str, stored: Stored, choices: dict[str, Any]
    ) -> dict[str, Any]:
        jobs = set(choices["jobs"])
        return forms.subscription_body(form, application, jobs, stored)


SUBSCRIPTIONS = _Subscriptions()
_route(SUBSCRIPTIONS, "/applications/{application}/sns_subscriptions")
