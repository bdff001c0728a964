"""Generate CustomResourceDefinitions from the pydantic models.

The API server only accepts *structural* schemas: no ``$ref``, no ``anyOf`` with null,
``nullable`` instead, no ``additionalProperties: false``. pydantic emits JSON Schema in
its own dialect, so this module rewrites it. The output is checked in (``crds/`` and the
chart's ``crds/``) and a unit test regenerates and diffs it.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from barbeque.api.models import CUSTOM_RESOURCES, GROUP, VERSION
from barbeque.api.subscriptions import SNSSubscription

# Every kind with a CRD: the models module's and those in modules of their own.
RESOURCES: tuple[type[Any], ...] = (*CUSTOM_RESOURCES, SNSSubscription)

CATEGORY = "barbeque"

# Keys of JSON Schema that apiextensions v1 does not accept or that add noise.
_DROPPED_KEYS = {"title", "$defs", "definitions", "discriminator", "examples"}


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    """Inline every $ref and rewrite pydantic's dialect into a structural schema."""
    if isinstance(node, list):
        return [_resolve(item, defs) for item in node]
    if not isinstance(node, dict):
        return node

    if "$ref" in node:
        target = copy.deepcopy(defs[node["$ref"].rsplit("/", 1)[-1]])
        extra = {k: v for k, v in node.items() if k != "$ref"}
        target.update(extra)
        return _resolve(target, defs)

    node = dict(node)
    any_of = node.pop("anyOf", None)
    if any_of is not None:
        non_null = [option for option in any_of if option.get("type") != "null"]
        nullable = len(non_null) != len(any_of)
        types = {option.get("type") for option in non_null}
        if node.get("x-kubernetes-int-or-string") or types == {"integer", "string"}:
            # int-or-string is its own structural construct; it carries no "type".
            node["x-kubernetes-int-or-string"] = True
        elif len(non_null) == 1:
            merged = _resolve(non_null[0], defs)
            for key, value in merged.items():
                node.setdefault(key, value)
        else:
            raise ValueError(f"cannot express a union in a structural schema: {any_of}")
        if nullable:
            node["nullable"] = True

    if node.get("x-kubernetes-preserve-unknown-fields") and "type" not in node:
        # Any JSON value: the server must keep it as is, of whatever type.
        node.pop("nullable", None)
        node.pop("default", None)
    for key in _DROPPED_KEYS:
        node.pop(key, None)
    if node.get("additionalProperties") is False:
        del node["additionalProperties"]
    if node.get("additionalProperties") is True and node.get(
        "x-kubernetes-preserve-unknown-fields"
    ):
        # pydantic's extra="allow"; structurally, keeping unknown fields is said this way.
        del node["additionalProperties"]
    if node.get("type") == "object" and "properties" in node and not node["properties"]:
        del node["properties"]
    if "default" in node and node["default"] is None:
        del node["default"]
    if node.get("format") == "date-time" and "default" in node:
        del node["default"]

    result: dict[str, Any] = {}
    for key, value in node.items():
        if key == "properties":
            result[key] = {name: _resolve(prop, defs) for name, prop in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            result[key] = _resolve(value, defs)
        else:
            result[key] = value
    return result


def structural_schema(model: type[Any]) -> dict[str, Any]:
    """The openAPIV3Schema of one custom resource."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.get("$defs", {})
    schema: dict[str, Any] = _resolve(raw, defs)
    properties = schema.setdefault("properties", {})
    # apiVersion, kind and metadata are validated by the server itself.
    properties["apiVersion"] = {
        "description": f"The versioned schema of this object: {GROUP}/{VERSION}.",
        "type": "string",
    }
    properties["kind"] = {
        "description": f"The kind of this object: {model.kind}.",
        "type": "string",
    }
    # The server describes metadata itself and refuses a schema that says more than its type.
    properties["metadata"] = {"type": "object"}
    for name in ("spec", "status"):
        if name in properties:
            properties[name].pop("default", None)
    if "spec" in properties and "spec" in schema.get("required", []):
        schema["required"] = ["spec"]
    else:
        schema.pop("required", None)
    schema["description"] = (model.__doc__ or "").strip().splitlines()[0]
    schema["type"] = "object"
    return schema


def build_crd(model: Any) -> dict[str, Any]:
    """One CustomResourceDefinition manifest."""
    names = {
        "kind": model.kind,
        "listKind": f"{model.kind}List",
        "plural": model.plural,
        "singular": model.singular,
        "shortNames": list(model.short_names),
        "categories": [CATEGORY],
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{model.plural}.{GROUP}",
            "labels": {"app.kubernetes.io/part-of": "barbeque"},
        },
        "spec": {
            "group": GROUP,
            "names": names,
            "scope": "Namespaced" if model.namespaced else "Cluster",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": list(model.printer_columns),
                    **(
                        {"selectableFields": list(model.selectable_fields)}
                        if getattr(model, "selectable_fields", None)
                        else {}
                    ),
                    "schema": {"openAPIV3Schema": structural_schema(model)},
                }
            ],
        },
    }


def render_all() -> dict[str, str]:
    """File name -> YAML text, for every custom resource."""
    files = {}
    for model in RESOURCES:
        source = "operator/" + model.__module__.replace(".", "/") + ".py"
        header = f"# Generated by `python -m barbeque crds --write` from {source}.\n"
        header += "# Do not edit by hand: a test fails when this file drifts from the models.\n"
        text = yaml.safe_dump(build_crd(model), sort_keys=False, width=100)
        files[f"{GROUP}_{model.plural}.yaml"] = header + text
    return files


def write(directories: list[Path]) -> list[Path]:
    written = []
    for directory in directories:
        directory.mkdir(parents=True, exist_ok=True)
        for name, text in render_all().items():
            path = directory / name
            path.write_text(text)
            written.append(path)
    return written


def drift(directories: list[Path]) -> list[str]:
    """Files that differ from what the models generate (empty when all is in sync)."""
    problems = []
    for directory in directories:
        expected = render_all()
        present = {p.name for p in directory.glob("*.yaml")} if directory.exists() else set()
        for name, text in expected.items():
            path = directory / name
            if not path.exists():
                problems.append(f"{path}: missing")
            elif path.read_text() != text:
                problems.append(f"{path}: differs from the models")
        for name in sorted(present - set(expected)):
            problems.append(f"{directory / name}: not generated by the models")
    return problems
