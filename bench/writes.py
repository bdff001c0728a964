"""Kubernetes API writes per execution, message to Succeeded, and SQS calls per message.

Counted from the servers' side, not from the operator's own report:

- Kubernetes: the apiserver's ``apiserver_request_total`` (by verb, group, resource,
  subresource), scraped from its ``/metrics`` with the admin token before the messages are
  sent and after every execution is Succeeded (plus a few quiet seconds for trailing
  writes). The operator's writes are the ones to ``jobexecutions`` (and its status),
  ``jobqueues/status``, and POST/DELETE of ``jobs``: nothing else writes those here. Writes
  by the Job controller, the scheduler and kwok (pods, pod status, jobs/status, events,
  leases) are listed apart.
- SQS and S3: moto's server counts every call it answers, by client (the benchmark's own
  boto3 carries ``barbeque-bench`` in its User-Agent; everything else is the operator).

    python -m bench.writes --messages 50
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter

from barbeque.services.builders import EVENT_CONTROLLER
from barbeque.services.naming import execution_name
from bench.cli import bench_main, receive_wait_argument
from bench.env import (
    WRITE_VERBS,
    Environment,
    RequestKey,
    Result,
    Window,
    log,
    message_body,
    resource_name,
)

GOAL_WRITES = 6.0
OPERATOR_GROUP = "barbeque.dev"


def operator_writes(requests: Counter[RequestKey]) -> Counter[RequestKey]:
    """Writes only the operator makes: its own resources, and creating/deleting Jobs."""
    return Counter(
        {
            key: count
            for key, count in requests.items()
            if key[0] in WRITE_VERBS
            and (
                key[1] == OPERATOR_GROUP
                or (key[1] == "batch" and key[2] == "jobs" and key[3] == "" and key[0] != "PUT")
            )
        }
    )


def run(env: Environment, messages: int = 50, quiet: float = 3.0, receive_wait: int = 20) -> Result:
    result = Result(
        "writes",
        f"3. API writes per execution and SQS calls per message ({messages} messages)",
        {"messages": messages, "quiet_seconds_after": quiet, "receiveWaitSeconds": receive_wait},
    )
    env.start_operator()
    app = env.new_app("writes", queue_spec={"receiveWaitSeconds": receive_wait})
    env.wait_queue_ready(app)
    executions = env.watch_executions(app.namespace)
    try:
        time.sleep(1.0)  # let the queue's first status write land before counting
        window = Window(env).open()
        sent = env.send_batch(app, [message_body(app, "hello", {"i": i}) for i in range(messages)])
        names = {execution_name(m) for m, _ in sent}
        executions.wait_phase(names, {"Succeeded"}, 120 + messages, "every execution Succeeded")
        time.sleep(quiet)
        window.close()
    finally:
        executions.stop()
        env.delete_jobqueue(app)

    # Events: the Job controller and the scheduler write them too, so the operator's are
    # counted by their reportingController, not from apiserver_request_total.
    events = json.loads(
        env.k8s.kubectl("get", "events.events.k8s.io", "-n", app.namespace, "-o", "json").stdout
    )["items"]
    ours_events = sum(e.get("reportingController") == EVENT_CONTROLLER for e in events)
    ours = operator_writes(window.requests)
    total = sum(ours.values())
    per_execution = sum(v for k, v in ours.items() if k[2] in ("jobexecutions", "jobs"))
    result.add(
        "operator API writes per execution",
        per_execution / messages,
        goal=f"<= {GOAL_WRITES:.0f}",
        ok=per_execution / messages <= GOAL_WRITES,
        note="POST/PATCH jobexecutions(+/status), POST jobs; from apiserver_request_total",
    )
    result.add("operator API writes, all", total / messages, note="also JobQueue status")
    result.add(
        "operator Events per execution",
        ours_events / messages,
        goal="0 on the happy path",
        ok=ours_events == 0,
        note=f"reportingController {EVENT_CONTROLLER}",
    )
    reads = sum(
        v
        for k, v in window.requests.items()
        if k[0] in ("GET", "CONNECT") and k[2] == "pods" and k[3] == "log"
    )
    result.add("pod log reads per execution", reads / messages)
    sqs = window.aws("sqs")
    sqs_total = sum(c["count"] for c in sqs.values())
    result.add(
        "operator SQS calls per message",
        sqs_total / messages,
        note=", ".join(f"{a} {c['count']}" for a, c in sorted(sqs.items())),
    )
    s3 = window.aws("s3")
    result.add(
        "operator S3 calls per execution",
        sum(c["count"] for c in s3.values()) / messages,
        note=", ".join(f"{a} {c['count']}" for a, c in sorted(s3.items())),
    )
    rows = [["verb", "resource", "requests", "per execution", "who"]]
    for key, count in sorted(window.requests.items(), key=lambda kv: (-kv[1], kv[0])):
        if key[0] not in WRITE_VERBS:
            continue
        who = "operator" if key in ours else "controllers, scheduler, kwok"
        rows.append([key[0], resource_name(key), str(count), f"{count / messages:.2f}", who])
    result.tables["API writes (apiserver_request_total delta)"] = rows
    result.tables["API reads (apiserver_request_total delta, WATCH excluded)"] = [
        ["verb", "resource", "requests"],
        *[r[:3] for r in window.request_rows()[1:] if r[0] not in WRITE_VERBS and r[0] != "WATCH"],
    ]
    result.tables["SQS and S3 calls (moto's server)"] = window.aws_rows(per=messages)
    log(f"writes: {per_execution / messages:.2f} operator writes per execution")
    return result


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--messages", type=int, default=50)
    receive_wait_argument(parser)


if __name__ == "__main__":
    sys.exit(bench_main("writes", __doc__, arguments, run))
