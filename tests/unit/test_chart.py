"""The Helm chart's static promises, checked without helm or a cluster.

The chart ships the generated CRDs, documents and checks its values with
values.schema.json, and explains every RBAC rule it grants. Rendering, linting and
installing the chart are judged by helm and the real apiserver in
tests/e2e/test_chart_install.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "barbeque"
RBAC_TEMPLATES = ("operator-rbac.yaml", "dashboard-rbac.yaml")


def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((CHART / "values.schema.json").read_text())
    return loaded


def default_values() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    return loaded


def errors_for(values: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(schema())
    return [
        f"/{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator.iter_errors(values)
    ]


def with_value(path: str, value: Any) -> dict[str, Any]:
    values = default_values()
    *parents, last = path.split(".")
    node = values
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return values


def test_the_chart_ships_the_repository_crds_byte_for_byte() -> None:
    repository = {p.name: p.read_bytes() for p in (ROOT / "crds").glob("*.yaml")}
    shipped = {p.name: p.read_bytes() for p in (CHART / "crds").glob("*.yaml")}
    assert repository, "no CRDs in crds/"
    assert shipped.keys() == repository.keys()
    for name, content in repository.items():
        assert shipped[name] == content, f"charts/barbeque/crds/{name} differs from crds/{name}"


def test_the_chart_declares_api_version_v2_and_the_app_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "barbeque"
    assert chart["appVersion"] == "0.1.0"


def test_values_schema_is_a_valid_json_schema() -> None:
    jsonschema.Draft7Validator.check_schema(schema())


def test_default_values_satisfy_the_schema() -> None:
    assert errors_for(default_values()) == []


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("operator.replicas", "two", "/operator/replicas: 'two' is not of type 'integer'"),
        ("operator.replicas", -1, "/operator/replicas: -1 is less than the minimum of 0"),
        ("operator.workers", 0, "/operator/workers: 0 is less than the minimum of 1"),
        ("image.pullPolicy", "Sometimes", "/image/pullPolicy: 'Sometimes' is not one of"),
        ("dashboard.service.type", "Internal", "/dashboard/service/type: 'Internal' is not one"),
        ("aws.sqsEndpointUrl", "localhost:4566", "/aws/sqsEndpointUrl: 'localhost:4566' does"),
        ("s3.bucket", "No_Such", "/s3/bucket: 'No_Such' does not match"),
        ("metrics.serviceMonitor.interval", "often", "/metrics/serviceMonitor/interval: 'often'"),
        ("logFormat", "xml", "/logFormat: 'xml' is not one of ['text', 'json']"),
        ("metrics.prometheusRule.runbookBaseUrl", "docs", "/metrics/prometheusRule/runbookBaseUrl"),
        ("metrics.grafanaDashboard.label", "", "/metrics/grafanaDashboard/label: '' should be non"),
        ("opertor", {"replicas": 1}, "/: Additional properties are not allowed ('opertor'"),
        ("operator.replica", 1, "/operator: Additional properties are not allowed ('replica'"),
        ("dashboard.ingress.hosts", [{"host": "x"}], "/dashboard/ingress/hosts/0: 'paths' is a"),
        ("crds.install", "yes", "/crds/install: 'yes' is not of type 'boolean'"),
        ("userRoles.aggregate", 1, "/userRoles/aggregate: 1 is not of type 'boolean'"),
        ("networkPolicy.metricsFrom", {"a": 1}, "/networkPolicy/metricsFrom: {'a': 1} is not"),
        (
            "dashboard.topologySpreadConstraints",
            [{"maxSkew": 1, "topologyKey": "zone"}],
            "/dashboard/topologySpreadConstraints/0: 'whenUnsatisfiable' is a required",
        ),
        ("operator.extraVolumeMounts", [{"name": "ca"}], "/operator/extraVolumeMounts/0: 'mount"),
        ("dashboard.podDisruptionBudget.maxUnavailable", -1, "/dashboard/podDisruptionBudget/max"),
    ],
)
def test_the_schema_rejects_a_wrong_value_and_names_it(
    path: str, value: Any, expected: str
) -> None:
    errors = errors_for(with_value(path, value))
    assert any(error.startswith(expected) for error in errors), errors


def test_every_option_of_the_chart_is_described_in_the_schema() -> None:
    undescribed: list[str] = []

    def walk(node: dict[str, Any], path: str) -> None:
        for key, child in node.get("properties", {}).items():
            if "description" not in child:
                undescribed.append(f"{path}.{key}")
            if child.get("additionalProperties") is False:
                walk(child, f"{path}.{key}")
            items = child.get("items", {})
            if isinstance(items, dict) and items.get("additionalProperties") is False:
                walk(items, f"{path}.{key}[]")

    walk(schema(), "")
    # Kubernetes-shaped objects (resources, envFrom entries) are described by their parent.
    undescribed = [p for p in undescribed if not re.search(r"(\[\]\.|resources\.)", p)]
    assert undescribed == []


def test_every_option_in_values_yaml_carries_a_comment() -> None:
    """Each setting has a comment above it, or sits inside a commented block.

    A block without its own comment (``operator:``) is fine when each of its settings
    has one; Kubernetes-shaped data (``resources:``) is covered by its block's comment.
    """
    lines = (CHART / "values.yaml").read_text().splitlines()
    stack: list[tuple[int, bool]] = []  # (indent, commented here or above) of open blocks
    uncommented = []
    for number, line in enumerate(lines):
        match = re.match(r"^( *)([A-Za-z][\w./-]*):(.*)$", line)
        if not match:
            continue
        indent = len(match.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        own = number > 0 and lines[number - 1].strip().startswith("#")
        covered = own or any(commented for _, commented in stack)
        following = next((n for n in lines[number + 1 :] if n.strip()), "")
        is_block = not match.group(3).strip() and (
            len(following) - len(following.lstrip()) > indent or following.lstrip().startswith("- ")
        )
        if is_block:
            stack.append((indent, covered))
        elif not covered:
            uncommented.append(f"values.yaml:{number + 1}: {line.strip()}")
    assert uncommented == []


def rbac_rules(template: str) -> list[tuple[int, str, str]]:
    """(line number, kind, line above) of every rule in the template's Roles."""
    found = []
    kind = ""
    lines = (CHART / "templates" / template).read_text().splitlines()
    for number, line in enumerate(lines, start=1):
        if line.startswith("kind:"):
            kind = line.split(":", 1)[1].strip()
        if re.match(r"^\s*- apiGroups:", line):
            found.append((number, kind, lines[number - 2].strip()))
    return found


@pytest.mark.parametrize("template", RBAC_TEMPLATES)
def test_every_rbac_rule_has_a_comment_saying_what_needs_it(template: str) -> None:
    rules = rbac_rules(template)
    assert any(kind == "ClusterRole" for _, kind, _ in rules)
    bare = [f"{template}:{n} ({kind})" for n, kind, above in rules if not above.startswith("#")]
    assert bare == []


def test_neither_cluster_role_grants_wildcards_or_secrets() -> None:
    for template in RBAC_TEMPLATES:
        text = (CHART / "templates" / template).read_text()
        cluster_role = text.split("kind: ClusterRole\n", 1)[1].split("\n---", 1)[0]
        assert '"*"' not in cluster_role, template
        assert "secrets" not in cluster_role, f"{template}: Secrets only by name, in a Role"
    operator = (CHART / "templates" / "operator-rbac.yaml").read_text()
    assert "secrets" not in operator, "the operator must not read Secrets"


def test_every_value_in_the_generated_readme_has_a_description() -> None:
    """helm-docs takes a value's description from a ``# --`` comment and silently leaves it
    empty when the comment's first line has another ``--`` word in it."""
    rows = [
        line for line in (CHART / "README.md").read_text().splitlines() if line.startswith("| ")
    ]
    cells = [[cell.strip() for cell in row.strip("|").split("|")] for row in rows[1:]]
    assert len(cells) > 50, "the values table is there"
    assert [c[0] for c in cells if not c[-1]] == []
