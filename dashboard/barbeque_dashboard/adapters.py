"""The few extra calls the web service makes, as subclasses of the operator's adapters.

``DashboardKube`` adds cancelling an execution, annotating definitions (the revision
lock), the console's writes of definitions, queues and namespaces, reading the token
Secret and asking the API server about bearer tokens (TokenReview, SubjectAccessReview).
``DashboardSqs`` adds the queue attributes the console shows (redrive policy, dead-letter
queue).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from barbeque.adapters.kube import CUSTOM, MERGE_PATCH, Kube, NotFound, segment
from barbeque.adapters.sqs import Sqs
from barbeque.api.models import GROUP


@dataclass(frozen=True)
class Review:
    """What the API server said about a token and an action."""

    authenticated: bool
    user: str = ""
    allowed: bool = False
    reason: str = ""


class DashboardKube(Kube):
    """The operator's Kube adapter plus the web service's own calls."""

    async def cancel_execution(self, namespace: str, name: str) -> dict[str, Any]:
        return await self._merge_patch(
            "cancel_execution", "jobexecutions", namespace, name, {"spec": {"cancel": True}}
        )

    async def annotate_definition(
        self, namespace: str, name: str, annotations: dict[str, str | None]
    ) -> dict[str, Any]:
        """Set (or, with None, remove) annotations of a JobDefinition; returns the object."""
        return await self._merge_patch(
            "annotate_definition",
            "jobdefinitions",
            namespace,
            name,
            {"metadata": {"annotations": annotations}},
        )

    async def _merge_patch(
        self, call: str, plural: str, namespace: str, name: str, patch: dict[str, Any]
    ) -> dict[str, Any]:
        path = f"{_resource_path(plural, namespace)}/{segment(name)}"
        return await self._object(call, "PATCH", path, patch, content_type=MERGE_PATCH)

    # -- the console's forms: definitions, queues, applications (namespaces) -------------------

    async def write_resource(
        self, plural: str, body: dict[str, Any], *, replace: bool
    ) -> dict[str, Any]:
        """Create a JobDefinition or JobQueue, or replace it (``metadata.resourceVersion``
        names the version edited: a stale one is ``Conflict``)."""
        path = _resource_path(plural, body["metadata"].get("namespace"))
        if replace:
            name = segment(body["metadata"]["name"])
            return await self._object(f"replace_{plural}", "PUT", f"{path}/{name}", body)
        return await self._object(f"create_{plural}", "POST", path, body)

    async def get_resource(
        self, plural: str, namespace: str | None, name: str
    ) -> dict[str, Any] | None:
        try:
            return await self._object(
                f"get_{plural}", "GET", f"{_resource_path(plural, namespace)}/{segment(name)}"
            )
        except NotFound:
            return None

    async def delete_resource(self, plural: str, namespace: str | None, name: str) -> None:
        await self._request(
            f"delete_{plural}", "DELETE", f"{_resource_path(plural, namespace)}/{segment(name)}"
        )

    async def get_namespace(self, name: str) -> dict[str, Any] | None:
        try:
            return await self._object("get_namespace", "GET", f"/api/v1/namespaces/{segment(name)}")
        except NotFound:
            return None

    async def create_namespace(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._object("create_namespace", "POST", "/api/v1/namespaces", body)

    async def delete_namespace(self, name: str) -> None:
        await self._request("delete_namespace", "DELETE", f"/api/v1/namespaces/{segment(name)}")

    async def secret_values(self, namespace: str, name: str) -> dict[str, str]:
        secret = await self._object(
            "read_secret", "GET", f"/api/v1/namespaces/{segment(namespace)}/secrets/{segment(name)}"
        )
        data = secret.get("data") or {}
        return {
            key: base64.b64decode(value).decode("utf-8", errors="replace").strip()
            for key, value in data.items()
        }

    async def review(
        self,
        token: str,
        *,
        verb: str,
        resource: str,
        namespace: str | None,
        group: str = GROUP,
    ) -> Review:
        """Who ``token`` is (TokenReview) and whether they may ``verb`` ``resource``."""
        token_review = await self._object(
            "token_review",
            "POST",
            "/apis/authentication.k8s.io/v1/tokenreviews",
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenReview",
                "spec": {"token": token},
            },
        )
        status = token_review.get("status") or {}
        if not status.get("authenticated"):
            return Review(
                authenticated=False, reason=status.get("error") or "the token is not valid"
            )
        user = status.get("user") or {}
        attributes = {"group": group, "resource": resource, "verb": verb}
        if namespace is not None:
            attributes["namespace"] = namespace
        spec = {
            "user": user.get("username"),
            "groups": user.get("groups"),
            "uid": user.get("uid"),
            "extra": user.get("extra"),
            "resourceAttributes": attributes,
        }
        access = await self._object(
            "subject_access_review",
            "POST",
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SubjectAccessReview",
                "spec": {key: value for key, value in spec.items() if value is not None},
            },
        )
        decision = access.get("status") or {}
        return Review(
            authenticated=True,
            user=user.get("username") or "",
            allowed=bool(decision.get("allowed")),
            reason=decision.get("reason") or "",
        )


def _resource_path(plural: str, namespace: str | None) -> str:
    if namespace:
        return f"{CUSTOM}/namespaces/{segment(namespace)}/{plural}"
    return f"{CUSTOM}/{plural}"


class DashboardSqs(Sqs):
    """The operator's SQS adapter plus the dead-letter queue lookup of the console."""

    async def url_for_arn(self, arn: str) -> str:
        # arn:aws:sqs:<region>:<account>:<name>
        return await self.queue_url(arn.split(":")[-1])
