"""Operator memory with 10,000 JobExecutions retained.

Finished (Succeeded, logs uploaded) JobExecutions are created straight through the API by
an async client (POST, then PATCH of the status subresource) until the cluster holds
``--executions`` of them, spread over ``--definitions`` JobDefinitions. The operator is
started before (with what the cluster held) and again after, and each time, once it has
primed its store and gone quiet, its VmRSS and VmHWM are read from /proc/<pid>/status.

    python -m bench.memory --executions 10000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from barbeque.services import builders
from barbeque.services.naming import execution_name
from bench.cli import bench_main
from bench.env import BUCKET, GROUP_PATH, App, BenchOperator, Environment, Result, log, wait_until

GOAL_MB = 150.0


def count_executions(env: Environment) -> int:
    total, token = 0, ""
    while True:
        query = "?limit=500" + (f"&continue={token}" if token else "")
        page: Any = env.k8s.api("GET", f"{GROUP_PATH}/jobexecutions{query}")
        total += len(page["items"])
        token = (page.get("metadata") or {}).get("continue") or ""
        if not token:
            return total


def finished_status(name: str, app: App, job: str, message_id: str, i: int) -> dict[str, Any]:
    """What the reconciler writes for a Succeeded execution with its logs in S3."""
    finished = datetime.now(UTC) - timedelta(seconds=30 * i)
    started = finished - timedelta(seconds=42)
    prefix = f"{app.namespace}/{job}/{message_id}/"

    def condition(type_: str, reason: str, message: str) -> dict[str, Any]:
        return {
            "type": type_,
            "status": "True",
            "reason": reason,
            "message": message,
            "lastTransitionTime": finished.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "observedGeneration": 1,
        }

    return {
        "phase": "Succeeded",
        "reason": "Completed",
        "message": "",
        "jobName": name,
        "podName": f"{name}-x7k2q",
        "exitCode": 0,
        "startedAt": started.isoformat(),
        "finishedAt": finished.isoformat(),
        "duration": "42s",
        "logs": {
            "bucket": BUCKET,
            "prefix": prefix,
            "url": f"s3://{BUCKET}/{prefix}",
            "uploaded": True,
        },
        "conditions": [
            condition("Finished", "Completed", ""),
            condition("LogsUploaded", "Uploaded", f"s3://{BUCKET}/{prefix}"),
        ],
    }


async def create_finished(env: Environment, app: App, count: int, concurrency: int = 32) -> float:
    """Create ``count`` Succeeded executions in ``app``; returns the seconds it took."""
    path = f"{GROUP_PATH}/namespaces/{app.namespace}/jobexecutions"
    pending = iter(range(count))
    started = time.monotonic()
    async with env.async_client(concurrency) as client:

        async def worker() -> None:
            for i in pending:
                message_id = str(uuid.uuid4())
                name = execution_name(message_id)
                job = app.definitions[i % len(app.definitions)]
                body = builders.build_execution(
                    name=name,
                    namespace=app.namespace,
                    application=app.namespace,
                    job=job,
                    queue=app.queue,
                    message_id=message_id,
                    message={"user_id": i, "text": "x" * 40},
                    sent_timestamp=int(time.time() * 1000),
                )
                await client.post(path, body)
                await client.patch_status(
                    f"{path}/{name}", finished_status(name, app, job, message_id, i)
                )
                if i and i % 2000 == 0:
                    log(f"memory: {i} executions created")

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.monotonic() - started


def settle(operator: BenchOperator, timeout: float = 180.0) -> float:
    """Wait until the operator used < 2 % of a core for 3 s; returns the seconds waited."""
    started = time.monotonic()
    last = operator.cpu()
    while time.monotonic() - started < timeout:
        time.sleep(3.0)
        now = operator.cpu()
        if now - last < 0.06:
            break
        last = now
    return time.monotonic() - started


def measure(env: Environment, tracemalloc: Path | None = None) -> dict[str, Any]:
    if tracemalloc is not None:
        operator = env.start_operator(launcher=True, BARBEQUE_BENCH_TRACEMALLOC=str(tracemalloc))
    else:
        operator = env.start_operator()
    primed = time.monotonic() - operator.started_at
    at_start = operator.memory()
    waited = settle(operator)
    settled = operator.memory()
    if tracemalloc is not None:
        os.kill(operator.pid, signal.SIGUSR1)
        wait_until("the tracemalloc report", tracemalloc.exists, 120)
    return {
        "primed_s": primed,
        "settle_s": waited,
        "rss_started_mb": at_start.get("VmRSS", 0) / 1024,
        "rss_mb": settled.get("VmRSS", 0) / 1024,
        "hwm_mb": settled.get("VmHWM", 0) / 1024,
    }


def ensure_executions(
    env: Environment, executions: int, definitions: int, concurrency: int
) -> tuple[int, int, float]:
    """Top the cluster up to ``executions``; returns (before, after, seconds creating)."""
    before = count_executions(env)
    missing = max(0, executions - before)
    seconds = 0.0
    if missing:
        names = tuple(f"job-{i}" for i in range(definitions))
        app = env.new_app("history", definitions=names, create_queue=False)
        log(f"memory: creating {missing} finished executions ({concurrency} connections)")
        seconds = asyncio.run(create_finished(env, app, missing, concurrency))
        log(f"memory: created {missing} in {seconds:.0f} s ({2 * missing / seconds:.0f} req/s)")
    return before, count_executions(env), seconds


def run(
    env: Environment,
    executions: int = 10_000,
    definitions: int = 10,
    concurrency: int = 32,
    tracemalloc: bool = False,
) -> Result:
    result = Result(
        "memory",
        f"4. Operator memory with {executions} JobExecutions retained",
        {"executions": executions, "definitions": definitions},
    )
    idle = measure(env)
    env.stop_operator()
    before, after, seconds = ensure_executions(env, executions, definitions, concurrency)
    loaded = measure(env)
    env.stop_operator()
    if tracemalloc:
        report = env.scratch / "tracemalloc.txt"
        measure(env, report)
        env.stop_operator()
        result.tables["tracemalloc (a separate run: RSS under tracemalloc is not comparable)"] = [
            ["allocations"],
            *[[line] for line in report.read_text().splitlines() if line.strip()],
        ]
    rss = loaded["rss_mb"]
    result.add(
        f"VmRSS with {after} executions",
        rss,
        "MB",
        baseline=idle["rss_mb"],
        goal=f"<= {GOAL_MB:.0f} MB",
        ok=rss <= GOAL_MB,
        note=f"baseline: same operator with {before} executions",
    )
    result.add(f"VmHWM with {after} executions", loaded["hwm_mb"], "MB", baseline=idle["hwm_mb"])
    result.add("VmRSS right after priming", loaded["rss_started_mb"], "MB")
    if after > before:
        per = (rss - idle["rss_mb"]) * 1024 / (after - before)
        result.add("RSS per retained execution", per, "KB")
    result.add("start -> store primed", loaded["primed_s"], "s", baseline=idle["primed_s"])
    result.add("primed -> quiet (CPU < 2 %)", loaded["settle_s"], "s")
    if seconds:
        result.notes.append(
            f"{after - before} executions created in {seconds:.0f} s "
            f"({2 * (after - before) / seconds:.0f} API requests/s, POST + PATCH status)"
        )
    return result


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--executions", type=int, default=10_000)
    parser.add_argument("--definitions", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--tracemalloc",
        action="store_true",
        help="a third operator start under tracemalloc, reporting the biggest allocations",
    )


if __name__ == "__main__":
    sys.exit(bench_main("memory", __doc__, arguments, run))
