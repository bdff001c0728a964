"""The checked-in CRDs are what the models generate, and they are structural."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from barbeque.api import crdgen
from barbeque.api.models import JobDefinition, JobExecution, JobQueue

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def test_checked_in_crds_match_the_models() -> None:
    problems = crdgen.drift([ROOT / "crds", ROOT / "charts" / "barbeque" / "crds"])
    assert problems == [], "run `python -m barbeque crds --write`"


def _walk(node: Any, path: str = "") -> list[str]:
    """Constructs the API server refuses in a structural schema."""
    found = []
    if isinstance(node, dict):
        for key in ("$ref", "anyOf", "oneOf", "allOf", "$defs", "title"):
            if key in node:
                found.append(f"{path}: {key}")
        if node.get("additionalProperties") is False:
            found.append(f"{path}: additionalProperties false")
        if "properties" in node and node.get("type") != "object":
            found.append(f"{path}: properties without type object")
        for key, value in node.items():
            found.extend(_walk(value, f"{path}.{key}"))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found.extend(_walk(value, f"{path}[{i}]"))
    return found


@pytest.mark.parametrize("model", [JobQueue, JobDefinition, JobExecution])
def test_schemas_are_structural(model: Any) -> None:
    schema = crdgen.structural_schema(model)
    assert _walk(schema) == []


def test_only_the_message_preserves_unknown_fields() -> None:
    text = (ROOT / "crds" / "barbeque.dev_jobexecutions.yaml").read_text()
    crd = yaml.safe_load(text)
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    preserved = [p for p in _paths(schema) if p.endswith("x-kubernetes-preserve-unknown-fields")]
    assert preserved == [".properties.spec.properties.message.x-kubernetes-preserve-unknown-fields"]


def _paths(node: Any, path: str = "") -> list[str]:
    out = []
    if isinstance(node, dict):
        for key, value in node.items():
            out.append(f"{path}.{key}")
            out.extend(_paths(value, f"{path}.{key}"))
    return out


def test_kubectl_names_and_columns() -> None:
    crd = crdgen.build_crd(JobExecution)
    names = crd["spec"]["names"]
    assert names["plural"] == "jobexecutions"
    assert "executions" in names["shortNames"]
    assert names["categories"] == ["barbeque"]
    columns = [c["name"] for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]]
    assert columns[:6] == ["Job", "Status", "Attempt", "Exit", "Duration", "Age"]
    assert crdgen.build_crd(JobQueue)["spec"]["scope"] == "Cluster"
    assert "definitions" in crdgen.build_crd(JobDefinition)["spec"]["names"]["shortNames"]


def test_retry_defaults_and_limits_are_in_the_schema() -> None:
    schema = crdgen.structural_schema(JobDefinition)
    retry = schema["properties"]["spec"]["properties"]["retry"]["properties"]
    assert retry["limit"]["default"] == 3
    assert retry["limit"]["minimum"] == 0
    assert retry["baseDelaySeconds"]["default"] == 15.0
    assert retry["jitter"]["default"] is True
    resources = schema["properties"]["spec"]["properties"]["resources"]
    assert resources["properties"]["limits"]["additionalProperties"] == {
        "x-kubernetes-int-or-string": True
    }
