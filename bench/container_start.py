"""Container start on the real node: execution recorded -> its container running.

The real node (containerd, runc, kubelet; tests/cluster/realnode.py) joins the benchmark's
cluster with the job image imported; a definition runs ``sleep 1`` there, in a namespace
that enforces Pod Security ``restricted``. Messages are sent at a steady rate; watches
time when each JobExecution is first seen, when its pod is first seen, and when the pod
is first seen Running (its container started). Three figures:

- enqueue (SendMessage returned) -> container running: what a user waits for, SQS and
  the operator's intake included;
- execution -> container running: the operator's share (reconcile, create the Job) plus
  Kubernetes' (Job controller, scheduler, kubelet, containerd, runc);
- pod created -> running: what Kubernetes' own pod startup SLO measures (p99 <= 5 s for
  stateless pods, image already present), the baseline of the same run.

    python -m bench.container_start --executions 50 --rate 1
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from tests.cluster import images, realnode

from barbeque.api.models import LABEL_EXECUTION
from barbeque.services.naming import execution_name
from bench.cli import bench_main
from bench.env import Environment, Result, Watch, log, message_body, percentile

SLO_P99 = 5.0


class PodWatch(Watch):
    """Pods keyed by their execution's label, not their own generated names."""

    def _seen(self, obj: dict[str, Any], seen: float) -> None:
        labels = obj.get("metadata", {}).get("labels") or {}
        execution = labels.get(LABEL_EXECUTION)
        if execution:
            super()._seen({**obj, "metadata": {**obj["metadata"], "name": execution}}, seen)


def run(env: Environment, executions: int = 50, rate: float = 1.0) -> Result:
    result = Result(
        "container_start",
        "Container start on the real node (enqueue / execution recorded -> container running)",
        {"executions": executions, "rate_per_s": rate, "command": "sleep 1"},
    )
    reason = realnode.unavailable_reason() or images.unavailable_reason()
    if reason:
        raise RuntimeError(f"no real node on this machine: {reason}")
    built = images.ensure_images(log, app=False)
    env.k8s.start_real_node(built.archives, built.pause)
    env.start_operator()
    app = env.new_app(
        "start",
        definition_spec={
            "image": built.job,
            "imagePullPolicy": "Never",
            "command": ["sleep", "1"],
            **realnode.placement(),
        },
        queue_spec={"receiveWaitSeconds": 20},
    )
    env.k8s.kubectl(
        "label", "namespace", app.namespace, "pod-security.kubernetes.io/enforce=restricted"
    )
    env.wait_queue_ready(app)
    recorded = env.watch_executions(app.namespace)
    pods = PodWatch(env.k8s, f"/api/v1/namespaces/{app.namespace}/pods")
    pods.start()
    pods.ready.wait(10)
    try:
        warm = env.sqs().send_message(
            QueueUrl=app.queue_url, MessageBody=message_body(app, "hello", {"warm": True})
        )
        pods.wait_phase({execution_name(warm["MessageId"])}, {"Running", "Succeeded"}, 120, "warm")
        sent = env.send_steadily(app, executions, rate)
        names = list(sent)
        # A pod can go Pending -> Succeeded between two events of a 1 s job: Running or later.
        pods.wait_phase(set(names), {"Running", "Succeeded"}, 300, "every container started")
        recorded.wait_phase(set(names), {"Succeeded"}, 300, "every execution Succeeded")
    finally:
        pods.stop()
        recorded.stop()
        env.delete_jobqueue(app)

    def running(name: str) -> float:
        phases = pods.phases[name]
        return min(phases[p] for p in ("Running", "Succeeded") if p in phases)

    from_send = [running(n) - sent[n] for n in names]
    from_execution = [running(n) - recorded.added[n] for n in names]
    from_pod = [running(n) - pods.added[n] for n in names]
    p50, p99 = percentile(from_execution, 50), percentile(from_execution, 99)
    result.add("enqueue -> container running p50", percentile(from_send, 50), "s")
    result.add(
        "enqueue -> container running p99", percentile(from_send, 99), "s",
        goal=f"<= {SLO_P99} s", ok=percentile(from_send, 99) <= SLO_P99,
    )  # fmt: skip
    result.add(
        "execution -> container running p50", p50, "s",
    )  # fmt: skip
    result.add(
        "execution -> container running p99", p99, "s",
        goal=f"<= {SLO_P99} s (Kubernetes' pod startup SLO)", ok=p99 <= SLO_P99,
    )  # fmt: skip
    result.add("execution -> container running max", max(from_execution), "s")
    result.add("pod created -> running p50", percentile(from_pod, 50), "s", note="baseline")
    result.add("pod created -> running p99", percentile(from_pod, 99), "s", note="baseline")
    log(f"container start: p50 {p50:.2f} s, p99 {p99:.2f} s over {executions}")
    return result


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--executions", type=int, default=50)
    parser.add_argument("--rate", type=float, default=1.0, help="messages per second")


if __name__ == "__main__":
    sys.exit(bench_main("container_start", __doc__, arguments, run))
