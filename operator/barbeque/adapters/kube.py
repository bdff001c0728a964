"""The Kubernetes API, as the few calls the operator makes, on aiohttp.

Each call is one HTTP request on the event loop: no thread pool, no generated client
models. The kubernetes package is used only to read the kubeconfig or the in-cluster
service account (``load_api_client``); its sync client in a pool of threads cost more
CPU per create than the API server spent on it (thread hand-offs, pydantic argument
validation, urllib3), and CPU is what intake throughput is bound by.

Errors become the project's own exceptions: 404 -> ``NotFound``; 409 ->
``AlreadyExists`` only when the ``Status`` reason says so, any other 409 (``Conflict``:
a stale resourceVersion, a write the server could not finish) -> ``Conflict``, which is
transient; 400/422 -> ``Invalid``; 429/5xx/transport -> ``TransientError``.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import orjson
from kubernetes import client, config
from yarl import URL

from barbeque import metrics
from barbeque.api.models import GROUP, VERSION

CUSTOM = f"/apis/{GROUP}/{VERSION}"
MERGE_PATCH = "application/merge-patch+json"
# How long one call may take, connection included; kopf's request timeout is the same.
REQUEST_TIMEOUT_SECONDS = 60.0
# How long credentials read from the configuration are used before reading them again.
HEADERS_TTL_SECONDS = 60.0


class KubeError(Exception):
    """A Kubernetes API call failed."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        # The Status's details.causes of a refused object: {"field", "message", "reason"}.
        self.causes: list[dict[str, str]] = []


class NotFound(KubeError):
    pass


class AlreadyExists(KubeError):
    """409 with reason ``AlreadyExists``: a create found the name taken (the commit point)."""


class Invalid(KubeError):
    """The API server rejected the object (422 or 400): retrying will not help."""


class TransientError(KubeError):
    """Throttling, a server error or a broken connection: worth retrying."""


class Conflict(TransientError):
    """409 for anything but "already exists": the object changed since it was read (a
    stale resourceVersion), or the server could not complete the write. It says nothing
    about whether a created object exists, so a create must be tried again, not taken
    as done."""


def _status_field(body: bytes, field: str) -> str:
    """A field (``reason``, ``message``) of the Kubernetes ``Status`` in an error body, or ""."""
    try:
        status = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ""
    value = status.get(field) if isinstance(status, dict) else None
    return value if isinstance(value, str) else ""


def _status_reason(body: bytes) -> str:
    return _status_field(body, "reason")


def _causes(body: bytes) -> list[dict[str, str]]:
    """Which fields the API server refused, and why (``details.causes`` of its Status)."""
    try:
        status = orjson.loads(body)
    except orjson.JSONDecodeError:
        return []
    details = status.get("details") if isinstance(status, dict) else None
    causes = details.get("causes") if isinstance(details, dict) else None
    if not isinstance(causes, list):
        return []
    return [
        {key: str(cause.get(key) or "") for key in ("field", "message", "reason")}
        for cause in causes
        if isinstance(cause, dict)
    ]


def _translate(status: int, reason: str, body: bytes) -> KubeError:
    message = f"{status} {reason}: {body[:500].decode('utf-8', 'replace')}"
    if status in (400, 422):
        # The Status message alone names the fields and why, for people; its causes
        # name them one by one, for forms.
        invalid = Invalid(_status_field(body, "message") or message, status)
        invalid.causes = _causes(body)
        return invalid
    if status == 404:
        return NotFound(message, status)
    if status == 409:
        # Only the Status reason tells "the name is taken" from "try again": taking a
        # Conflict on a create for AlreadyExists would delete a message never recorded.
        if _status_reason(body) == "AlreadyExists":
            return AlreadyExists(message, status)
        return Conflict(message, status)
    return TransientError(message, status)


def load_api_client(kubeconfig: str | None = None) -> client.ApiClient:
    """In-cluster credentials when running in a pod, else the kubeconfig."""
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config()
        return client.ApiClient()
    configuration = client.Configuration()
    # The client reads KUBECONFIG once, at import; read it now so a late setting counts.
    config_file = kubeconfig or os.environ.get("KUBECONFIG") or None
    config.load_kube_config(config_file=config_file, client_configuration=configuration)
    return client.ApiClient(configuration)


@dataclass(frozen=True)
class Connection:
    """Where the API server is and how to authenticate, taken from the client's config."""

    host: str
    ssl_context: ssl.SSLContext | bool
    configuration: client.Configuration
    # The last headers built and when (monotonic seconds); see ``headers``.
    _headers: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_api_client(cls, api_client: client.ApiClient) -> Connection:
        conf = api_client.configuration
        context: ssl.SSLContext | bool = False
        if conf.host.startswith("https"):
            if conf.verify_ssl:
                context = ssl.create_default_context(cafile=conf.ssl_ca_cert)
                if conf.assert_hostname is False:
                    context.check_hostname = False
            else:
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            if conf.cert_file:
                context.load_cert_chain(conf.cert_file, conf.key_file)
        return cls(conf.host.rstrip("/"), context, conf)

    def headers(self) -> dict[str, str]:
        """Accept and authorization headers, a fresh dict each time.

        auth_settings() calls the client's refresh hook, so rotated tokens (a projected
        service account token, an exec plugin's) are read again; but for a kubeconfig that
        hook reloads the whole file, which cost more than the request itself. Like
        client-go, re-read at most every ``HEADERS_TTL_SECONDS``, and at once after a 401.
        """
        now = time.monotonic()
        if not self._headers or now - self._headers["at"] > HEADERS_TTL_SECONDS:
            headers = {"Accept": "application/json"}
            settings: dict[str, Any] = dict(self.configuration.auth_settings())
            for setting in settings.values():
                if setting.get("in") == "header" and setting.get("value"):
                    headers[setting["key"]] = setting["value"]
            self._headers.update(at=now, headers=headers)
        return dict(self._headers["headers"])

    def answered(self, status: int) -> None:
        """Told every answer's status: a 401 means the credentials were refused (rotated),
        so the next request builds them again."""
        if status == 401:
            self._headers.clear()


class Kube:
    """Every Kubernetes call of the operator, awaitable."""

    def __init__(self, connection: Connection, pool_size: int = 32) -> None:
        self.connection = connection
        self.pool_size = pool_size
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        # Made on first use, inside the running loop that every later call shares.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    ssl=self.connection.ssl_context, limit=self.pool_size
                ),
                timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS, sock_connect=10),
            )
        return self._session

    async def _request(
        self,
        verb: str,
        method: str,
        path: str,
        body: Any = None,
        params: dict[str, Any] | None = None,
        content_type: str = "application/json",
    ) -> bytes:
        """The response body of a 2xx answer; any other answer raises ``KubeError``."""
        url = self.connection.host + path
        if params:
            url += "?" + urlencode({k: v for k, v in params.items() if v is not None})
        # Already encoded: yarl would otherwise decode %2F and fold ".." segments.
        target = URL(url, encoded=True)
        headers = self.connection.headers()
        data: bytes | None = None
        if body is not None:
            data = orjson.dumps(body)
            headers["Content-Type"] = content_type
        loop = asyncio.get_running_loop()
        started = loop.time()
        code = "error"
        try:
            async with self._client().request(method, target, data=data, headers=headers) as answer:
                content = await answer.read()
                code = str(answer.status)
                self.connection.answered(answer.status)
                if answer.status >= 300:
                    raise _translate(answer.status, answer.reason or "", content)
                return content
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise TransientError(f"{type(exc).__name__}: {exc}") from exc
        finally:
            metrics.KUBE_REQUESTS.labels(call=verb, code=code).inc()
            metrics.KUBE_REQUEST_SECONDS.labels(call=verb).observe(loop.time() - started)

    async def _object(
        self, verb: str, method: str, path: str, body: Any = None, **kwargs: Any
    ) -> dict[str, Any]:
        content = await self._request(verb, method, path, body, **kwargs)
        try:
            result: dict[str, Any] = orjson.loads(content)
        except orjson.JSONDecodeError as exc:
            raise TransientError(f"{verb}: the API server's answer is not JSON: {exc}") from exc
        return result

    # -- JobExecutions ------------------------------------------------------------------------

    async def create_execution(self, body: dict[str, Any]) -> dict[str, Any]:
        namespace = body["metadata"]["namespace"]
        return await self._object(
            "create_execution",
            "POST",
            f"{CUSTOM}/namespaces/{segment(namespace)}/jobexecutions",
            body,
        )

    async def patch_execution_status(
        self, namespace: str, name: str, status: dict[str, Any]
    ) -> dict[str, Any]:
        return await self._object(
            "patch_execution_status",
            "PATCH",
            f"{CUSTOM}/namespaces/{segment(namespace)}/jobexecutions/{segment(name)}/status",
            {"status": status},
            content_type=MERGE_PATCH,
        )

    async def delete_execution(self, namespace: str, name: str) -> None:
        path = f"{CUSTOM}/namespaces/{segment(namespace)}/jobexecutions/{segment(name)}"
        await self._delete("delete_execution", path)

    async def patch_queue_status(self, name: str, status: dict[str, Any]) -> None:
        await self._patch_status(
            "patch_queue_status", f"{CUSTOM}/jobqueues/{segment(name)}", status
        )

    async def _patch_status(self, call: str, path: str, status: dict[str, Any]) -> None:
        """Merge-patch an object's status subresource; the answer is not read."""
        await self._request(
            call, "PATCH", f"{path}/status", {"status": status}, content_type=MERGE_PATCH
        )

    # -- SNSSubscriptions ---------------------------------------------------------------------

    async def patch_subscription(
        self, namespace: str, name: str, patch: dict[str, Any], status: bool = False
    ) -> dict[str, Any]:
        """Merge-patch an SNSSubscription (its status subresource with ``status``)."""
        path = f"{CUSTOM}/namespaces/{segment(namespace)}/snssubscriptions/{segment(name)}"
        return await self._object(
            "patch_subscription_status" if status else "patch_subscription",
            "PATCH",
            path + ("/status" if status else ""),
            patch,
            content_type=MERGE_PATCH,
        )

    async def get_execution(self, namespace: str, name: str) -> dict[str, Any]:
        return await self._object(
            "get_execution",
            "GET",
            f"{CUSTOM}/namespaces/{segment(namespace)}/jobexecutions/{segment(name)}",
        )

    async def patch_definition_status(
        self, namespace: str, name: str, status: dict[str, Any]
    ) -> None:
        path = f"{CUSTOM}/namespaces/{segment(namespace)}/jobdefinitions/{segment(name)}"
        await self._patch_status("patch_definition_status", path, status)

    # -- Events -----------------------------------------------------------------------------

    async def create_event(self, body: dict[str, Any]) -> None:
        # Nobody reads the created Event: the answer is not parsed.
        namespace = segment(body["metadata"]["namespace"])
        path = f"/apis/events.k8s.io/v1/namespaces/{namespace}/events"
        await self._request("create_event", "POST", path, body)

    # -- Jobs and pods ----------------------------------------------------------------------

    async def create_job(self, body: dict[str, Any], *, dry_run: bool = False) -> None:
        """Create a Job; ``dry_run``: only ask whether the API server would (nothing stored).

        Strict field validation: a field the API server does not know (a typo in a
        definition's jobTemplate) is refused, not silently dropped.
        """
        # Nobody reads the created Job (its watch event follows): the answer is not parsed.
        await self._request(
            "dry_run_job" if dry_run else "create_job",
            "POST",
            f"/apis/batch/v1/namespaces/{segment(body['metadata']['namespace'])}/jobs",
            body,
            params={"fieldValidation": "Strict", "dryRun": "All" if dry_run else None},
        )

    async def delete_job(self, namespace: str, name: str) -> None:
        path = f"/apis/batch/v1/namespaces/{segment(namespace)}/jobs/{segment(name)}"
        await self._delete("delete_job", path)

    async def _delete(self, call: str, path: str) -> None:
        # In the background: the API server deletes the children (a Job's pods) after.
        await self._request(call, "DELETE", path, params={"propagationPolicy": "Background"})

    async def read_pod_log(self, namespace: str, pod: str, limit_bytes: int) -> str:
        content = await self._request(
            "read_pod_log",
            "GET",
            f"/api/v1/namespaces/{segment(namespace)}/pods/{segment(pod)}/log",
            params={"limitBytes": limit_bytes},
        )
        # limitBytes may cut a character in two; a log is text for people, not data.
        return content.decode("utf-8", "replace")

    async def pages(
        self,
        kind: str,
        label_selector: str | None = None,
        field_selector: str | None = None,
        page_size: int = 500,
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Every object of a kind across namespaces, one page at a time.

        Pages, not one list: the caller drops each page before the next arrives, so
        listing 10,000 executions never holds them all.
        """
        if kind not in ("jobexecutions", "jobdefinitions", "jobqueues", "snssubscriptions"):
            raise ValueError(f"unknown kind {kind}")
        token: str | None = None
        while True:
            page = await self._object(
                "list_" + kind,
                "GET",
                f"{CUSTOM}/{kind}",
                params={
                    "limit": page_size,
                    "continue": token,
                    "labelSelector": label_selector,
                    "fieldSelector": field_selector,
                },
            )
            yield page.get("items") or []
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return

    async def list_objects(
        self, kind: str, label_selector: str | None = None, field_selector: str | None = None
    ) -> list[dict[str, Any]]:
        """Every object of a kind across namespaces, as one list."""
        items: list[dict[str, Any]] = []
        async for page in self.pages(kind, label_selector, field_selector):
            items.extend(page)
        return items

    async def server_version(self) -> dict[str, Any]:
        """``GET /version``: the API server's major, minor and gitVersion."""
        return await self._object("server_version", "GET", "/version")

    # -- ConfigMaps (statistics that outlive executions) --------------------------------------

    async def get_configmap(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return await self._object("get_configmap", "GET", _configmap_path(namespace, name))
        except NotFound:
            return None

    async def write_configmap(self, body: dict[str, Any]) -> None:
        """Create the ConfigMap, or replace it when its body names the resourceVersion
        read (a stale one is ``Conflict``)."""
        meta = body["metadata"]
        if meta.get("resourceVersion"):
            path = _configmap_path(meta["namespace"], meta["name"])
            await self._request("replace_configmap", "PUT", path, body)
        else:
            await self._request(
                "create_configmap", "POST", _configmap_path(meta["namespace"]), body
            )

    # -- leases (leader election) ----------------------------------------------------------

    async def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return await self._object("get_lease", "GET", _lease_path(namespace, name))
        except NotFound:
            return None

    async def create_lease(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._object(
            "create_lease", "POST", _lease_path(body["metadata"]["namespace"]), body
        )

    async def replace_lease(self, body: dict[str, Any]) -> dict[str, Any]:
        """Replace with the body's resourceVersion: ``Conflict`` if someone else won."""
        meta = body["metadata"]
        return await self._object(
            "replace_lease", "PUT", _lease_path(meta["namespace"], meta["name"]), body
        )

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
            # TLS transports finish closing on the next loop turns (aiohttp's advice).
            await asyncio.sleep(0.25)


def segment(value: str) -> str:
    """A name as one path segment: a name taken from a request must not reach another
    path ("a/b", "..") of the API server."""
    if value in ("", ".", ".."):
        raise Invalid(f"{value!r} is not a valid object name")
    return quote(value, safe="")


def _configmap_path(namespace: str, name: str | None = None) -> str:
    path = f"/api/v1/namespaces/{segment(namespace)}/configmaps"
    return f"{path}/{segment(name)}" if name else path


def _lease_path(namespace: str, name: str | None = None) -> str:
    path = f"/apis/coordination.k8s.io/v1/namespaces/{segment(namespace)}/leases"
    return f"{path}/{segment(name)}" if name else path
