"""The benchmark harness still runs: ``python -m bench.run_all --quick``.

Benchmarks are scripts, not timed tests: this starts the quick version (its own control
plane, moto, operator and dashboard processes, tiny sizes, the operator traced) and checks
that every scenario produced its figures. Timings are never judged here (a busy machine
is not slow code), but what does not depend on the machine is held to the design: API
writes per execution, and memory within a bound that a leak or a return to holding
finished executions would cross.
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


@pytest.mark.timeout(1500)
def test_the_quick_benchmarks_produce_sane_figures(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    ensure_binaries_or_skip(request)
    output = tmp_path / "bench.json"
    run = subprocess.run(
        [sys.executable, "-m", "bench.run_all", "--quick", "--trace", "--json", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1440,
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
        "end_to_end",
        "growth",
        "fairness",
    }

    p50 = _value(figures, "dispatch", "send -> Job p50")
    p99 = _value(figures, "dispatch", "send -> Job p99")
    assert 0 < p50 <= p99 < 60

    assert _value(figures, "throughput", "Jobs created") > 0
    base = figures[("throughput", "Jobs created")]["baseline"]
    assert base is not None
    assert base > 0
    assert _value(figures, "throughput", "ratio to baseline (Jobs/s)") > 0

    # POST JobExecution, POST Job, PATCH status Running and final (docs/operator.md); 3 when
    # a pod finished before the reconciler saw it run, 5 with a conflict retried.
    writes = _value(figures, "writes", "operator API writes per execution")
    assert 3 <= writes <= 5
    assert 0 < _value(figures, "writes", "operator SQS calls per message") <= 1

    # The operator forgets settled executions: ~120 MB idle, ~140 MB with 10,000 retained.
    rss = next(v for (s, n), v in figures.items() if s == "memory" and n.startswith("VmRSS with"))
    assert 60 < rss["value"] < 250

    throughput = next(r for r in report["results"] if r["scenario"] == "throughput")
    traced = next(t for name, t in throughput["tables"].items() if name.startswith("operator"))
    assert {"kube.create_execution", "kube.create_job", "sqs.receive_message"} <= {
        row[0] for row in traced[1:]
    }

    assert _value(figures, "console", "console list (/job_executions) median") > 0

    # message.json, stdout.txt and execution.json of each of the 20 executions.
    for profile in ("default", "tuned"):
        assert _value(figures, "end_to_end", f"{profile}: S3 objects") == 60
        assert _value(figures, "end_to_end", f"{profile}: executions finished, logs in S3") > 0

    console_rss = next(
        v for (s, n), v in figures.items() if s == "growth" and n.startswith("console VmRSS")
    )
    assert 30 < console_rss["value"] < 250

    assert 0 < _value(figures, "fairness", "quiet send -> Job p99 during the flood") < 60
    assert _value(figures, "fairness", "flooded queue drain, first receive -> last Job") > 0
