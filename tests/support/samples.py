"""Sample objects from the files in tests/data/, shared by the tests and the benchmarks.

Each call reads the file again and returns a fresh dict, so callers may change it.
"""

from __future__ import annotations

import copy
import functools
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


def execution(
    namespace: str = "blog", message_id: str | None = None, **spec: Any
) -> dict[str, Any]:
    """A Succeeded JobExecution with its logs in S3, as the API server returns it
    (managedFields too): ``message_id`` names it, ``spec`` adds or replaces fields."""
    body = copy.deepcopy(_succeeded_execution())
    meta, status = body["metadata"], body["status"]
    message_id = message_id or meta["name"]
    prefix = f"{namespace}/{body['spec']['job']}/{message_id}/"
    url = f"s3://{status['logs']['bucket']}/{prefix}"
    meta.update(name=message_id, namespace=namespace)
    meta["labels"].update(
        {"barbeque.dev/application": namespace, "barbeque.dev/message-id": message_id}
    )
    body["spec"].update(application=namespace, messageId=message_id, **spec)
    status.update(jobName=message_id, podName=f"{message_id}-x7k2q")
    status["logs"].update(prefix=prefix, url=url)
    status["conditions"][1]["message"] = url
    return body


@functools.cache
def _succeeded_execution() -> dict[str, Any]:
    # Parsed once: the growth tests make thousands (each caller gets a deep copy).
    return load("jobexecution-succeeded.yaml")
