"""Capacity: a burst of messages on an empty node group that the real cluster-autoscaler grows.

cluster-autoscaler 1.34.5 (kwok provider, tests/cluster/autoscaler.py) runs as its own
process with one node group of kwok nodes, min 0, max ``--max-nodes``, ten pods per node;
the definition asks for that group, so its executions wait for capacity (Unschedulable)
until nodes come. Each job "runs" ``--duration`` seconds. Figures: time to the first node,
time to all Succeeded, peak nodes, time back to zero nodes (after the autoscaler's idle
window, seconds here instead of its default ten minutes).

The baseline of the same run sends the same messages to a definition on the cluster's
standing kwok nodes (capacity already there): the difference is what waiting for
capacity costs.

    python -m bench.autoscaler --messages 200 --max-nodes 20
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

from tests.cluster import DURATION_ANNOTATION
from tests.cluster.autoscaler import Autoscaler, GroupSize
from tests.cluster.binaries import unavailable_reason

from barbeque.services.naming import execution_name
from bench.cli import bench_main
from bench.env import App, Environment, Result, log, message_body

PODS_PER_NODE = 10


def _burst(
    env: Environment, app: App, messages: int, timeout: float, sample: Callable[[], object]
) -> float:
    """Sends ``messages`` at once; seconds until every execution Succeeded."""
    recorded = env.watch_executions(app.namespace)
    try:
        start = time.monotonic()
        sent = env.send_batch(app, [message_body(app, "work", {"n": i}) for i in range(messages)])
        names = {execution_name(message_id) for message_id, _ in sent}
        deadline = start + timeout
        while not all(recorded.phases.get(n, {}).get("Succeeded") for n in names):
            if time.monotonic() > deadline:
                raise RuntimeError(f"not every execution Succeeded within {timeout:.0f} s")
            sample()
            time.sleep(0.5)
        return time.monotonic() - start
    finally:
        recorded.stop()
        env.delete_jobqueue(app)


def run(env: Environment, messages: int = 200, max_nodes: int = 20, duration: float = 3) -> Result:
    result = Result(
        "autoscaler",
        "A burst on an empty node group grown by the real cluster-autoscaler",
        {"messages": messages, "max_nodes": max_nodes, "pods_per_node": PODS_PER_NODE,
         "job_seconds": duration},
    )  # fmt: skip
    reason = unavailable_reason("cluster-autoscaler")
    if reason:
        raise RuntimeError(f"no cluster-autoscaler on this machine: {reason}")
    env.start_operator()
    annotations = {DURATION_ANNOTATION: str(int(duration * 1000))}
    timeout = 180.0 + messages

    baseline = env.new_app("standing", ("work",), definition_spec={"podAnnotations": annotations})
    env.wait_queue_ready(baseline)
    standing = _burst(env, baseline, messages, timeout, lambda: None)
    log(f"baseline on standing nodes: all Succeeded in {standing:.1f} s")

    scaler = Autoscaler(env.k8s, max_nodes=max_nodes, pods_per_node=PODS_PER_NODE)
    scaler.start()
    try:
        app = env.new_app(
            "grown",
            ("work",),
            definition_spec={"podAnnotations": annotations, **scaler.placement()},
        )
        env.wait_queue_ready(app)
        size = GroupSize(scaler)
        grown = _burst(env, app, messages, timeout, size)
        while size() > 0:
            if time.monotonic() - size.started > grown + 300:
                raise RuntimeError("the node group did not shrink back to 0 within 300 s")
            time.sleep(1)
        back_to_zero = time.monotonic() - size.started
    finally:
        scaler.stop()

    peak = size.peak
    result.add("time to the first node", size.first_node or -1.0, "s")
    result.add("time to all Succeeded", grown, "s")
    result.add("peak nodes", float(peak), "", goal=f"<= {max_nodes}", ok=peak <= max_nodes)
    result.add("time back to 0 nodes", back_to_zero, "s")
    result.add("all Succeeded on standing nodes", standing, "s", note="baseline")
    log(f"autoscaler: first node {size.first_node} s, all Succeeded {grown:.1f} s, peak {peak}")
    return result


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--max-nodes", type=int, default=20, help="the node group's maximum")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds each job runs")


if __name__ == "__main__":
    sys.exit(bench_main("autoscaler", __doc__, arguments, run))
