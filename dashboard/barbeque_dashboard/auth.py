"""Who may call the write endpoints (and the reads, unless they are public).

A request carries a bearer token: ``Authorization: Bearer <token>``, or the console's
``barbeque_token`` cookie set by the login page. A token is accepted when it is

1. one of the static tokens (``BARBEQUE_API_TOKENS``, or any data value of the Secret
   named by ``BARBEQUE_API_TOKEN_SECRET`` in ``BARBEQUE_NAMESPACE``): allowed everything;
2. or, with ``BARBEQUE_TOKEN_REVIEW`` on, a token the Kubernetes API server authenticates
   (TokenReview, e.g. a ServiceAccount token): then Kubernetes RBAC decides through a
   SubjectAccessReview whether its user may do the action on JobExecutions in the
   application's namespace (``create`` to enqueue or retry, ``patch`` to cancel,
   ``list`` to read).

No token, or a token nobody knows, is 401; a known token without the permission is 403.
Decisions are cached briefly, keyed by a hash of the token, so the API server is not asked
on every request.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from dataclasses import dataclass
from typing import Protocol

from barbeque.api.models import GROUP
from barbeque_dashboard.adapters import Review

logger = logging.getLogger(__name__)

COOKIE = "barbeque_token"


class Reviewer(Protocol):
    async def review(
        self, token: str, *, verb: str, resource: str, namespace: str | None, group: str = ...
    ) -> Review: ...


class SecretReader(Protocol):
    async def secret_values(self, namespace: str, name: str) -> dict[str, str]: ...


@dataclass(frozen=True)
class Action:
    """An action on a resource (JobExecutions unless said) in a namespace (None: any
    namespace, or a cluster-scoped resource); ``group`` "" is the core API group."""

    verb: str
    namespace: str | None = None
    resource: str = "jobexecutions"
    group: str = GROUP


@dataclass(frozen=True)
class Decision:
    allowed: bool
    status_code: int = 200
    error_code: str = ""
    reason: str = ""
    user: str = ""


def _ok(user: str) -> Decision:
    return Decision(True, 200, "", "", user)


def _unauthorized(reason: str) -> Decision:
    return Decision(False, 401, "unauthorized", reason)


def bearer(authorization: str | None, cookie: str | None) -> str | None:
    """The token of a request, from its Authorization header or the console cookie."""
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return ""  # present but not a bearer token: refuse rather than fall back
    if cookie:
        return cookie
    return None


class Authenticator:
    def __init__(
        self,
        static_tokens: dict[str, str],
        reviewer: Reviewer | None = None,
        secrets: SecretReader | None = None,
        secret: tuple[str, str] | None = None,
        secret_refresh_seconds: float = 30.0,
        cache_seconds: float = 30.0,
    ) -> None:
        self._env_tokens = dict(static_tokens)
        self._secret_tokens: dict[str, str] = {}
        self.reviewer = reviewer
        self.secrets = secrets
        self.secret = secret
        self.secret_refresh_seconds = secret_refresh_seconds
        self.cache_seconds = cache_seconds
        self._secret_read_at = -1e18
        self._decisions: dict[tuple[str, Action], tuple[float, Decision]] = {}

    @property
    def configured(self) -> bool:
        return bool(self._env_tokens or self.secret or self.reviewer)

    async def _refresh_secret(self) -> None:
        if self.secret is None or self.secrets is None:
            return
        now = time.monotonic()
        if now - self._secret_read_at < self.secret_refresh_seconds:
            return
        self._secret_read_at = now
        namespace, name = self.secret
        try:
            values = await self.secrets.secret_values(namespace, name)
        except Exception as exc:
            # Keep the tokens read last time; a brief API outage should not lock users out.
            logger.warning("Cannot read token Secret %s/%s: %s", namespace, name, exc)
            return
        self._secret_tokens = {v: f"secret:{k}" for k, v in values.items() if v}

    def _static(self, token: str) -> str | None:
        found = None
        for known, owner in (*self._env_tokens.items(), *self._secret_tokens.items()):
            # Compare every token in constant time, so timing tells nothing.
            if hmac.compare_digest(known.encode(), token.encode()):
                found = owner
        return found

    async def decide(self, token: str | None, action: Action) -> Decision:
        if token is None:
            return _unauthorized("a bearer token is required: send 'Authorization: Bearer <token>'")
        if not token:
            return _unauthorized("the Authorization header must be 'Bearer <token>'")
        await self._refresh_secret()
        owner = self._static(token)
        if owner is not None:
            return _ok(owner)
        if self.reviewer is None:
            return _unauthorized("the token is not valid")
        key = (hashlib.sha256(token.encode()).hexdigest(), action)
        cached = self._decisions.get(key)
        now = time.monotonic()
        if cached is not None and now - cached[0] < self.cache_seconds:
            return cached[1]
        try:
            review = await self.reviewer.review(
                token,
                verb=action.verb,
                resource=action.resource,
                namespace=action.namespace,
                group=action.group,
            )
        except Exception as exc:
            logger.warning("TokenReview failed: %s", exc)
            return Decision(
                False, 503, "unavailable", "cannot verify the token with Kubernetes right now"
            )
        if not review.authenticated:
            decision = _unauthorized(f"the token is not valid ({review.reason})")
        elif not review.allowed:
            where = f"in namespace {action.namespace!r}" if action.namespace else "cluster-wide"
            decision = Decision(
                False,
                403,
                "forbidden",
                f"{review.user} may not {action.verb} {action.resource} {where}",
                review.user,
            )
        else:
            decision = _ok(review.user)
        if len(self._decisions) > 10_000:
            self._decisions.clear()
        self._decisions[key] = (now, decision)
        return decision
