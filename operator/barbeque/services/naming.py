"""Deterministic names, so every write is idempotent.

An execution's name derives from its SQS message id alone: a message delivered twice
produces the same name, and the API server's 409 tells the operator it is a duplicate.
"""

from __future__ import annotations

import hashlib
import re

_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# A Job's name must leave room in the 63-character pod label ``job-name`` and for the
# ``-retry-N`` suffix of retries, so long or odd ids are hashed.
_MAX_VERBATIM = 48
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def execution_name(message_id: str) -> str:
    """The JobExecution (and Job) name for an SQS message id."""
    if len(message_id) <= _MAX_VERBATIM and _LABEL.match(message_id):
        return message_id
    digest = hashlib.sha256(message_id.encode()).hexdigest()[:32]
    return f"m-{digest}"


def is_namespace_name(name: str) -> bool:
    """Whether ``name`` can name a namespace (an RFC 1123 label), so an application."""
    return len(name) <= 63 and _LABEL.match(name) is not None


def retry_name(root_name: str, attempt: int) -> str:
    """The name of an automatic retry: stable, so a retry is created once."""
    return f"{root_name}-retry-{attempt}"


def label_value(value: str) -> str:
    """``value`` if it is a valid label value, else a stable hash of it."""
    if len(value) <= 63 and _LABEL_VALUE.match(value):
        return value
    return "h-" + hashlib.sha256(value.encode()).hexdigest()[:40]


def fan_out_message_id(message_id: str, namespace: str, job: str) -> str:
    """The message id of the execution an SNS notification starts for one subscription.

    One SQS message may run several definitions (every one subscribed to the topic on the
    queue), and each execution needs an id of its own, stable across redeliveries.
    """
    digest = hashlib.sha256(f"{namespace}/{job}".encode()).hexdigest()[:8]
    return f"{message_id}-{digest}"
