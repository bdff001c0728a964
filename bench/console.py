"""Console execution list with 10,000 executions, through the running dashboard.

The cluster is topped up to ``--executions`` finished JobExecutions (as bench.memory does),
then ``python -m barbeque_dashboard`` runs as its own process (admin kubeconfig, public
reads, live refresh off), fills its watch-backed cache, and the execution list is timed
over real HTTP: the console page (``/job_executions``, HTML, first page) and the Web API
list (``/v1/job_executions``, JSON, 50 per page), ``--repeat`` sequential requests each.
``python -m bench.console_pages`` times the same pages from an in-memory cache with
no apiserver behind it.

    python -m bench.console --executions 10000 --repeat 30
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
from tests.cluster.harness import free_port

from bench.cli import bench_main
from bench.env import (
    BUCKET,
    CREDENTIALS,
    OPERATOR_NAMESPACE,
    REGION,
    Environment,
    Result,
    log,
    memory_kb,
    pdeathsig,
    percentile,
    stop_process,
    wait_until,
)
from bench.memory import ensure_executions

GOAL_MS = 200.0
PAGES = {
    "console list (/job_executions)": "/job_executions",
    "console list, failed only": "/job_executions?status=failed",
    "console list, page 100": "/job_executions?page=100",
    "API list (/v1/job_executions, 50)": "/v1/job_executions",
}


def start_dashboard(env: Environment) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    environ = {
        **os.environ,
        **CREDENTIALS,
        "KUBECONFIG": str(env.k8s.kubeconfig),
        "BARBEQUE_NAMESPACE": OPERATOR_NAMESPACE,
        "BARBEQUE_AWS_REGION": REGION,
        "BARBEQUE_SQS_ENDPOINT_URL": env.moto_url,
        "BARBEQUE_S3_ENDPOINT_URL": env.moto_url,
        "BARBEQUE_S3_BUCKET": BUCKET,
        "BARBEQUE_DASHBOARD_HOST": "127.0.0.1",
        "BARBEQUE_DASHBOARD_PORT": str(port),
        "BARBEQUE_PUBLIC_READS": "true",
        "BARBEQUE_DASHBOARD_REFRESH_SECONDS": "0",
    }
    environ.pop("KUBERNETES_SERVICE_HOST", None)
    if env.pythonpath:
        environ["PYTHONPATH"] = os.pathsep.join([*env.pythonpath, environ.get("PYTHONPATH", "")])
    log_file = (env.scratch / "dashboard.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "barbeque_dashboard"],
        env=environ,
        cwd=env.scratch,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        preexec_fn=pdeathsig,
    )
    return process, f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def running_dashboard(env: Environment, total: int) -> Iterator[tuple[Dashboard, float]]:
    """The dashboard as its own process once its cache holds ``total`` executions, with the
    seconds from its start to then; stopped (by pid) on leaving."""
    process, url = start_dashboard(env)
    try:
        started = time.monotonic()
        with httpx.Client(base_url=url, timeout=30) as client:

            def ready() -> bool:
                if process.poll() is not None:
                    raise RuntimeError(f"the dashboard exited; see {env.scratch}/dashboard.log")
                try:
                    if client.get("/readyz").status_code != 200:
                        return False
                    listed = client.get("/v1/job_executions", params={"per_page": 1})
                except httpx.HTTPError:
                    return False
                return bool(listed.status_code == 200 and listed.json()["total"] >= total)

            wait_until(f"the dashboard to cache {total} executions", ready, 180 + total / 200)
            synced = time.monotonic() - started
            log(f"console: dashboard cached {total} executions in {synced:.1f} s")
            client.get("/job_executions").raise_for_status()  # templates compiled
            yield Dashboard(process, client), synced
    finally:
        stop_process(process, grace=15)


@dataclass
class Dashboard:
    process: subprocess.Popen[bytes]
    client: httpx.Client

    def time(self, path: str, repeat: int) -> list[float]:
        """Milliseconds of ``repeat`` sequential GETs of ``path``."""
        timings = []
        for _ in range(repeat):
            began = time.perf_counter()
            response = self.client.get(path)
            timings.append((time.perf_counter() - began) * 1000)
            response.raise_for_status()
        return timings

    def rss_mb(self) -> float:
        return memory_kb(self.process.pid).get("VmRSS", 0) / 1024


def run(env: Environment, executions: int = 10_000, repeat: int = 30) -> Result:
    result = Result(
        "console",
        f"5. Console execution list with {executions} executions",
        {"executions": executions, "repeat": repeat},
    )
    _before, total, _seconds = ensure_executions(env, executions, 10, 32)
    with running_dashboard(env, total) as (dashboard, synced):
        timings = {name: dashboard.time(path, repeat) for name, path in PAGES.items()}
        rss = dashboard.rss_mb()

    for name, values in timings.items():
        median = statistics.median(values)
        figure = result.add(f"{name} median", median, "ms")
        if name == next(iter(PAGES)):
            figure.goal, figure.ok = f"<= {GOAL_MS:.0f} ms", median <= GOAL_MS
        result.add(f"{name} p95", percentile(values, 95), "ms")
    result.add("dashboard start -> cache synced", synced, "s")
    result.add("dashboard VmRSS", rss, "MB")
    return result


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--executions", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=30)


if __name__ == "__main__":
    sys.exit(bench_main("console", __doc__, arguments, run))
