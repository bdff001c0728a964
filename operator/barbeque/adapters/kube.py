"""The Kubernetes API, as the few calls the operator makes.

The official client is synchronous; each call runs in the event loop's thread pool so a
slow API server never blocks the loop. Errors become the project's own exceptions:
404 -> ``NotFound``; 409 -> ``AlreadyExists`` only when the ``Status`` reason says so,
any other 409 (``Conflict``: a stale resourceVersion, a write the server could not
finish) -> ``Conflict``, which is transient; 400/422 -> ``Invalid``; 429/5xx/transport ->
``TransientError``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from barbeque.api.models import GROUP, VERSION


class KubeError(Exception):
    """A Kubernetes API call failed."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


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


def _status_reason(body: object) -> str:
    """The ``reason`` of the Kubernetes ``Status`` in an error body, or ""."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if not isinstance(body, str):
        return ""
    try:
        status = json.loads(body)
    except ValueError:
        return ""
    reason = status.get("reason") if isinstance(status, dict) else None
    return reason if isinstance(reason, str) else ""


def _translate(exc: Exception) -> KubeError:
    if isinstance(exc, ApiException):
        reason = exc.reason or ""
        body = exc.body if isinstance(exc.body, str) else ""
        message = f"{exc.status} {reason}: {body[:500]}"
        if exc.status == 404:
            return NotFound(message, exc.status)
        if exc.status == 409:
            # Only the Status reason tells "the name is taken" from "try again": taking a
            # Conflict on a create for AlreadyExists would delete a message never recorded.
            if _status_reason(exc.body) == "AlreadyExists":
                return AlreadyExists(message, exc.status)
            return Conflict(message, exc.status)
        if exc.status in (400, 422):
            return Invalid(message, exc.status)
        return TransientError(message, exc.status)
    return TransientError(f"{type(exc).__name__}: {exc}")


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


class Kube:
    """Every Kubernetes call of the operator, awaitable."""

    def __init__(self, api_client: client.ApiClient, pool_size: int = 32) -> None:
        # urllib3 keeps one connection per concurrent call; match the thread pool.
        api_client.rest_client.pool_manager.connection_pool_kw["maxsize"] = pool_size
        self._api_client = api_client
        self._custom = client.CustomObjectsApi(api_client)
        self._batch = client.BatchV1Api(api_client)
        self._core = client.CoreV1Api(api_client)
        self._coordination = client.CoordinationV1Api(api_client)
        self.calls: dict[str, int] = {}

    async def _call(self, verb: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        self.calls[verb] = self.calls.get(verb, 0) + 1
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(None, functools.partial(fn, *args, **kwargs))
        except (ApiException, HTTPError, OSError) as exc:
            raise _translate(exc) from exc

    # -- JobExecutions ------------------------------------------------------------------------

    async def create_execution(self, body: dict[str, Any]) -> dict[str, Any]:
        namespace = body["metadata"]["namespace"]
        result: dict[str, Any] = await self._call(
            "create_execution",
            self._custom.create_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            "jobexecutions",
            body,
        )
        return result

    async def patch_execution_status(
        self, namespace: str, name: str, status: dict[str, Any]
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self._call(
            "patch_execution_status",
            self._custom.patch_namespaced_custom_object_status,
            GROUP,
            VERSION,
            namespace,
            "jobexecutions",
            name,
            {"status": status},
        )
        return result

    async def delete_execution(self, namespace: str, name: str) -> None:
        await self._call(
            "delete_execution",
            self._custom.delete_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            "jobexecutions",
            name,
            propagation_policy="Background",
        )

    async def patch_queue_status(self, name: str, status: dict[str, Any]) -> None:
        await self._call(
            "patch_queue_status",
            self._custom.patch_cluster_custom_object_status,
            GROUP,
            VERSION,
            "jobqueues",
            name,
            {"status": status},
        )

    # -- Jobs and pods ----------------------------------------------------------------------

    async def create_job(self, body: dict[str, Any]) -> None:
        def create() -> None:
            # Nobody reads the created Job (its watch event follows): skip building a V1Job.
            batch: Any = self._batch  # typed for a V1Job body and V1Job result
            response = batch.create_namespaced_job(
                body["metadata"]["namespace"], body, _preload_content=False
            )
            response.drain_conn()
            response.release_conn()

        await self._call("create_job", create)

    async def delete_job(self, namespace: str, name: str) -> None:
        await self._call(
            "delete_job",
            self._batch.delete_namespaced_job,
            name,
            namespace,
            propagation_policy="Background",
        )

    async def read_pod_log(self, namespace: str, pod: str, limit_bytes: int) -> str:
        result: str = await self._call(
            "read_pod_log",
            self._core.read_namespaced_pod_log,
            pod,
            namespace,
            limit_bytes=limit_bytes,
            _preload_content=True,
        )
        return result

    async def get_execution(self, namespace: str, name: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call(
            "get_execution",
            self._custom.get_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            "jobexecutions",
            name,
        )
        return result

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
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"limit": page_size}
            if token:
                kwargs["_continue"] = token
            if label_selector:
                kwargs["label_selector"] = label_selector
            if field_selector:
                kwargs["field_selector"] = field_selector
            if kind in ("jobexecutions", "jobdefinitions", "jobqueues"):
                page: Any = await self._call(
                    "list_" + kind,
                    self._custom.list_cluster_custom_object,
                    GROUP,
                    VERSION,
                    kind,
                    **kwargs,
                )
                yield page.get("items", [])
                token = (page.get("metadata") or {}).get("continue")
            elif kind == "jobs":
                page = await self._call(
                    "list_jobs", self._batch.list_job_for_all_namespaces, **kwargs
                )
                yield self._api_client.sanitize_for_serialization(page.items)
                token = page.metadata._continue
            else:
                raise ValueError(f"unknown kind {kind}")
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

    # -- leases (leader election) ----------------------------------------------------------

    async def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            lease = await self._call(
                "get_lease", self._coordination.read_namespaced_lease, name, namespace
            )
        except NotFound:
            return None
        result: dict[str, Any] = self._api_client.sanitize_for_serialization(lease)
        return result

    async def create_lease(self, body: dict[str, Any]) -> dict[str, Any]:
        lease = await self._call(
            "create_lease",
            self._coordination.create_namespaced_lease,
            body["metadata"]["namespace"],
            body,
        )
        result: dict[str, Any] = self._api_client.sanitize_for_serialization(lease)
        return result

    async def replace_lease(self, body: dict[str, Any]) -> dict[str, Any]:
        """Replace with the body's resourceVersion: ``Conflict`` if someone else won."""
        lease = await self._call(
            "replace_lease",
            self._coordination.replace_namespaced_lease,
            body["metadata"]["name"],
            body["metadata"]["namespace"],
            body,
        )
        result: dict[str, Any] = self._api_client.sanitize_for_serialization(lease)
        return result

    def close(self) -> None:
        self._api_client.close()
