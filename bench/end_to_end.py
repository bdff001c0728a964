"""End to end: 1,000 queued messages -> 1,000 executions Succeeded with their logs in S3.

For each control-plane profile (kube-controller-manager's client limits and Job workers,
``--profile``), in one run on one control plane:

- **operator**: the messages are put in SQS while no JobQueue names the queue; the JobQueue
  is created, and the clock runs from the operator's first ReceiveMessage that returned
  messages (timed by moto's server) until a watch has seen the last execution both
  ``Succeeded`` and ``LogsUploaded``. Then the S3 objects under the application's prefix
  are counted (message.json, stdout.txt, execution.json: 3 per execution).
- **baseline**: the operator stopped, a tight client (aiohttp, admin token, 32
  connections) creates the same number of Jobs, built like the operator's
  (``barbeque.services.builders``, no owner and no barbeque labels), and a watch waits for
  every Job's ``Complete``; the clock runs from its first request to the last Complete.

Pods run ``--pod-ms`` on kwok nodes. The Job controller creates every pod and writes every
Job's status, so its client limits (``--kube-api-qps`` 20, ``--kube-api-burst`` 30 and
``--concurrent-job-syncs`` 5 upstream) bound both runs; ``tuned`` raises them.

    python -m bench.end_to_end --messages 1000 --profile default --profile tuned
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
    BUCKET,
    GROUP_PATH,
    App,
    Environment,
    Result,
    Window,
    baseline_execution,
    log,
    message_body,
    py_spy,
)

GOAL_RATIO = 0.8
# kube-controller-manager flags of each profile (the test cluster's own are qps 100/200).
PROFILES: dict[str, dict[str, str]] = {
    "default": {
        "--kube-api-qps": "20",
        "--kube-api-burst": "30",
        "--concurrent-job-syncs": "5",
    },
    "tuned": {
        "--kube-api-qps": "200",
        "--kube-api-burst": "400",
        "--concurrent-job-syncs": "50",
    },
}
BASELINE_LABEL = "barbeque-bench/baseline"


def _spec(pod_ms: int) -> dict[str, Any]:
    return {"podAnnotations": {"barbeque.dev/kwok-duration-ms": str(pod_ms)}}


def run_operator(
    env: Environment, messages: int, pod_ms: int, receive_wait: int, spy: Path | None = None
) -> tuple[dict[str, float], Window]:
    """Seconds from the first receive to the last execution Succeeded with logs in S3, and
    the window (CPU of every process over it); ``spy``: py-spy the operator into it."""
    operator = env.start_operator()
    app = env.new_app("e2e", definition_spec=_spec(pod_ms), create_queue=False)
    sent = env.send_batch(app, [message_body(app, "hello", {"i": i}) for i in range(messages)])
    names = {execution_name(m) for m, _ in sent}
    executions = env.watch_executions(app.namespace)
    try:
        with py_spy(operator.pid, spy):
            window = Window(env).open()
            env.create_jobqueue(app, receiveWaitSeconds=receive_wait)
            executions.wait_phase(names, {"Succeeded"}, 300 + messages, "every execution Succeeded")
            executions.wait_phase(names, {"LogsUploaded"}, 60, "every execution's logs in S3")
            window.close()
    finally:
        executions.stop()
        env.delete_jobqueue(app)
        env.stop_operator()
    t0 = window.aws("sqs").get("ReceiveMessage", {}).get("first_with_messages")
    if t0 is None:
        raise RuntimeError("moto saw no ReceiveMessage that returned messages")
    done = max(
        max(executions.phases[n]["Succeeded"], executions.phases[n]["LogsUploaded"]) for n in names
    )
    objects = _count_objects(env, f"{app.namespace}/")
    return {"seconds": done - t0, "s3_objects": objects}, window


def run_baseline(env: Environment, messages: int, pod_ms: int, concurrency: int = 32) -> float:
    """Seconds from the tight client's first create to the last Job Complete."""
    app = env.new_app("e2eb", definition_spec=_spec(pod_ms), create_queue=False)
    definition = JobDefinition.model_validate(
        env.k8s.api("GET", f"{GROUP_PATH}/namespaces/{app.namespace}/jobdefinitions/hello")
    )
    bodies = [_baseline_job(app, definition, i) for i in range(messages)]
    names = {b["metadata"]["name"] for b in bodies}
    jobs = env.watch_jobs(app.namespace)
    try:
        started = asyncio.run(_create(env, app, bodies, concurrency))
        jobs.wait_phase(names, {"Complete"}, 300 + messages, "every baseline Job Complete")
    finally:
        jobs.stop()
    return max(jobs.phases[n]["Complete"] for n in names) - started


def _baseline_job(app: App, definition: JobDefinition, i: int) -> dict[str, Any]:
    execution = JobExecution.model_validate(baseline_execution(app, i))
    job = builders.build_job(execution, definition)
    # Not the operator's: no owner to wait for, no label its watches select.
    del job["metadata"]["ownerReferences"]
    job["metadata"]["labels"] = {BASELINE_LABEL: "true"}
    job["spec"]["template"]["metadata"]["labels"] = {BASELINE_LABEL: "true"}
    return job


async def _create(
    env: Environment, app: App, bodies: list[dict[str, Any]], concurrency: int
) -> float:
    path = f"/apis/batch/v1/namespaces/{app.namespace}/jobs"
    pending = iter(bodies)
    async with env.async_client(concurrency) as client:
        await client.request("GET", "/version")
        started = time.time()

        async def worker() -> None:
            for body in pending:
                await client.post(path, body)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return started


def _count_objects(env: Environment, prefix: str) -> int:
    paginator = env.s3().get_paginator("list_objects_v2")
    return sum(page.get("KeyCount", 0) for page in paginator.paginate(Bucket=BUCKET, Prefix=prefix))


def run(
    env: Environment,
    messages: int = 1000,
    profiles: tuple[str, ...] = ("default", "tuned"),
    pod_ms: int = 1000,
    receive_wait: int = 20,
    spy: Path | None = None,
) -> Result:
    result = Result(
        "end_to_end",
        f"End to end: {messages} queued messages -> Succeeded with logs in S3",
        {"messages": messages, "pod_ms": pod_ms, "profiles": "/".join(profiles)},
    )
    rows = [["kube-controller-manager", "operator s", "baseline s", "operator /s", "baseline /s"]]
    for profile in profiles:
        flags = PROFILES[profile]
        log(f"end_to_end: kube-controller-manager {profile}: {flags}")
        env.k8s.restart_controller_manager(flags)
        spied = spy.with_name(f"{spy.stem}-{profile}{spy.suffix}") if spy else None
        ours, window = run_operator(env, messages, pod_ms, receive_wait, spied)
        result.tables[f"{profile}: CPU over the operator's window"] = window.cpu
        result.tables[f"{profile}: API requests over the operator's window"] = window.request_rows(
            per=messages
        )
        base = run_baseline(env, messages, pod_ms)
        rate, base_rate = messages / ours["seconds"], messages / base
        ratio = rate / base_rate
        result.add(
            f"{profile}: executions finished, logs in S3",
            rate,
            "/s",
            baseline=base_rate,
            goal=f">= {100 * GOAL_RATIO:.0f} % of baseline",
            ok=ratio >= GOAL_RATIO,
            note=f"{100 * ratio:.0f} % of the baseline",
        )
        expected = 3 * messages
        result.add(
            f"{profile}: S3 objects",
            ours["s3_objects"],
            goal=f"{expected}",
            ok=ours["s3_objects"] >= expected,
        )
        rows.append(
            [
                f"{profile} ({' '.join(f'{k}={v}' for k, v in flags.items())})",
                f"{ours['seconds']:.1f}",
                f"{base:.1f}",
                f"{rate:.1f}",
                f"{base_rate:.1f}",
            ]
        )
    env.k8s.restart_controller_manager({})
    result.tables["first receive (baseline: first create) -> last finished"] = rows
    return result


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument(
        "--profile",
        action="append",
        choices=sorted(PROFILES),
        help="kube-controller-manager profile (repeatable; default: default and tuned)",
    )
    pod_ms_argument(parser)
    receive_wait_argument(parser)
    parser.add_argument(
        "--spy",
        type=Path,
        metavar="PATH",
        help="py-spy the operator over each profile's window (speedscope JSON, PATH-<profile>)",
    )


def scenario(
    env: Environment,
    *,
    messages: int,
    profile: list[str] | None,
    pod_ms: int,
    receive_wait: int,
    spy: Path | None,
) -> Result:
    """run() with ``--profile`` unset meaning both profiles."""
    profiles = tuple(profile or ("default", "tuned"))
    return run(
        env, messages=messages, profiles=profiles, pod_ms=pod_ms, receive_wait=receive_wait, spy=spy
    )


if __name__ == "__main__":
    sys.exit(bench_main("end_to_end", __doc__, arguments, scenario))
