"""Ready conditions of queues and definitions, and the Warning Events that go with them,
with in-memory stand-ins for SQS and the API server."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from barbeque.api.models import JobQueue, image_reference_problem
from barbeque.services.conditions import condition, merge_conditions
from barbeque.services.definitions import DefinitionChecker
from barbeque.services.intake import Intake
from barbeque.services.poller import Poller
from barbeque.services.recorder import Recorder
from barbeque.services.store import Store
from tests.support.fakes import FakeKube, FakeSqs

pytestmark = [pytest.mark.unit, pytest.mark.looptime]


def poller(kube: FakeKube, sqs: FakeSqs, **spec: Any) -> Poller:
    store = Store()
    queue = JobQueue.model_validate(
        {"metadata": {"name": "default", "uid": "q-uid", "generation": 3}, "spec": spec}
    )
    intake = Intake(store=store, kube=kube, operator_namespace="ops", on_created=lambda key: None)
    return Poller(
        queue,
        sqs=sqs,
        intake=intake,
        store=store,
        kube=kube,
        capacity=asyncio.Event(),
        recorder=Recorder(kube=kube, instance="operator-0"),
    )  # type: ignore[arg-type]


def ready(status: dict[str, Any]) -> tuple[str, str]:
    (found,) = [c for c in status["conditions"] if c["type"] == "Ready"]
    return found["status"], found["reason"]


async def run_until(target: Poller, done: Any) -> None:
    task = asyncio.create_task(target.run())
    for _ in range(1000):
        if done():
            break
        await asyncio.sleep(0.1)
    target.stopping.set()
    await task


async def test_a_queue_that_cannot_receive_turns_not_ready_once_then_ready_again() -> None:
    kube, sqs = FakeKube(), FakeSqs()
    sqs.failing_receives = 3
    target = poller(kube, sqs)
    await run_until(target, lambda: len(kube.queue_statuses) >= 3)

    assert [ready(s) for s in kube.queue_statuses] == [
        ("True", "Polling"),
        ("False", "ReceiveFailed"),
        ("True", "Polling"),
    ]
    assert [s["phase"] for s in kube.queue_statuses] == ["Ready", "Error", "Ready"]
    assert all(s["observedGeneration"] == 3 for s in kube.queue_statuses)
    # Three failures, one Event: once per trouble, not per retry.
    assert [(e["reason"], e["regarding"]["kind"]) for e in kube.events] == [
        ("ReceiveFailed", "JobQueue")
    ]
    # Cluster-scoped: its Events live in `default`.
    assert kube.events[0]["metadata"]["namespace"] == "default"
    assert "namespace" not in kube.events[0]["regarding"]


async def test_a_queue_that_does_not_exist_is_not_ready_with_the_reason() -> None:
    kube, sqs = FakeKube(), FakeSqs(missing={"Barbeque-default"})
    target = poller(kube, sqs)
    await run_until(target, lambda: kube.queue_statuses)

    assert ready(kube.queue_statuses[0]) == ("False", "ResolveFailed")
    assert "no queue Barbeque-default" in kube.queue_statuses[0]["message"]
    assert [e["reason"] for e in kube.events] == ["ResolveFailed"]


async def test_a_suspended_queue_is_ready_and_says_suspended() -> None:
    kube, sqs = FakeKube(), FakeSqs()
    target = poller(kube, sqs, suspend=True)
    await run_until(target, lambda: kube.queue_statuses)
    assert ready(kube.queue_statuses[0]) == ("True", "Suspended")
    assert kube.events == []


def definition(image: str, status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": "notify", "namespace": "blog", "uid": "d-uid", "generation": 2},
        "spec": {"image": image},
        "status": status or {},
    }


async def check(checker: DefinitionChecker, body: dict[str, Any]) -> None:
    checker.store.put_definition(body)
    checker.on_definition(body, ("blog", "notify"))
    await checker.check(("blog", "notify"))


async def test_a_definition_is_ready_once_and_its_own_write_writes_nothing() -> None:
    kube = FakeKube()
    checker = DefinitionChecker(
        store=Store(), kube=kube, recorder=Recorder(kube=kube, instance="x")
    )
    await check(checker, definition("registry.example.com/blog:1.2"))
    ((_, _, status),) = kube.definition_statuses
    assert status["observedGeneration"] == 2
    assert ready(status) == ("True", "Valid")

    # Judged by a dry run of the Job a sample execution would get, nothing stored.
    (job,) = kube.dry_runs
    assert job["metadata"]["namespace"] == "blog"
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "registry.example.com/blog:1.2"
    )
    assert kube.jobs == {}

    # The watch event of that write: the status says it all already, no second dry run.
    await check(checker, definition("registry.example.com/blog:1.2", status))
    assert len(kube.definition_statuses) == 1
    assert len(kube.dry_runs) == 1
    assert kube.events == []


async def test_a_job_the_api_server_would_refuse_makes_the_definition_not_ready() -> None:
    kube = FakeKube()
    kube.reject_jobs = True
    checker = DefinitionChecker(
        store=Store(), kube=kube, recorder=Recorder(kube=kube, instance="x")
    )
    await check(checker, definition("busybox"))
    ((_, _, status),) = kube.definition_statuses
    assert ready(status) == ("False", "InvalidJobTemplate")
    (found,) = status["conditions"]
    assert "containers[1].image: Required" in found["message"]
    assert [e["reason"] for e in kube.events] == ["InvalidJobTemplate"]


async def test_a_malformed_image_makes_the_definition_not_ready_with_one_event() -> None:
    kube = FakeKube()
    store = Store()
    checker = DefinitionChecker(store=store, kube=kube, recorder=Recorder(kube=kube, instance="x"))
    await check(checker, definition("Blog/App:1"))
    ((_, _, status),) = kube.definition_statuses
    assert ready(status) == ("False", "InvalidImage")
    assert [(e["reason"], e["regarding"]["namespace"]) for e in kube.events] == [
        ("InvalidImage", "blog")
    ]
    # Executions of it end as InvalidDefinition (the reconciler reads bad_definitions).
    assert store.definition("blog", "notify") is None
    assert "not a well-formed reference" in store.bad_definitions[("blog", "notify")]
    await check(checker, definition("Blog/App:1", status))
    assert len(kube.events) == 1


@pytest.mark.parametrize(
    ("image", "ok"),
    [
        ("busybox", True),
        ("busybox:1.36", True),
        ("registry.example.com:5000/team/app:1.2.3", True),
        ("localhost/app", True),
        ("[::1]:5000/app", True),
        ("app@sha256:" + "a" * 64, True),
        ("ghcr.io/team/app:v1@sha256:" + "0" * 64, True),
        ("Team/App", False),
        ("ghcr.io/Team/app", False),
        ("app:", False),
        ("app:-tag", False),
        ("app@sha256:short", False),
        ("a//b", False),
        ("a" * 256, False),
    ],
)
def test_image_references_are_checked_as_runtimes_parse_them(image: str, ok: bool) -> None:
    assert (image_reference_problem(image) is None) is ok


def test_a_condition_keeps_its_transition_time_while_its_status_holds() -> None:
    first = condition("Ready", True, "Polling", "a", 1)
    same = merge_conditions([first], [condition("Ready", True, "Suspended", "b", 2)])
    assert same[0].last_transition_time == first.last_transition_time
    assert (same[0].reason, same[0].observed_generation) == ("Suspended", 2)
    changed = merge_conditions(same, [condition("Ready", False, "ResolveFailed", "c", 2)])
    assert changed[0].last_transition_time is not None
    assert changed[0].last_transition_time >= first.last_transition_time  # type: ignore[operator]
    assert len(changed) == 1
