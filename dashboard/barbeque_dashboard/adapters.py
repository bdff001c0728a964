"""The few extra calls the web service makes, as subclasses of the operator's adapters.

``DashboardKube`` adds cancelling an execution, reading the token Secret and asking the
API server about bearer tokens (TokenReview, SubjectAccessReview). ``DashboardSqs`` adds
the queue attributes the console shows (redrive policy, dead-letter queue).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from barbeque.adapters.kube import Kube
from barbeque.adapters.sqs import Sqs
from barbeque.api.models import GROUP, VERSION


@dataclass(frozen=True)
class Review:
    """What the API server said about a token and an action."""

    authenticated: bool
    user: str = ""
    allowed: bool = False
    reason: str = ""


class DashboardKube(Kube):
    """The operator's Kube adapter plus the web service's own calls."""

    def __init__(self, api_client: Any, pool_size: int = 16) -> None:
        from kubernetes import client

        super().__init__(api_client, pool_size)
        self._authn = client.AuthenticationV1Api(api_client)
        self._authz = client.AuthorizationV1Api(api_client)

    async def cancel_execution(self, namespace: str, name: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call(
            "cancel_execution",
            self._custom.patch_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            "jobexecutions",
            name,
            {"spec": {"cancel": True}},
        )
        return result

    async def secret_values(self, namespace: str, name: str) -> dict[str, str]:
        secret = await self._call("read_secret", self._core.read_namespaced_secret, name, namespace)
        data = secret.data or {}
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
        from kubernetes import client

        token_review = await self._call(
            "token_review",
            self._authn.create_token_review,
            client.V1TokenReview(spec=client.V1TokenReviewSpec(token=token)),
        )
        status = token_review.status
        if status is None or not status.authenticated:
            reason = (status.error if status else None) or "the token is not valid"
            return Review(authenticated=False, reason=reason)
        user = status.user
        access = await self._call(
            "subject_access_review",
            self._authz.create_subject_access_review,
            client.V1SubjectAccessReview(
                spec=client.V1SubjectAccessReviewSpec(
                    user=user.username,
                    groups=user.groups,
                    uid=user.uid,
                    extra=user.extra,
                    resource_attributes=client.V1ResourceAttributes(
                        group=group, resource=resource, verb=verb, namespace=namespace
                    ),
                )
            ),
        )
        allowed = bool(access.status and access.status.allowed)
        reason = (access.status.reason if access.status else "") or ""
        return Review(authenticated=True, user=user.username or "", allowed=allowed, reason=reason)


class DashboardSqs(Sqs):
    """The operator's SQS adapter plus queue attributes for the console."""

    async def attributes(self, url: str, names: list[str]) -> dict[str, str]:
        result = await self._call(
            "get_queue_attributes",
            self._client.get_queue_attributes,
            QueueUrl=url,
            AttributeNames=names,
        )
        attributes: dict[str, str] = result.get("Attributes", {})
        return attributes

    async def url_for_arn(self, arn: str) -> str:
        # arn:aws:sqs:<region>:<account>:<name>
        return await self.queue_url(arn.split(":")[-1])
