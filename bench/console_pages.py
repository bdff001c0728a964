"""``python -m bench.console_pages``: how fast the console renders 10,000 executions.

Fills the cache with N executions (default 10,000) over a few job definitions, serves
the real application with uvicorn on 127.0.0.1, and times real HTTP requests to the
execution list and the other heavy pages. "warm" requests find the cache unchanged since
the previous one; "changed" requests follow a watch event, so the sorted indexes are
rebuilt first (the worst case while executions are moving). Exits 1 when the median of
the execution list exceeds the budget (200 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import uvicorn
from tests.cluster.harness import free_port
from tests.support.fakes import FakeS3, FakeSqs
from tests.support.webapi import web_app

from barbeque.api.models import API_VERSION
from barbeque_dashboard.cache import Cache
from barbeque_dashboard.services import Backend
from bench.env import memory_kb

PHASES = ("Succeeded",) * 7 + ("Failed", "Running", "Pending", "Error", "Scheduled")
JOBS = ("send-mail", "resize-image", "sync-feed", "bill")


def _execution(i: int, now: datetime) -> dict[str, Any]:
    job = JOBS[i % len(JOBS)]
    phase = PHASES[i % len(PHASES)]
    created = now - timedelta(seconds=30 * i)
    status: dict[str, Any] = {"phase": phase}
    if phase in ("Succeeded", "Failed", "Running"):
        status["startedAt"] = (created + timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    if phase in ("Succeeded", "Failed"):
        status["finishedAt"] = (created + timedelta(seconds=40)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": API_VERSION,
        "kind": "JobExecution",
        "metadata": {
            "name": f"bench-{i:06d}",
            "namespace": "bench",
            "resourceVersion": str(i + 10),
            "creationTimestamp": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
        "spec": {
            "application": "bench",
            "job": job,
            "queue": "default",
            "messageId": f"bench-{i:06d}",
            "message": {"n": i, "text": "x" * 40},
        },
        "status": status,
    }


PAGES = {
    "execution list": "/job_executions",
    "execution list, page 500": "/job_executions?page=500",
    "execution list, failed": "/job_executions?status=failed",
    "job definition (15/page)": "/applications/bench/job_definitions/send-mail",
    "failures": "/failures",
    "monitor": "/monitors",
    "statistics (3 days)": "/applications/bench/job_definitions/send-mail/statistics",
    "API list (50)": "/v1/job_executions",
}


def build_cache(count: int) -> Cache:
    now = datetime.now(UTC)
    cache = Cache()
    cache.replace(
        "jobqueues",
        [{"apiVersion": API_VERSION, "kind": "JobQueue", "metadata": {"name": "default"}}],
    )
    cache.replace(
        "jobdefinitions",
        [
            {
                "apiVersion": API_VERSION,
                "kind": "JobDefinition",
                "metadata": {"name": job, "namespace": "bench"},
                "spec": {"image": "busybox", "queue": "default"},
            }
            for job in JOBS
        ],
    )
    cache.replace("jobexecutions", [_execution(i, now) for i in range(count)])
    return cache


def _serve(cache: Cache) -> tuple[uvicorn.Server, threading.Thread, str]:
    app = web_app(
        Backend(cache, FakeSqs(), FakeS3(), None), public_reads=True, dashboard_refresh_seconds=0
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    return server, thread, f"http://127.0.0.1:{port}"


def _time(client: httpx.Client, path: str, repeat: int, before: Callable[[], None]) -> list[float]:
    timings = []
    for _ in range(repeat):
        before()
        started = time.perf_counter()
        response = client.get(path)
        timings.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
    return timings


def run(count: int = 10_000, repeat: int = 15) -> dict[str, dict[str, float]]:
    """Median and p95 milliseconds per page, warm and after a change."""
    started = time.perf_counter()
    cache = build_cache(count)
    load_ms = (time.perf_counter() - started) * 1000
    server, thread, url = _serve(cache)
    touched = iter(range(10**9))

    def touch() -> None:
        i = next(touched) % count
        body = _execution(i, datetime.now(UTC))
        body["metadata"]["resourceVersion"] = str(10**7 + next(touched))
        cache.apply("jobexecutions", "MODIFIED", body)

    gc.collect()
    memory = memory_kb(os.getpid())
    results: dict[str, dict[str, float]] = {
        "cache load": {"ms": load_ms},
        "memory": {
            "rss_mb": memory.get("VmRSS", 0) / 1024,
            "hwm_mb": memory.get("VmHWM", 0) / 1024,
        },
    }
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            client.get("/job_executions").raise_for_status()  # first render compiles templates
            for name, path in PAGES.items():
                warm = _time(client, path, repeat, lambda: None)
                changed = _time(client, path, max(3, repeat // 3), touch)
                results[name] = {
                    "warm_median": statistics.median(warm),
                    "warm_p95": sorted(warm)[int(0.95 * (len(warm) - 1))],
                    "changed_median": statistics.median(changed),
                }
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.console_pages")
    parser.add_argument("--executions", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--budget-ms", type=float, default=200.0)
    args = parser.parse_args(argv)
    results = run(args.executions, args.repeat)
    out = sys.stdout
    load = results["cache load"]["ms"]
    memory = results["memory"]
    out.write(
        f"{args.executions} executions in the cache (loaded in {load:.0f} ms); this process: "
        f"VmRSS {memory['rss_mb']:.0f} MB, VmHWM {memory['hwm_mb']:.0f} MB\n"
    )
    out.write(f"{'page':32} {'median':>9} {'p95':>9} {'after change':>13}\n")
    for name, figures in results.items():
        if name in ("cache load", "memory"):
            continue
        out.write(
            f"{name:32} {figures['warm_median']:7.1f}ms {figures['warm_p95']:7.1f}ms "
            f"{figures['changed_median']:11.1f}ms\n"
        )
    figure = results["execution list"]["warm_median"]
    verdict = "within" if figure <= args.budget_ms else "OVER"
    out.write(
        f"execution list of {args.executions} executions: {figure:.1f} ms median "
        f"({verdict} the {args.budget_ms:.0f} ms budget)\n"
    )
    return 0 if figure <= args.budget_ms else 1


if __name__ == "__main__":
    sys.exit(main())
