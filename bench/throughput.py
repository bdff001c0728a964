"""Intake throughput: 1,000 queued messages -> 1,000 JobExecutions and 1,000 Jobs.

The messages are put in SQS first (SendMessageBatch) while no JobQueue names the queue;
then the JobQueue is created and the clock starts at the operator's first ReceiveMessage
that returned messages (timed by moto's server). It stops when a watch has seen the last
JobExecution ("recorded") and the last Job ("created"). The run then waits until every
execution is Succeeded (pods run ``--pod-ms`` on kwok) and stops the operator.

The baseline, in the same run against the same apiserver, is a tight async client
(aiohttp, admin token, ``--concurrency`` connections) creating the same objects
for the same number of messages: one JobExecution and one Job each, built with
``barbeque.services.builders``. Its clock runs from its first request to the last 201.

    python -m bench.throughput --messages 1000 --concurrency 32 [--profile out.speedscope.json]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

from barbeque.api.models import JobDefinition, JobExecution
from barbeque.services import builders
from barbeque.services.naming import execution_name
from bench.cli import bench_main, pod_ms_argument, receive_wait_argument
from bench.env import (
    GROUP_PATH,
    App,
    Environment,
    Result,
    Window,
    baseline_execution,
    log,
    message_body,
    py_spy,
    trace_table,
    wait_until,
)
from bench.memory import finished_status

GOAL_RATIO = 0.5


def run(
    env: Environment,
    messages: int = 1000,
    concurrency: int = 32,
    pod_ms: int = 1000,
    profile: Path | None = None,
    baseline_status: bool = False,
    receive_wait: int = 20,
) -> Result:
    result = Result(
        "throughput",
        f"2. Intake throughput ({messages} queued messages)",
        {
            "messages": messages,
            "baseline_concurrency": concurrency,
            "pod_ms": pod_ms,
            "receiveWaitSeconds": receive_wait,
        },
    )
    spec = {"podAnnotations": {"barbeque.dev/kwok-duration-ms": str(pod_ms)}}
    operator = env.start_operator()

    # -- the operator ---------------------------------------------------------------------
    app = env.new_app("tput", definition_spec=spec, create_queue=False)
    log(f"throughput: queueing {messages} messages")
    sent = env.send_batch(app, [message_body(app, "hello", {"i": i}) for i in range(messages)])
    names = {execution_name(m) for m, _ in sent}
    jobs = env.watch_jobs(app.namespace)
    executions = env.watch_executions(app.namespace)
    try:
        window = Window(env).open()
        with py_spy(operator.pid, profile):
            env.create_jobqueue(app, receiveWaitSeconds=receive_wait)
            timeout = 120 + messages / 2
            executions.wait_names(names, timeout, "every JobExecution")
            jobs.wait_names(names, timeout, "every Job")
        window.close()
        receive = window.aws("sqs").get("ReceiveMessage", {})
        t0 = receive.get("first_with_messages")
        if t0 is None:
            raise RuntimeError("moto saw no ReceiveMessage that returned messages")
        recorded = max(executions.added[n] for n in names) - t0
        created = max(jobs.added[n] for n in names) - t0
        log(f"throughput: operator recorded {messages} in {recorded:.1f} s, Jobs {created:.1f} s")
        executions.wait_phase(names, {"Succeeded"}, 300 + messages, "every execution Succeeded")
        succeeded = max(executions.phases[n]["Succeeded"] for n in names) - t0
    finally:
        jobs.stop()
        executions.stop()
        env.delete_jobqueue(app)
    env.stop_operator()

    # -- the baseline ---------------------------------------------------------------------
    base = env.new_app("base", definition_spec=spec, create_queue=False)
    definition = JobDefinition.model_validate(
        env.k8s.api("GET", f"{GROUP_PATH}/namespaces/{base.namespace}/jobdefinitions/hello")
    )
    log(f"throughput: baseline, {concurrency} connections")
    timing = asyncio.run(_baseline(env, base, definition, messages, concurrency, baseline_status))
    wait_until("the baseline's Jobs to settle", lambda: _jobs_done(env, base, messages), 300)
    # Finished, logs "uploaded": later operators (other scenarios) find nothing to do here.
    asyncio.run(_finish_baseline(env, base, concurrency))
    drain = _sqs_floor(env, base, messages)

    exec_rate, job_rate = messages / recorded, messages / created
    base_exec_rate = messages / timing["executions"]
    base_job_rate = messages / timing["jobs"]
    ratio = job_rate / base_job_rate
    result.add("executions recorded", exec_rate, "/s", baseline=base_exec_rate)
    result.add("Jobs created", job_rate, "/s", baseline=base_job_rate)
    result.add(
        "ratio to baseline (Jobs/s)",
        100 * ratio,
        "%",
        goal=f">= {100 * GOAL_RATIO:.0f} %",
        ok=ratio >= GOAL_RATIO,
    )
    result.add(
        "ratio to baseline (executions/s)", 100 * exec_rate / base_exec_rate, "%", note="recorded"
    )
    result.add("first receive -> last execution", recorded, "s", baseline=timing["executions"])
    result.add("first receive -> last Job", created, "s", baseline=timing["jobs"])
    result.add("first receive -> all Succeeded", succeeded, "s", note=f"pods run {pod_ms} ms")
    if baseline_status:
        result.add(
            "baseline + status patch, Jobs/s",
            messages / timing["jobs_and_status"],
            "/s",
            note="create execution, create Job, PATCH status (the operator's old 3 intake writes)",
        )
    result.add(
        "SQS alone: receive + delete",
        messages / drain,
        "msg/s",
        note="one boto3 loop draining as many messages from moto (no Kubernetes)",
    )
    result.add(
        "SQS ReceiveMessage per message",
        receive.get("count", 0) / messages,
        note=f"{receive.get('messages', 0)} messages in {receive.get('count', 0)} receives",
    )
    result.tables["CPU from JobQueue created to the last Job"] = window.cpu
    traced = trace_table(operator.trace_path)
    if traced:
        result.tables["operator timings in ms (bench.traced_operator, whole run)"] = traced
    result.tables["API requests from JobQueue created to the last Job"] = window.request_rows(
        per=messages
    )
    result.tables["SQS and S3 calls, same window"] = window.aws_rows(per=messages)
    if profile is not None:
        result.notes.append(f"py-spy profile of the operator over the window: {profile}")
    return result


async def _baseline(
    env: Environment,
    app: App,
    definition: JobDefinition,
    messages: int,
    concurrency: int,
    with_status: bool,
) -> dict[str, float]:
    """Create one JobExecution and one Job per message, ``concurrency`` at a time."""
    executions_path = f"{GROUP_PATH}/namespaces/{app.namespace}/jobexecutions"
    jobs_path = f"/apis/batch/v1/namespaces/{app.namespace}/jobs"
    pending = iter(range(messages))
    done = {"executions": 0.0, "jobs": 0.0, "jobs_and_status": 0.0}
    async with env.async_client(concurrency) as client:

        async def worker() -> None:
            for i in pending:
                created = await client.post(executions_path, baseline_execution(app, i))
                done["executions"] = time.time()
                execution = JobExecution.model_validate(created)
                await client.post(jobs_path, builders.build_job(execution, definition))
                done["jobs"] = time.time()
                if with_status:
                    name = execution.metadata.name
                    await client.patch_status(
                        f"{executions_path}/{name}", {"phase": "Pending", "jobName": name}
                    )
                    done["jobs_and_status"] = time.time()

        await client.request("GET", "/version")
        started = time.time()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {k: v - started for k, v in done.items()}


async def _finish_baseline(env: Environment, app: App, concurrency: int) -> None:
    path = f"{GROUP_PATH}/namespaces/{app.namespace}/jobexecutions"
    items = env.k8s.api("GET", path)["items"]
    pending = iter(enumerate(items))
    async with env.async_client(concurrency) as client:

        async def worker() -> None:
            for i, item in pending:
                meta, spec = item["metadata"], item["spec"]
                status = finished_status(meta["name"], app, spec["job"], spec["messageId"], i)
                await client.patch_status(f"{path}/{meta['name']}", status)

        await asyncio.gather(*(worker() for _ in range(concurrency)))


def _sqs_floor(env: Environment, app: App, messages: int) -> float:
    """Seconds one sequential ReceiveMessage(10) + DeleteMessageBatch loop needs for N."""
    env.send_batch(app, [message_body(app, "hello", {"i": i}) for i in range(messages)])
    sqs = env.sqs()
    got = 0
    started = time.monotonic()
    while got < messages:
        received = sqs.receive_message(
            QueueUrl=app.queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
            VisibilityTimeout=60,
            MessageSystemAttributeNames=["SentTimestamp", "ApproximateReceiveCount"],
        ).get("Messages", [])
        if received:
            entries = [
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(received)
            ]
            sqs.delete_message_batch(QueueUrl=app.queue_url, Entries=entries)
        got += len(received)
    return time.monotonic() - started


def _jobs_done(env: Environment, app: App, messages: int) -> bool:
    body: Any = env.k8s.api("GET", f"/apis/batch/v1/namespaces/{app.namespace}/jobs")
    finished = [j for j in body["items"] if (j.get("status") or {}).get("completionTime")]
    return len(finished) >= messages


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32, help="baseline connections")
    pod_ms_argument(parser)
    receive_wait_argument(parser)
    parser.add_argument(
        "--profile", type=Path, help="py-spy record the operator (speedscope JSON) here"
    )
    parser.add_argument(
        "--baseline-status",
        action="store_true",
        help="the baseline also PATCHes a status, as the operator did before 9a4cfd3 (a third "
        "intake write; it makes two now: the execution and the Job)",
    )


if __name__ == "__main__":
    sys.exit(bench_main("throughput", __doc__, arguments, run))
