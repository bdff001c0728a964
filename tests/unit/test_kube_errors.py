"""How the Kubernetes adapter talks to the API server and names its refusals, over real
HTTP to a loopback server that answers what each test says.

What comes out of ``Kube`` decides whether intake deletes an SQS message, so a 409 must
say which 409 it was.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from kubernetes import client

from barbeque.adapters.kube import (
    AlreadyExists,
    Conflict,
    Connection,
    Invalid,
    Kube,
    KubeError,
    NotFound,
    TransientError,
)
from barbeque.adapters.watch import WatchClient
from barbeque.controller.listwatch import ListWatch
from barbeque.metrics import REGISTRY

pytestmark = pytest.mark.unit

BODY = {"metadata": {"name": "m-1", "namespace": "shop"}, "spec": {}}


def status(code: int, reason: str, message: str = "") -> str:
    return json.dumps(
        {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "message": message or reason,
            "reason": reason,
            "code": code,
        }
    )


class ApiServer:
    """Answers with the queued ``answers`` in turn, then ``answer``; remembers what it
    was asked."""

    def __init__(self) -> None:
        self.answer: tuple[int, str | None] = (200, "{}")
        self.answers: list[tuple[int, str | None]] = []
        self.requests: list[dict[str, Any]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(
            {
                "method": request.method,
                "path": request.raw_path,
                "content_type": request.headers.get("Content-Type"),
                "authorization": request.headers.get("Authorization"),
                "body": await request.read(),
            }
        )
        code, text = self.answers.pop(0) if self.answers else self.answer
        return web.Response(status=code, text=text, content_type="application/json")


@pytest.fixture
async def server() -> AsyncIterator[tuple[ApiServer, Kube]]:
    api = ApiServer()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", api.handle)
    test_server = TestServer(app, host="127.0.0.1")
    await test_server.start_server()
    configuration = client.Configuration(host=str(test_server.make_url("")))
    configuration.api_key = {"authorization": "secret-token"}
    configuration.api_key_prefix = {"authorization": "Bearer"}
    kube = Kube(Connection.from_api_client(client.ApiClient(configuration)), pool_size=2)
    try:
        yield api, kube
    finally:
        await kube.close()
        await test_server.close()


async def create_raising(server: tuple[ApiServer, Kube], code: int, body: str | None) -> KubeError:
    api, kube = server
    api.answer = (code, body)
    with pytest.raises(KubeError) as caught:
        await kube.create_execution(BODY)
    return caught.value


async def test_a_409_already_exists_is_already_exists(server: Any) -> None:
    error = await create_raising(
        server, 409, status(409, "AlreadyExists", 'jobexecutions "m-1" exists')
    )
    assert type(error) is AlreadyExists
    assert error.status == 409


async def test_a_409_conflict_on_a_create_is_transient_not_already_exists(
    server: Any,
) -> None:
    error = await create_raising(
        server,
        409,
        status(409, "Conflict", "the object has been modified; please apply your changes"),
    )
    assert type(error) is Conflict
    assert isinstance(error, TransientError)
    assert not isinstance(error, AlreadyExists)


@pytest.mark.parametrize("body", [None, "", "upstream connect error", "[]", '{"reason": 7}'])
async def test_a_409_without_a_readable_status_is_not_taken_for_already_exists(
    server: Any, body: str | None
) -> None:
    error = await create_raising(server, 409, body)
    assert type(error) is Conflict


@pytest.mark.parametrize(
    ("code", "reason", "kind"),
    [
        (404, "NotFound", NotFound),
        (400, "BadRequest", Invalid),
        (422, "Invalid", Invalid),
        (429, "TooManyRequests", TransientError),
        (503, "ServiceUnavailable", TransientError),
    ],
)
async def test_other_statuses_keep_their_meaning(
    server: Any, code: int, reason: str, kind: type[KubeError]
) -> None:
    error = await create_raising(server, code, status(code, reason))
    assert type(error) is kind


async def test_a_create_posts_the_body_with_the_token_to_the_collection(server: Any) -> None:
    api, kube = server
    api.answer = (201, json.dumps(BODY))
    created = await kube.create_execution(BODY)
    assert created == BODY
    (request,) = api.requests
    assert request["method"] == "POST"
    assert request["path"] == "/apis/barbeque.dev/v1alpha1/namespaces/shop/jobexecutions"
    assert request["authorization"] == "Bearer secret-token"
    assert json.loads(request["body"]) == BODY


async def test_a_status_patch_is_a_merge_patch_of_the_status_subresource(server: Any) -> None:
    api, kube = server
    await kube.patch_execution_status("shop", "m-1", {"phase": "Running"})
    (request,) = api.requests
    assert request["method"] == "PATCH"
    assert request["path"].endswith("/namespaces/shop/jobexecutions/m-1/status")
    assert request["content_type"] == "application/merge-patch+json"
    assert json.loads(request["body"]) == {"status": {"phase": "Running"}}


async def test_a_name_cannot_reach_another_path(server: Any) -> None:
    api, kube = server
    await kube.get_execution("shop", "a/b")
    assert api.requests[0]["path"].endswith("/namespaces/shop/jobexecutions/a%2Fb")
    with pytest.raises(Invalid):
        await kube.get_execution("shop", "..")
    assert len(api.requests) == 1


async def test_pages_follow_the_continue_token_with_selectors(server: Any) -> None:
    api, kube = server
    api.answers = [
        (200, json.dumps({"items": [{"n": 1}], "metadata": {"continue": "tok/en"}})),
        (200, json.dumps({"items": [{"n": 2}], "metadata": {}})),
    ]
    pages = [page async for page in kube.pages("jobexecutions", label_selector="a=b", page_size=1)]
    assert pages == [[{"n": 1}], [{"n": 2}]]
    first, second = (request["path"] for request in api.requests)
    collection = "/apis/barbeque.dev/v1alpha1/jobexecutions"
    assert first == f"{collection}?limit=1&labelSelector=a%3Db"
    assert second == f"{collection}?limit=1&continue=tok%2Fen&labelSelector=a%3Db"


async def test_a_server_that_is_gone_is_transient() -> None:
    configuration = client.Configuration(host="http://127.0.0.1:9")
    kube = Kube(Connection.from_api_client(client.ApiClient(configuration)), pool_size=1)
    try:
        with pytest.raises(TransientError):
            await kube.create_execution(BODY)
    finally:
        await kube.close()


async def test_credentials_are_read_once_then_again_after_a_401(server: Any) -> None:
    api, kube = server
    tokens = iter(["first", "second"])
    configuration = kube.connection.configuration

    def refresh(conf: client.Configuration) -> None:
        conf.api_key["authorization"] = next(tokens)

    configuration.refresh_api_key_hook = refresh
    await kube.get_execution("shop", "a")
    await kube.get_execution("shop", "b")
    api.answer = (401, status(401, "Unauthorized"))
    with pytest.raises(TransientError):
        await kube.get_execution("shop", "c")
    api.answer = (200, "{}")
    await kube.get_execution("shop", "d")
    seen = [request["authorization"] for request in api.requests]
    assert seen == ["Bearer first", "Bearer first", "Bearer first", "Bearer second"]


async def test_a_watch_refused_with_401_reads_the_credentials_again(server: Any) -> None:
    api, kube = server
    tokens = iter(["old", "new"])

    def refresh(conf: client.Configuration) -> None:
        conf.api_key["authorization"] = next(tokens)

    kube.connection.configuration.refresh_api_key_hook = refresh
    api.answers = [
        (401, status(401, "Unauthorized")),
        (200, json.dumps({"items": [], "metadata": {"resourceVersion": "7"}})),
    ]
    watch = ListWatch(
        WatchClient(kube.connection, "/api/v1/pods"), on_event=lambda kind, body: None
    )

    def listed(code: str) -> float:
        labels = {"call": "list_pods", "code": code}
        return REGISTRY.get_sample_value("barbeque_kube_requests_total", labels) or 0.0

    before = (listed("401"), listed("200"))
    try:
        await watch.sync(attempts=2)
    finally:
        await watch.close()
    assert [request["authorization"] for request in api.requests] == ["Bearer old", "Bearer new"]
    assert watch.resource_version == "7"
    # Counted with the API calls: a watch's refusals show in the same metric.
    assert (listed("401") - before[0], listed("200") - before[1]) == (1, 1)


async def test_requests_are_counted_by_call_and_code_and_timed(server: Any) -> None:
    api, kube = server

    def count(code: str) -> float:
        labels = {"call": "create_execution", "code": code}
        return REGISTRY.get_sample_value("barbeque_kube_requests_total", labels) or 0.0

    def timed() -> float:
        labels = {"call": "create_execution"}
        value = REGISTRY.get_sample_value("barbeque_kube_request_duration_seconds_count", labels)
        return value or 0.0

    before = {code: count(code) for code in ("201", "409", "error")}
    timed_before = timed()
    api.answer = (201, json.dumps(BODY))
    await kube.create_execution(BODY)
    api.answer = (409, status(409, "AlreadyExists"))
    with pytest.raises(AlreadyExists):
        await kube.create_execution(BODY)
    gone = Kube(
        Connection.from_api_client(
            client.ApiClient(client.Configuration(host="http://127.0.0.1:9"))
        ),
        pool_size=1,
    )
    try:
        with pytest.raises(TransientError):
            await gone.create_execution(BODY)
    finally:
        await gone.close()
    assert {code: count(code) - before[code] for code in before} == {
        "201": 1,
        "409": 1,
        "error": 1,
    }
    assert timed() - timed_before == 3
