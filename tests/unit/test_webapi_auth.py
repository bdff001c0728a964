"""Who may write (and read): static tokens, Kubernetes TokenReview + RBAC, 401 vs 403."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from barbeque_dashboard.adapters import Review
from barbeque_dashboard.auth import Action, Authenticator, bearer
from tests.support.fakes import FakeKube
from tests.support.webapi import TOKEN, WebWorld, definition_body, execution_body

pytestmark = pytest.mark.unit

ENQUEUE = {"application": "allowed", "job": "J", "queue": "default", "message": {}}


class Secrets:
    def __init__(self, values: dict[str, str]) -> None:
        self.values = values
        self.reads = 0

    async def secret_values(self, namespace: str, name: str) -> dict[str, str]:
        self.reads += 1
        return self.values


@pytest.fixture
def kube() -> FakeKube:
    fake = FakeKube()
    fake.reviews["sa-token"] = Review(True, "system:serviceaccount:allowed:app", True)
    return fake


@pytest.fixture
def world(kube: FakeKube) -> WebWorld:
    return WebWorld(
        public_reads=False,
        api_tokens=f"{TOKEN}, second-token",
        reviewer=kube,
        kube=kube,
        definitions=[definition_body("allowed", "J"), definition_body("other", "J")],
        executions=[execution_body("other", "J", "theirs", phase="Failed")],
    )


def test_enqueue_without_a_token_is_401_with_a_reason(client: TestClient) -> None:
    response = client.post("/v2/job_executions", json=ENQUEUE)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    body = response.json()
    assert body["error_code"] == "unauthorized"
    assert "Bearer" in body["message"]


def test_a_non_bearer_authorization_header_is_401(client: TestClient) -> None:
    response = client.post(
        "/v2/job_executions", json=ENQUEUE, headers={"Authorization": f"Basic {TOKEN}"}
    )
    assert response.status_code == 401


@pytest.mark.parametrize("token", [TOKEN, "second-token"])
def test_static_tokens_may_enqueue(client: TestClient, token: str) -> None:
    response = client.post(
        "/v2/job_executions", json=ENQUEUE, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 201


def test_unknown_token_is_401(client: TestClient) -> None:
    response = client.post(
        "/v2/job_executions", json=ENQUEUE, headers={"Authorization": "Bearer nope"}
    )
    assert response.status_code == 401
    assert "not valid" in response.json()["message"]


def test_kubernetes_token_allowed_by_rbac_may_enqueue(client: TestClient) -> None:
    response = client.post(
        "/v2/job_executions", json=ENQUEUE, headers={"Authorization": "Bearer sa-token"}
    )
    assert response.status_code == 201


def test_kubernetes_token_without_the_permission_is_403(client: TestClient) -> None:
    response = client.post(
        "/v2/job_executions",
        json={**ENQUEUE, "application": "other"},
        headers={"Authorization": "Bearer sa-token"},
    )
    assert response.status_code == 403
    body = response.json()
    assert body["error_code"] == "forbidden"
    assert "other" in body["message"]


def test_retry_checks_the_namespace_of_the_execution(client: TestClient) -> None:
    response = client.post(
        "/v1/job_executions/theirs/retries", headers={"Authorization": "Bearer sa-token"}
    )
    assert response.status_code == 403


def test_reads_need_a_token_unless_public(client: TestClient) -> None:
    assert client.get("/v1/job_executions/x").status_code == 401
    ok = client.get("/v1/job_executions/x", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200


def test_health_needs_no_token(client: TestClient) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.get("/openapi.json").status_code == 200


def test_console_redirects_to_login_and_the_cookie_lets_you_in(client: TestClient) -> None:
    response = client.get("/job_executions", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login?next=")
    bad = client.post("/login", data={"token": "wrong", "next": "/job_executions"})
    assert bad.status_code == 401
    good = client.post(
        "/login", data={"token": TOKEN, "next": "/job_executions"}, follow_redirects=False
    )
    assert good.status_code == 303
    assert good.headers["location"] == "/job_executions"
    assert "httponly" in good.headers["set-cookie"].lower()
    assert "samesite=strict" in good.headers["set-cookie"].lower()
    assert client.get("/job_executions").status_code == 200


def test_login_never_redirects_off_site(client: TestClient) -> None:
    response = client.post(
        "/login", data={"token": TOKEN, "next": "//evil.example/"}, follow_redirects=False
    )
    assert response.headers["location"] == "/"


def test_console_forms_from_another_origin_are_refused(client: TestClient) -> None:
    client.cookies.set("barbeque_token", TOKEN)
    response = client.post(
        "/job_executions/theirs/retry", headers={"Origin": "https://evil.example"}
    )
    assert response.status_code == 403


def test_bearer_parsing() -> None:
    assert bearer("Bearer abc", None) == "abc"
    assert bearer("bearer  abc ", None) == "abc"
    assert bearer("Basic abc", None) == ""
    assert bearer(None, "cookie") == "cookie"
    assert bearer(None, None) is None


async def test_secret_tokens_are_accepted_and_reread() -> None:
    secrets = Secrets({"ci": "from-secret"})
    auth = Authenticator({}, secrets=secrets, secret=("barbeque-system", "tokens"))
    assert (await auth.decide("from-secret", Action("create", "x"))).allowed
    assert (await auth.decide("from-secret", Action("create", "x"))).user == "secret:ci"
    assert secrets.reads == 1
    auth.secret_refresh_seconds = 0
    secrets.values = {}
    decision = await auth.decide("from-secret", Action("create", "x"))
    assert not decision.allowed
    assert decision.status_code == 401


async def test_token_review_decisions_are_cached(kube: FakeKube) -> None:
    auth = Authenticator({}, reviewer=kube)
    for _ in range(3):
        assert (await auth.decide("sa-token", Action("create", "allowed"))).allowed
    assert kube.review_calls == 1


async def test_a_failing_token_review_is_503_not_a_grant() -> None:
    class Broken:
        async def review(self, token: str, **kwargs: object) -> Review:
            raise RuntimeError("apiserver down")

    decision = await Authenticator({}, reviewer=Broken()).decide("t", Action("create", "a"))
    assert not decision.allowed
    assert decision.status_code == 503


def test_unknown_execution_is_401_before_404_for_anonymous_callers(client: TestClient) -> None:
    assert client.post("/v1/job_executions/ghost/retries").status_code == 401
    assert client.post("/v1/job_executions/ghost/cancel").status_code == 401
    known = client.post(
        "/v1/job_executions/ghost/retries", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert known.status_code == 404
