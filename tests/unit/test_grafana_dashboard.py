"""The Grafana dashboard is generated (operator/barbeque/grafana.py) and shipped by the chart.

The e2e tier runs every query against a real Prometheus (tests/e2e/test_observability.py);
here: the checked-in JSON is what the code generates, and promtool parses every query.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from barbeque import grafana

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / grafana.DASHBOARD_JSON
PROMTOOL = shutil.which("promtool")


def test_the_shipped_json_is_what_the_generator_writes() -> None:
    assert grafana.drift(SHIPPED) == []


def test_a_hand_edit_of_the_json_is_drift(tmp_path: Path) -> None:
    edited = tmp_path / "dashboard.json"
    edited.write_text(SHIPPED.read_text().replace('"Queue depth"', '"Queue size"'))
    assert grafana.drift(edited) != []


def test_every_panel_queries_prometheus_through_the_datasource_variable() -> None:
    board = json.loads(SHIPPED.read_text())
    assert board["uid"] == grafana.UID
    assert [v["name"] for v in board["templating"]["list"]] == ["datasource"]
    panels = [p for p in board["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in board["panels"]}) == len(board["panels"])
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
    titles = {p["title"] for p in panels}
    for wanted in (
        "Queue depth",
        "Start latency (queue age)",
        "Executions by phase",
        "Duration",
        "Retries",
        "Dependency errors",
        "Web API requests",
        "Leader",
    ):
        assert wanted in titles


@pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian prometheus)")
def test_promtool_parses_every_query(tmp_path: Path) -> None:
    # promtool has no "check expression"; recording rules are parsed the same way.
    rules = [
        {"record": f"barbeque:panel_{i}", "expr": expr.replace(grafana.RATE, "5m")}
        for i, (_, expr) in enumerate(grafana.queries())
    ]
    path = tmp_path / "queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    assert PROMTOOL is not None
    checked = subprocess.run(
        [PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
