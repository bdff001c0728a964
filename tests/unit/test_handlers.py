"""The kopf startup hook (settings that keep kopf's per-event work small, retries) and what
kopf watches."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import kopf
import pytest

from barbeque import handlers
from barbeque.config import Settings

pytestmark = pytest.mark.unit


class FakeServer:
    def shutdown(self) -> None: ...

    def server_close(self) -> None: ...


async def test_a_retried_startup_starts_the_metrics_server_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started: list[int] = []

    def start_http_server(port: int, addr: str, registry: Any) -> tuple[FakeServer, None]:
        started.append(port)
        return FakeServer(), None

    def build_operator(config: Settings) -> Any:
        raise RuntimeError("the API server is not there yet")

    monkeypatch.setattr(handlers, "start_http_server", start_http_server)
    monkeypatch.setattr(handlers, "build_operator", build_operator)
    monkeypatch.setattr(handlers, "get_settings", lambda: Settings(metrics_port=18080))
    settings, memo = kopf.OperatorSettings(), kopf.Memo()
    for _ in range(2):  # kopf retries the whole handler
        with pytest.raises(RuntimeError):
            await handlers.startup(settings=settings, memo=memo)
    assert started == [18080]


async def test_kopf_builds_no_diff_base_from_event_bodies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def build_operator(config: Settings) -> Any:
        raise RuntimeError("stop here")

    monkeypatch.setattr(handlers, "build_operator", build_operator)
    monkeypatch.setattr(handlers, "get_settings", lambda: Settings(metrics_port=0))
    settings = kopf.OperatorSettings()
    with pytest.raises(RuntimeError):
        await handlers.startup(settings=settings, memo=kopf.Memo())
    storage = settings.persistence.diffbase_storage
    body = kopf.Body({"metadata": {"name": "x"}, "spec": {"big": list(range(100))}})
    assert storage.build(body=body) == {}
    assert storage.fetch(body=body) is None


def test_kopf_watches_only_definitions_queues_and_subscriptions() -> None:
    # Jobs, pods and executions come through the runtime's own watches; a kopf handler
    # on them would bring back kopf's per-event cost and feed every event twice.
    selectors = kopf.get_default_registry()._watching.get_all_selectors()
    assert sorted(s.any_name for s in selectors) == [
        "jobdefinitions",
        "jobqueues",
        "snssubscriptions",
    ]


async def test_a_retried_startup_closes_the_failed_operators_connections(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built: list[Any] = []

    class Kube:
        closed = False

        async def close(self) -> None:
            self.closed = True

    async def start() -> None:
        raise RuntimeError("the API server is not there yet")

    def build_operator(config: Settings) -> Any:
        operator = SimpleNamespace(kube=Kube(), start=start)
        built.append(operator)
        return operator

    monkeypatch.setattr(handlers, "build_operator", build_operator)
    monkeypatch.setattr(
        handlers, "get_settings", lambda: Settings(metrics_port=0, s3_create_bucket=False)
    )
    settings, memo = kopf.OperatorSettings(), kopf.Memo()
    executors = []
    for _ in range(2):  # kopf retries the whole handler
        with pytest.raises(RuntimeError):
            await handlers.startup(settings=settings, memo=memo)
        executors.append(asyncio.get_running_loop()._default_executor)  # type: ignore[attr-defined]
    assert [operator.kube.closed for operator in built] == [True, True]
    assert executors[0] is executors[1] is memo.executor
    assert "operator" not in memo
