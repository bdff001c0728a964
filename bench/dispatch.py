"""Dispatch latency: SendMessage returned -> the Kubernetes Job exists.

Messages are sent one at a time at a steady rate to a JobQueue the operator is already
long-polling. For each, the clock starts when SendMessage returns and stops when a watch on
the application's Jobs sees the Job (named after the execution, so after the message id).
``metadata.creationTimestamp`` has one-second resolution, so the watch's own arrival time is
used instead. The same watch on JobExecutions gives "recorded" latency (message ->
JobExecution).

    python -m bench.dispatch --messages 200 --rate 10 --receive-wait 20
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from barbeque.services.naming import execution_name
from bench.cli import bench_main, receive_wait_argument
from bench.env import Environment, Result, Window, log, message_body, percentile

GOAL_P50, GOAL_P99 = 0.5, 2.0


def run(
    env: Environment,
    messages: int = 200,
    rate: float = 10.0,
    receive_wait: int = 20,
    warmup: int = 5,
) -> Result:
    result = Result(
        "dispatch",
        "1. Dispatch latency (SendMessage returned -> Job object created)",
        {"messages": messages, "rate_per_s": rate, "receiveWaitSeconds": receive_wait},
    )
    env.start_operator()
    app = env.new_app("dispatch", queue_spec={"receiveWaitSeconds": receive_wait})
    env.wait_queue_ready(app)
    jobs = env.watch_jobs(app.namespace)
    executions = env.watch_executions(app.namespace)
    try:
        # Warm-up: the first messages pay for connection set-up; not counted.
        warm = {execution_name(m) for m, _ in env.send_batch(app, _bodies(app, warmup, "warm"))}
        jobs.wait_names(warm, 60, "the warm-up Jobs")

        window = Window(env).open()
        start = time.monotonic()
        sent = env.send_steadily(app, messages, rate)
        send_seconds = time.monotonic() - start
        jobs.wait_names(set(sent), 120 + messages / 5, "every Job")
        executions.wait_names(set(sent), 30, "every JobExecution")
        window.close()
        # Not measured: leave nothing unfinished for the next scenario's operator.
        executions.wait_phase(set(sent) | warm, {"Succeeded"}, 120, "every execution Succeeded")
    finally:
        jobs.stop()
        executions.stop()
        env.delete_jobqueue(app)

    to_job = [jobs.added[name] - at for name, at in sent.items()]
    to_execution = [executions.added[name] - at for name, at in sent.items()]
    p50, p99 = percentile(to_job, 50), percentile(to_job, 99)
    result.add("send -> Job p50", p50, "s", goal=f"<= {GOAL_P50} s", ok=p50 <= GOAL_P50)
    result.add("send -> Job p90", percentile(to_job, 90), "s")
    result.add("send -> Job p99", p99, "s", goal=f"<= {GOAL_P99} s", ok=p99 <= GOAL_P99)
    result.add("send -> Job max", max(to_job), "s")
    result.add("send -> JobExecution p50", percentile(to_execution, 50), "s")
    result.add("send -> JobExecution p99", percentile(to_execution, 99), "s")
    result.add(
        "JobExecution -> Job p50",
        percentile([jobs.added[n] - executions.added[n] for n in sent], 50),
        "s",
        note="reconcile queue + create Job",
    )
    result.add("achieved send rate", messages / send_seconds, "msg/s")
    receives = window.aws("sqs").get("ReceiveMessage", {"count": 0})["count"]
    result.add(
        "SQS ReceiveMessage per message",
        receives / messages,
        note="counted by moto's server",
    )
    if env.operator is not None:
        own = env.operator.metrics()
        count = own.get("barbeque_enqueue_to_start_seconds_count", 0)
        if count:
            mean = own.get("barbeque_enqueue_to_start_seconds_sum", 0) / count
            result.add(
                "operator's own enqueue_to_start mean",
                mean,
                "s",
                note="SentTimestamp (ms) -> Job created, all messages so far",
            )
    result.tables["CPU over the window"] = window.cpu
    result.tables["SQS and S3 calls over the window"] = window.aws_rows(per=messages)
    log(f"dispatch: p50 {p50:.3f} s, p99 {p99:.3f} s")
    return result


def _bodies(app: Any, count: int, tag: str) -> list[str]:
    return [message_body(app, "hello", {tag: i}) for i in range(count)]


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--rate", type=float, default=10.0, help="messages per second")
    receive_wait_argument(parser)


if __name__ == "__main__":
    sys.exit(bench_main("dispatch", __doc__, arguments, run))
