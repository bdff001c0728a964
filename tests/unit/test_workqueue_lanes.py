"""The reconcilers' work queue serves applications in turn, each in arrival order."""

from __future__ import annotations

import pytest

from barbeque.controller.workqueue import WorkQueue

pytestmark = pytest.mark.unit


async def test_a_quiet_applications_key_is_not_queued_behind_a_flood() -> None:
    queue: WorkQueue[tuple[str, str]] = WorkQueue(lane_of=lambda key: key[0])
    for i in range(100):
        queue.add(("flood", f"m{i}"))
    queue.add(("quiet", "q0"))
    queue.add(("quiet", "q1"))

    taken = [await queue.get() for _ in range(5)]

    assert taken == [
        ("flood", "m0"),
        ("quiet", "q0"),
        ("flood", "m1"),
        ("quiet", "q1"),
        ("flood", "m2"),
    ]


async def test_without_lanes_keys_come_in_arrival_order_and_a_requeued_key_comes_once() -> None:
    queue: WorkQueue[str] = WorkQueue()
    for key in ("a", "b", "a", "c"):
        queue.add(key)
    first = await queue.get()
    queue.add(first)  # changed while in hand: reconciled again once it is done
    queue.done(first)

    assert [await queue.get() for _ in range(3)] == ["b", "c", "a"]
    assert len(queue) == 0
