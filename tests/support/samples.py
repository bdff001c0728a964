"""Sample objects from the files in tests/data/, shared by the tests and the benchmarks.

Each call reads the file again and returns a fresh dict, so callers may change it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

DATA = Path(__file__).resolve().parents[1] / "data"


def load(name: str) -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load((DATA / name).read_text())
    return body


def definition(namespace: str, name: str, queue: str = "default", **spec: Any) -> dict[str, Any]:
    """A JobDefinition ``namespace/name`` on ``queue``; ``spec`` adds or replaces fields."""
    body = load("jobdefinition.yaml")
    body["metadata"].update(name=name, namespace=namespace)
    body["spec"].update(queue=queue, **spec)
    return body


def queue(name: str = "default", **spec: Any) -> dict[str, Any]:
    """A JobQueue ``name``; ``spec`` adds fields."""
    body = load("jobqueue.yaml")
    body["metadata"]["name"] = name
    body["spec"].update(spec)
    return body
