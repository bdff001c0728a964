"""The shipped alerting rules, judged by Prometheus' own promtool.

``promtool test rules`` feeds unit series through charts/barbeque/files/prometheus-rules.yaml
(cases in tests/data/prometheus-rules.test.yaml); every alert has its runbook in
docs/operations.md. The e2e tier (tests/e2e/test_observability.py) sees one fire in a real
Prometheus scraping the real operator.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "charts" / "barbeque" / "files" / "prometheus-rules.yaml"
CASES = ROOT / "tests" / "data" / "prometheus-rules.test.yaml"
RUNBOOKS = ROOT / "docs" / "operations.md"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian prometheus)")


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def alerts() -> list[dict[str, object]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


@needs_promtool
def test_promtool_accepts_the_rules() -> None:
    checked = promtool("check", "rules", str(RULES), cwd=ROOT)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@needs_promtool
def test_each_alert_fires_on_its_fault_and_not_without_it() -> None:
    tested = promtool("test", "rules", CASES.name, cwd=CASES.parent)
    assert tested.returncode == 0, tested.stdout + tested.stderr


@needs_promtool
def test_the_rule_tests_catch_a_broken_threshold(tmp_path: Path) -> None:
    # The same cases against rules whose S3 alert can never fire must fail.
    broken = RULES.read_text().replace(
        "sum(increase(barbeque_s3_failures_total[5m])) > 0",
        "sum(increase(barbeque_s3_failures_total[5m])) > 1000",
    )
    assert broken != RULES.read_text()
    (tmp_path / "charts" / "barbeque" / "files").mkdir(parents=True)
    (tmp_path / "charts" / "barbeque" / "files" / RULES.name).write_text(broken)
    (tmp_path / "tests" / "data").mkdir(parents=True)
    (tmp_path / "tests" / "data" / CASES.name).write_text(CASES.read_text())
    tested = promtool("test", "rules", CASES.name, cwd=tmp_path / "tests" / "data")
    assert tested.returncode != 0
    assert "BarbequeS3Failing" in tested.stdout + tested.stderr


def test_every_alert_is_tested_has_a_severity_and_a_runbook() -> None:
    runbook_headings = set(re.findall(r"^### (\w+)$", RUNBOOKS.read_text(), re.MULTILINE))
    cases = CASES.read_text()
    names = [str(rule["alert"]) for rule in alerts()]
    assert len(names) == len(set(names))
    for rule in alerts():
        name = str(rule["alert"])
        labels = rule.get("labels")
        assert isinstance(labels, dict)
        assert labels.get("severity") in {"critical", "warning", "info"}, name
        assert name in runbook_headings, f"docs/operations.md has no '### {name}'"
        assert f"alertname: {name}" in cases, f"no promtool case for {name}"
