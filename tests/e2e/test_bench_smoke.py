"""The benchmark harness still runs: ``python -m bench.run_all --quick``.

Benchmarks are scripts, not timed tests: this starts the quick version (its own control
plane, moto, operator and dashboard processes, tiny sizes) and checks only that every
scenario produced its figures and that they are sane, never that a goal was met.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.fixture import ensure_binaries_or_skip

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def _value(figures: dict[tuple[str, str], dict[str, Any]], scenario: str, name: str) -> float:
    figure = figures.get((scenario, name))
    assert figure is not None, f"{scenario}: no figure {name!r} in {sorted(figures)}"
    value = figure["value"]
    assert isinstance(value, int | float), (scenario, name, value)
    assert math.isfinite(value), (scenario, name, value)
    return float(value)


@pytest.mark.timeout(900)
def test_the_quick_benchmarks_produce_sane_figures(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    ensure_binaries_or_skip(request)
    output = tmp_path / "bench.json"
    run = subprocess.run(
        [sys.executable, "-m", "bench.run_all", "--quick", "--json", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=840,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    report = json.loads(output.read_text())
    assert report["failures"] == []
    assert {"nproc", "memory", "commit"} <= report["machine"].keys()
    figures = {(r["scenario"], f["name"]): f for r in report["results"] for f in r["figures"]}
    assert {r["scenario"] for r in report["results"]} == {
        "dispatch",
        "throughput",
        "writes",
        "memory",
        "console",
    }

    p50 = _value(figures, "dispatch", "send -> Job p50")
    p99 = _value(figures, "dispatch", "send -> Job p99")
    assert 0 < p50 <= p99 < 60

    assert _value(figures, "throughput", "Jobs created") > 0
    base = figures[("throughput", "Jobs created")]["baseline"]
    assert base is not None
    assert base > 0
    assert _value(figures, "throughput", "ratio to baseline (Jobs/s)") > 0

    writes = _value(figures, "writes", "operator API writes per execution")
    assert 2 <= writes < 50
    assert _value(figures, "writes", "operator SQS calls per message") > 0

    rss = next(v for (s, n), v in figures.items() if s == "memory" and n.startswith("VmRSS with"))
    assert 10 < rss["value"] < 4000

    assert _value(figures, "console", "console list (/job_executions) median") > 0
