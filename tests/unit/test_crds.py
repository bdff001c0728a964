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


@pytest.mark.parametrize("model", crdgen.RESOURCES)
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


# Short names of well-known projects' kinds and of Kubernetes itself, read from their CRDs
# and `kubectl api-resources`: ours must not shadow them (kubectl picks one at random-ish
# discovery order when two kinds share a short name).
WELL_KNOWN_SHORT_NAMES = {
    "kueue": {"queue", "queues", "lq", "cq", "wl", "flavor", "flavors", "rf"},
    "keda": {"so", "sj", "ta", "triggerauth", "cta", "clustertriggerauth"},
    "argo": {"wf", "wftmpl", "cwft", "clusterwftmpl", "cwf", "cronwf", "wfeb", "wfts", "wftr"}
    | {"app", "apps", "appset", "appsets", "appproj", "appprojs", "es", "sn", "eb"}
    | {"ro", "ar", "at", "cat", "exp"},
    "tekton": {"tr", "trs", "pr", "prs", "el", "tb", "tt", "ctb", "tri"},
    "cert-manager": {"cert", "certs", "cr", "crs"},
    "volcano": {"vcjob", "vj", "q", "queue-v1beta1", "pg", "podgroup-v1beta1", "jf", "jt", "hn"},
    "kubernetes": {"po", "svc", "deploy", "rs", "ds", "sts", "cj", "cm", "ns", "no", "pv"}
    | {"pvc", "sa", "ep", "ev", "hpa", "ing", "netpol", "pdb", "pc", "sc", "csr", "crd", "crds"}
    | {"limits", "quota", "rc"},
}


def test_short_names_do_not_collide_with_well_known_projects() -> None:
    ours = {name for model in crdgen.RESOURCES for name in model.short_names}
    for project, names in WELL_KNOWN_SHORT_NAMES.items():
        assert ours.isdisjoint(names), f"{project} uses {sorted(ours & names)}"
    for model in crdgen.RESOURCES:
        assert crdgen.build_crd(model)["spec"]["names"]["categories"] == ["barbeque"]


def _fields(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Every named field of a schema, with its path (list items and map values descended)."""
    found = []
    for name, prop in (node.get("properties") or {}).items():
        found.append((f"{path}.{name}", prop))
        found.extend(_fields(prop, f"{path}.{name}"))
    for key, marker in (("items", "[]"), ("additionalProperties", "{}")):
        if isinstance(node.get(key), dict):
            found.extend(_fields(node[key], path + marker))
    return found


@pytest.mark.parametrize("model", crdgen.RESOURCES)
def test_every_field_has_a_description(model: Any) -> None:
    schema = crdgen.structural_schema(model)
    # The API server describes metadata itself and refuses a schema that says more.
    missing = [p for p, prop in _fields(schema) if not prop.get("description") and p != ".metadata"]
    assert missing == [], f"{model.kind}: fields without a description"
    assert len(_fields(schema)) > 10


def test_the_description_check_finds_a_field_without_one() -> None:
    schema = {"properties": {"spec": {"description": "x", "properties": {"a": {"type": "string"}}}}}
    assert [p for p, prop in _fields(schema) if not prop.get("description")] == [".spec.a"]


@pytest.mark.parametrize("model", crdgen.RESOURCES)
def test_conditions_are_a_list_map_keyed_by_type(model: Any) -> None:
    conditions = crdgen.structural_schema(model)["properties"]["status"]["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    item = conditions["items"]
    assert "type" in item["required"]
    assert set(item["properties"]) == {
        "type",
        "status",
        "reason",
        "message",
        "lastTransitionTime",
        "observedGeneration",
    }


def test_the_immutability_rule_covers_every_spec_field_but_cancel_and_message() -> None:
    spec = crdgen.structural_schema(JobExecution)["properties"]["spec"]
    rule = spec["x-kubernetes-validations"][0]["rule"]
    for field in spec["properties"]:
        covered = f"self.{field} == oldSelf.{field}" in rule
        assert covered == (field not in ("cancel", "message")), field
