"""GET /v1/job_executions/{message_id}/logs: the pod's log while it runs, S3's afterwards."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from barbeque.adapters.kube import KubeError
from tests.support.fakes import FakeKube
from tests.support.webapi import AUTH, WebWorld, execution_body

pytestmark = pytest.mark.unit


class PodLogs(FakeKube):
    def __init__(self) -> None:
        super().__init__()
        self.logs: dict[tuple[str, str], str] = {}
        self.reads: list[tuple[str, str, int]] = []

    async def read_pod_log(self, namespace: str, pod: str, limit_bytes: int) -> str:
        self.reads.append((namespace, pod, limit_bytes))
        if (namespace, pod) not in self.logs:
            raise KubeError(f"pods {pod!r} not found")
        return self.logs[(namespace, pod)]


class World(WebWorld):
    def __init__(self) -> None:
        self.pods = PodLogs()
        super().__init__(public_reads=False, kube=self.pods)
        self.client = TestClient(self.app)

    def add(self, body: dict[str, Any], **status: Any) -> dict[str, Any]:
        body.setdefault("status", {}).update(status)
        return super().add(body)

    def logs(self, message_id: str, **params: Any) -> Any:
        answer = self.client.get(
            f"/v1/job_executions/{message_id}/logs", params=params, headers=AUTH
        )
        return answer.status_code, answer.json()


@pytest.fixture
def world() -> World:
    return World()


def test_a_running_execution_answers_its_pods_log_from_an_offset(world: World) -> None:
    world.add(execution_body("shop", "SendMail", "m-run", phase="Running"), podName="m-run-x1")
    world.pods.logs[("shop", "m-run-x1")] = "line 1\nline 2\n"
    code, body = world.logs("m-run")
    assert code == 200
    assert body == {
        "message_id": "m-run",
        "log": "line 1\nline 2\n",
        "offset": 0,
        "next_offset": 14,
        "source": "pod",
        "finished": False,
    }
    world.pods.logs[("shop", "m-run-x1")] += "line 3\n"
    code, body = world.logs("m-run", offset=14)
    assert (body["log"], body["next_offset"]) == ("line 3\n", 21)


def test_a_finished_execution_answers_from_s3_whole(world: World) -> None:
    world.add(
        execution_body(
            "shop", "SendMail", "m-done", phase="Succeeded", logs_prefix="shop/SendMail/m-done/"
        )
    )
    world.s3.objects["shop/SendMail/m-done/stdout.txt"] = "héllo\n"
    code, body = world.logs("m-done")
    assert code == 200
    assert (body["source"], body["finished"], body["log"]) == ("s3", True, "héllo\n")
    assert body["next_offset"] == len("héllo\n".encode())
    assert world.pods.reads == []
    code, body = world.logs("m-done", offset=body["next_offset"])
    assert (body["log"], body["finished"]) == ("", True)


def test_an_unknown_execution_is_404_and_an_anonymous_caller_401(world: World) -> None:
    code, body = world.logs("nobody")
    assert (code, body["error_code"]) == (404, "record_not_found")
    answer = world.client.get("/v1/job_executions/nobody/logs")
    assert answer.status_code == 401


def test_a_pod_that_cannot_be_read_while_running_is_503(world: World) -> None:
    world.add(execution_body("shop", "SendMail", "m-gone", phase="Running"), podName="gone")
    code, body = world.logs("m-gone")
    assert code == 503
    assert "pod log" in body["message"]
