"""The few extra calls the web service makes, as subclasses of the operator's adapters.

``DashboardKube`` adds cancelling an execution, annotating definitions (the revision
lock), reading the token Secret and asking the API server about bearer tokens
(TokenReview, SubjectAccessReview). ``DashboardSqs`` adds the queue attributes the
console shows (redrive policy, dead-letter queue).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from barbeque.adapters.kube import CUSTOM, MERGE_PATCH, Kube, segment
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
        return await self._object(
            "cancel_execution",
            "PATCH",
            f"{CUSTOM}/namespaces/{segment(namespace)}/jobexecutions/{segment(name)}",
            {"spec": {"cancel": True}},
            content_type=MERGE_PATCH,
        )

    async def annotate_definition(
        self, namespace: str, name: str, annotations: dict[str, str | None]
    ) -> dict[str, Any]:
        """Set (or, with None, remove) annotations of a JobDefinition; returns the object."""
        return await self._object(
            "annotate_definition",
            "PATCH",
            f"{CUSTOM}/namespaces/{segment(namespace)}/jobdefinitions/{segment(name)}",
            {"metadata": {"annotations": annotations}},
            content_type=MERGE_PATCH,
        )

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


class DashboardSqs(Sqs):
    """The operator's SQS adapter plus the dead-letter queue lookup of the console."""

    async def url_for_arn(self, arn: str) -> str:
        # arn:aws:sqs:<region>:<account>:<name>
        return await self.queue_url(arn.split(":")[-1])
