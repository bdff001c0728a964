"""Growth: what 1,000 / 10,000 / 100,000 retained executions cost the operator and console.

For each size, smallest first, the cluster is topped up with finished JobExecutions (as
bench.memory makes them: Succeeded, logs uploaded), then:

- the operator is started; start -> store primed, and VmRSS once it is quiet;
- the dashboard is started as its own process; start -> its cache holds them all, VmRSS,
  the console's execution list (``/job_executions``) and the Web API's status lookup
  (``GET /v1/job_executions/:message_id`` of executions picked across the history),
  ``--repeat`` sequential requests each, median and p95;
- etcd's database file size.

Bytes per execution are the growth from one size to the next divided by the executions
added. The same-run baseline is the first (smallest) row.
The 100,000 row takes ~25 min to create on two cores and is run only with ``--large``.

    python -m bench.growth                 # 1,000 and 10,000
    python -m bench.growth --large         # and 100,000
    python -m bench.growth --sizes 1000 5000
"""

from __future__ import annotations

import argparse
import itertools
import random
import statistics
import sys
from pathlib import Path
from typing import Any

from bench.cli import bench_main
from bench.console import running_dashboard
from bench.env import GROUP_PATH, Environment, Result, log, percentile
from bench.memory import ensure_executions, measure

SIZES = (1_000, 10_000)
LARGE = 100_000
GOALS_AT_LARGE = {"operator_rss": 500.0, "console_rss": 500.0, "primed": 30.0, "list_p95": 200.0}


def etcd_db_bytes(env: Environment) -> int:
    """Size of etcd's bbolt file (pages in use and free: what the disk holds)."""
    db = Path(env.k8s.workdir) / "etcd" / "member" / "snap" / "db"
    return db.stat().st_size if db.exists() else 0


def sample_message_ids(env: Environment, count: int) -> list[str]:
    """Message ids of executions spread over the history (pages of 500, a few from each)."""
    ids: list[str] = []
    token = ""
    while True:
        query = "?limit=500" + (f"&continue={token}" if token else "")
        page: Any = env.k8s.api("GET", f"{GROUP_PATH}/jobexecutions{query}")
        items = page["items"]
        ids += [i["spec"]["messageId"] for i in random.sample(items, min(len(items), 5))]
        token = (page.get("metadata") or {}).get("continue") or ""
        if not token:
            break
    random.shuffle(ids)
    return ids[:count]


def measure_size(env: Environment, size: int, repeat: int) -> dict[str, float]:
    _before, total, created_s = ensure_executions(env, size, 10, 32)
    row: dict[str, float] = {"executions": total, "created_s": created_s}
    operator = measure(env)
    env.stop_operator()
    row.update(operator_primed_s=operator["primed_s"], operator_rss_mb=operator["rss_mb"])
    ids = sample_message_ids(env, repeat)
    with running_dashboard(env, total) as (dashboard, synced):
        listing = dashboard.time("/job_executions", repeat)
        lookups: list[float] = []
        for message_id in ids:
            lookups += dashboard.time(f"/v1/job_executions/{message_id}", 1)
        row.update(
            console_synced_s=synced,
            console_rss_mb=dashboard.rss_mb(),
            list_median_ms=statistics.median(listing),
            list_p95_ms=percentile(listing, 95),
            status_median_ms=statistics.median(lookups),
            status_p95_ms=percentile(lookups, 95),
        )
    row.update(etcd_mb=etcd_db_bytes(env) / 2**20)
    log(f"growth: {total} executions: {row}")
    return row


def run(env: Environment, sizes: tuple[int, ...] = SIZES, repeat: int = 30) -> Result:
    result = Result(
        "growth",
        "Growth with retained executions (operator, console, etcd)",
        {"sizes": "/".join(str(s) for s in sizes), "repeat": repeat},
    )
    rows = [measure_size(env, size, repeat) for size in sorted(sizes)]
    columns = [
        ("executions", "executions", "{:.0f}"),
        ("operator VmRSS MB", "operator_rss_mb", "{:.0f}"),
        ("operator start -> primed s", "operator_primed_s", "{:.1f}"),
        ("console VmRSS MB", "console_rss_mb", "{:.0f}"),
        ("console start -> synced s", "console_synced_s", "{:.1f}"),
        ("list median / p95 ms", "list", ""),
        ("status lookup median / p95 ms", "status", ""),
        ("etcd db MB", "etcd_mb", "{:.0f}"),
    ]
    table = [[name for name, _, _ in columns]]
    for row in rows:
        cells = []
        for _, key, fmt in columns:
            if key in ("list", "status"):
                cells.append(f"{row[key + '_median_ms']:.0f} / {row[key + '_p95_ms']:.0f}")
            else:
                cells.append(fmt.format(row[key]))
        table.append(cells)
    result.tables["by retained executions"] = table
    per = [["from -> to", "operator B/execution", "console B/execution", "etcd B/execution"]]
    for low, high in itertools.pairwise(rows):
        added = high["executions"] - low["executions"]
        if added <= 0:
            continue

        def slope(key: str, low: dict[str, float] = low, high: dict[str, float] = high) -> str:
            return (
                f"{(high[key] - low[key]) * 2**20 / (high['executions'] - low['executions']):.0f}"
            )

        per.append(
            [
                f"{low['executions']:.0f} -> {high['executions']:.0f}",
                slope("operator_rss_mb"),
                slope("console_rss_mb"),
                slope("etcd_mb"),
            ]
        )
    result.tables["growth per added execution"] = per
    top = rows[-1]
    goal = top["executions"] >= LARGE
    suffix = f" at {top['executions']:.0f}"

    def add(name: str, key: str, unit: str, limit: float) -> None:
        value = top[key]
        result.add(
            name + suffix,
            value,
            unit,
            baseline=rows[0][key],
            goal=f"<= {limit:.0f} {unit} at {LARGE}",
            ok=value <= limit if goal else None,
        )

    add("operator VmRSS", "operator_rss_mb", "MB", GOALS_AT_LARGE["operator_rss"])
    add("console VmRSS", "console_rss_mb", "MB", GOALS_AT_LARGE["console_rss"])
    add("operator start -> primed", "operator_primed_s", "s", GOALS_AT_LARGE["primed"])
    add("console start -> synced", "console_synced_s", "s", GOALS_AT_LARGE["primed"])
    add("console list p95", "list_p95_ms", "ms", GOALS_AT_LARGE["list_p95"])
    result.add("Web API status lookup p95" + suffix, top["status_p95_ms"], "ms")
    result.add("etcd db" + suffix, top["etcd_mb"], "MB", baseline=rows[0]["etcd_mb"])
    result.notes.append(
        "baseline column: the smallest size of the same run; goals are judged at 100,000 only"
    )
    return result


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--large", action="store_true", help=f"also {LARGE} (~25 min to create)")
    parser.add_argument("--repeat", type=int, default=30, help="requests per page")


def scenario(env: Environment, *, sizes: list[int], large: bool, repeat: int) -> Result:
    """run() at ``--sizes``, and at LARGE too with ``--large``."""
    return run(env, sizes=tuple(sizes) + ((LARGE,) if large else ()), repeat=repeat)


if __name__ == "__main__":
    sys.exit(bench_main("growth", __doc__, arguments, scenario))
