"""The operator's own watch of unfinished executions, against the real kube-apiserver.

The CRD declares ``status.phase`` selectable; the watch asks for unfinished executions
only, so one that finishes is reported DELETED (it left the selection), finished ones
are never listed, and a resourceVersion too old to watch from makes it list again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import pytest

from barbeque.adapters.kube import Connection, load_api_client
from barbeque.adapters.watch import WatchClient
from barbeque.api.models import GROUP, UNFINISHED_SELECTOR, VERSION
from barbeque.controller.listwatch import ListWatch
from tests.cluster.harness import Cluster

pytestmark = pytest.mark.integration

NS = "watch-test"
PATH = f"/apis/{GROUP}/{VERSION}/namespaces/{NS}/jobexecutions"


def execution(name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "JobExecution",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"application": NS, "job": "hello", "queue": "q", "messageId": name},
    }


def set_phase(cluster: Cluster, name: str, phase: str) -> None:
    cluster.api(
        "PATCH",
        f"{PATH}/{name}/status",
        {"status": {"phase": phase}},
        content_type="application/merge-patch+json",
    )


@pytest.fixture
def namespace(cluster: Cluster, crds: None) -> Iterator[str]:
    cluster.create_namespace(NS)
    yield NS
    cluster.delete_namespace(NS)


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str | None]] = []

    def __call__(self, type_: str, body: dict[str, Any]) -> None:
        if (body.get("metadata") or {}).get("namespace") == NS:
            phase = (body.get("status") or {}).get("phase")
            self.events.append((type_, body["metadata"]["name"], phase))

    def names(self, type_: str) -> set[str]:
        return {name for t, name, _ in self.events if t == type_}


async def eventually(check: Any) -> None:
    async with asyncio.timeout(20):
        while not check():  # noqa: ASYNC110 (polls events a callback records)
            await asyncio.sleep(0.1)


def test_only_unfinished_executions_are_listed_and_watched(
    cluster: Cluster, namespace: str
) -> None:
    for name in ("running", "done", "failed"):
        cluster.api("POST", PATH, execution(name))
    set_phase(cluster, "running", "Running")
    set_phase(cluster, "done", "Succeeded")
    set_phase(cluster, "failed", "Failed")
    recorder = Recorder()

    async def scenario() -> None:
        watch = ListWatch(
            WatchClient(
                Connection.from_api_client(load_api_client(str(cluster.kubeconfig))),
                f"/apis/{GROUP}/{VERSION}/jobexecutions",
                timeout_seconds=30,
            ),
            on_event=recorder,
            field_selector=UNFINISHED_SELECTOR,
            page_size=2,
        )
        await watch.relist()
        assert recorder.names("ADDED") == {"running"}
        task = asyncio.create_task(watch.run())
        try:
            cluster.api("POST", PATH, execution("fresh"))
            await eventually(lambda: "fresh" in recorder.names("ADDED"))
            set_phase(cluster, "running", "Succeeded")
            # A finished execution leaves the selection: DELETED, with the last state that
            # matched (Running), not the final one.
            await eventually(lambda: "running" in recorder.names("DELETED"))

            # A resourceVersion the API server no longer serves: 410, then a new LIST that
            # reports what vanished meanwhile.
            await watch.stop(task)
            relists = watch.relists
            set_phase(cluster, "fresh", "Error")
            watch.resource_version = "1"
            task = asyncio.create_task(watch.run())
            await eventually(lambda: watch.relists > relists)
            await eventually(lambda: "fresh" in recorder.names("DELETED"))
        finally:
            with contextlib.suppress(Exception):
                await watch.stop(task)

    asyncio.run(scenario())
    listed = {name for t, name, _ in recorder.events if t == "ADDED"}
    assert "done" not in listed
    assert "failed" not in listed
