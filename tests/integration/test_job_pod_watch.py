"""The operator's own watches of Jobs and pods, against the real kube-apiserver.

They replaced kopf's: the operator built by the factory must still see its Jobs and
pods (and only those labelled with an execution), including a pod's deletion, and a
re-LIST after a watch expired must still tell which execution a vanished pod was of.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from barbeque.adapters.kube import Connection, load_api_client
from barbeque.adapters.watch import WatchClient
from barbeque.api.models import LABEL_EXECUTION
from barbeque.config import Settings
from barbeque.controller.listwatch import ListWatch
from barbeque.factory import build_operator
from tests.cluster.harness import Cluster

pytestmark = pytest.mark.integration


def jobs(ns: str) -> str:
    return f"/apis/batch/v1/namespaces/{ns}/jobs"


def pods(ns: str) -> str:
    return f"/api/v1/namespaces/{ns}/pods"


def pod(ns: str, name: str, execution: str | None) -> dict[str, Any]:
    labels = {LABEL_EXECUTION: execution} if execution else {"app": "not-ours"}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        # No node will take it: the pod stays Pending and deletes at once.
        "spec": {
            "containers": [{"name": "main", "image": "busybox"}],
            "nodeSelector": {"no-such-node": "true"},
        },
    }


def job(ns: str, name: str, execution: str) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": ns, "labels": {LABEL_EXECUTION: execution}},
        "spec": {
            "suspend": True,  # no pods: this test makes its own
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "main", "image": "busybox"}],
                }
            },
        },
    }


def delete_pod(cluster: Cluster, ns: str, name: str) -> None:
    cluster.api("DELETE", f"{pods(ns)}/{name}", {"gracePeriodSeconds": 0})


@pytest.fixture
def ns(cluster: Cluster, crds: None) -> Iterator[str]:
    with cluster.temporary_namespace("job-pod-watch") as name:
        yield name


async def eventually(check: Any) -> None:
    async with asyncio.timeout(20):
        while not check():  # noqa: ASYNC110 (polls what the watches put in the store)
            await asyncio.sleep(0.1)


def test_job_and_pod_events_reach_the_operator_through_its_watches(
    cluster: Cluster, ns: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster.api("POST", jobs(ns), job(ns, "before", "exec-before"))
    cluster.api("POST", pods(ns), pod(ns, "before-pod", "exec-before"))

    async def scenario() -> None:
        operator = build_operator(Settings(metrics_port=0), kubeconfig=str(cluster.kubeconfig))
        store = operator.store
        queued: set[tuple[str, str]] = set()
        add = operator.queue.add

        def record(key: tuple[str, str]) -> None:
            queued.add(key)
            add(key)

        monkeypatch.setattr(operator.queue, "add", record)
        try:
            await operator.manager.prime()
            assert (ns, "before") in store.jobs
            assert store.pods[ns, "exec-before"].name == "before-pod"

            cluster.api("POST", jobs(ns), job(ns, "after", "exec-after"))
            cluster.api("POST", pods(ns), pod(ns, "after-pod", "exec-after"))
            cluster.api("POST", pods(ns), pod(ns, "stranger", None))
            await eventually(lambda: (ns, "after") in store.jobs)
            await eventually(lambda: (ns, "exec-after") in store.pods)
            assert (ns, "exec-after") in queued

            delete_pod(cluster, ns, "after-pod")
            await eventually(lambda: (ns, "exec-after") not in store.pods)
            cluster.api("DELETE", f"{jobs(ns)}/after")
            await eventually(lambda: (ns, "after") not in store.jobs)
            assert all(p.name != "stranger" for p in store.pods.values())
        finally:
            await operator.stop()
            await operator.kube.close()

    asyncio.run(scenario())


def test_a_relist_reports_a_vanished_pod_with_its_execution(cluster: Cluster, ns: str) -> None:
    cluster.api("POST", pods(ns), pod(ns, "gone", "exec-gone"))
    events: list[tuple[str, dict[str, Any]]] = []

    def record(type_: str, body: dict[str, Any]) -> None:
        if body["metadata"].get("namespace") == ns:
            events.append((type_, body["metadata"]))

    async def scenario() -> None:
        watch = ListWatch(
            WatchClient(
                Connection.from_api_client(load_api_client(str(cluster.kubeconfig))),
                "/api/v1/pods",
            ),
            on_event=record,
            label_selector=LABEL_EXECUTION,
            remembered_label=LABEL_EXECUTION,
        )
        try:
            await watch.relist()
            assert [(t, m["name"]) for t, m in events] == [("ADDED", "gone")]
            # Deleted while no watch ran (a watch that expired): only the next LIST can
            # tell, and the operator needs the execution label to forget the pod.
            delete_pod(cluster, ns, "gone")
            await watch.relist()
        finally:
            await watch.close()

    asyncio.run(scenario())
    type_, meta = events[-1]
    assert type_ == "DELETED"
    assert meta == {"namespace": ns, "name": "gone", "labels": {LABEL_EXECUTION: "exec-gone"}}
