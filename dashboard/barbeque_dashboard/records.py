"""The console's compact form of a JobExecution: what the lists read, plus the body packed.

The console keeps every execution the cluster retains. As pydantic models (an
``ObjectMeta``, a spec, a status, its logs location and each condition, each with a
``__dict__`` and a fields-set) they cost ~7 KB of live objects and ~10 KB of resident memory
each, 2.5 GB at 100,000. An :class:`ExecutionRecord` is one slotted object holding the
fields the pages and the Web API list, filter, sort and group by (strings interned or
shared), and the whole body as zlib-compressed JSON, from which :meth:`ExecutionRecord.model`
rebuilds the same ``JobExecution`` for the pages that show one execution in full.

A record answers ``record.metadata.name``, ``record.spec.job`` and ``record.status.phase``
like the model (each of the three returns the record itself), so code that reads those
fields takes either; :class:`ExecutionView` is that common shape for the type checker.
"""

from __future__ import annotations

import sys
import zlib
from datetime import datetime
from typing import Any, Protocol

import orjson

from barbeque.api.models import JobExecution

# Preset dictionary for the compressor: the keys and constants every execution body
# repeats. Bodies are ~2 KB, too short for zlib to learn them from the body itself.
# Raw deflate with a 2 KB window and little state: a full-sized compressor costs more to
# set up (~200 us, a quarter MB zeroed) than the body takes to compress.
_WBITS, _MEMLEVEL = -11, 4
_ZDICT = orjson.dumps(
    {
        "apiVersion": "barbeque.dev/v1alpha1",
        "kind": "JobExecution",
        "metadata": {
            "labels": {
                "app.kubernetes.io/managed-by": "barbeque",
                "barbeque.dev/application": "",
                "barbeque.dev/job": "",
                "barbeque.dev/queue": "",
                "barbeque.dev/message-id": "",
            },
            "name": "",
            "namespace": "",
            "uid": "",
            "resourceVersion": "",
            "generation": 1,
            "creationTimestamp": "",
        },
        "spec": {
            "application": "",
            "job": "",
            "queue": "",
            "messageId": "",
            "message": {},
            "attempt": 0,
            "sentTimestamp": 0,
        },
        "status": {
            "phase": "Succeeded",
            "reason": "Completed",
            "message": "",
            "jobName": "",
            "podName": "",
            "exitCode": 0,
            "startedAt": "",
            "finishedAt": "",
            "duration": "",
            "logs": {"bucket": "", "prefix": "", "url": "s3://", "uploaded": True},
            "notified": True,
            "conditions": [
                {
                    "type": "Finished",
                    "status": "True",
                    "reason": "Completed",
                    "message": "",
                    "lastTransitionTime": "",
                    "observedGeneration": 1,
                },
                {"type": "LogsUploaded", "reason": "Uploaded", "status": "False"},
            ],
        },
    }
)


class MetaView(Protocol):
    __slots__ = ()

    name: str
    namespace: str | None
    creation_timestamp: datetime | None


class SpecView(Protocol):
    __slots__ = ()

    application: str
    job: str
    queue: str
    message_id: str
    attempt: int
    retry_of: str | None
    not_before: datetime | None
    invalid_reason: str | None


class StatusView(Protocol):
    __slots__ = ()

    # Read-only: the model's phase is a Phase (a str), the record's a plain str.
    @property
    def phase(self) -> str | None: ...

    reason: str | None
    message: str | None
    job_name: str | None
    exit_code: int | None
    started_at: datetime | None
    finished_at: datetime | None
    retried_by: str | None


class ExecutionView(Protocol):
    """What a JobExecution model and an ExecutionRecord both answer."""

    @property
    def metadata(self) -> MetaView: ...
    @property
    def spec(self) -> SpecView: ...
    @property
    def status(self) -> StatusView: ...


def _same(value: str | None, *known: str) -> str | None:
    """``value``, or an equal string already held (job and pod names repeat the name)."""
    for other in known:
        if value == other:
            return other
    return value


def _interned(value: str | None) -> str | None:
    return sys.intern(value) if value is not None else None


class ExecutionRecord(MetaView, SpecView, StatusView):
    """One execution in the console's cache: listed fields, and the body compressed."""

    __slots__ = (
        "_body",
        "application",
        "attempt",
        "creation_timestamp",
        "exit_code",
        "finished_at",
        "invalid_reason",
        "job",
        "job_name",
        "message",
        "message_id",
        "name",
        "namespace",
        "not_before",
        "phase",
        "queue",
        "reason",
        "resource_version",
        "retried_by",
        "retry_of",
        "started_at",
    )

    # The views declare the fields of the three parts (``message`` is status.message: the
    # payload stays in the packed body); these are the record's own.
    resource_version: str | None
    phase: str | None
    _body: bytes

    @classmethod
    def pack(cls, execution: JobExecution, body: dict[str, Any]) -> ExecutionRecord:
        """The record of ``execution``, validated from ``body`` (kept, less managedFields)."""
        record = cls()
        meta, spec, status = execution.metadata, execution.spec, execution.status
        record.name = meta.name
        record.namespace = _interned(meta.namespace)
        record.creation_timestamp = meta.creation_timestamp
        record.resource_version = meta.resource_version
        record.application = sys.intern(spec.application)
        record.job = sys.intern(spec.job)
        record.queue = sys.intern(spec.queue)
        record.message_id = _same(spec.message_id, meta.name) or ""
        record.attempt = spec.attempt
        record.retry_of = spec.retry_of
        record.not_before = spec.not_before
        record.invalid_reason = spec.invalid_reason
        record.phase = _interned(status.phase)
        record.reason = _interned(status.reason)
        record.message = status.message
        record.job_name = _same(status.job_name, meta.name)
        record.exit_code = status.exit_code
        record.started_at = status.started_at
        record.finished_at = status.finished_at
        record.retried_by = status.retried_by
        metadata = body.get("metadata") or {}
        if "managedFields" in metadata:
            body = {**body, "metadata": {k: v for k, v in metadata.items() if k != "managedFields"}}
        packer = zlib.compressobj(6, zlib.DEFLATED, _WBITS, _MEMLEVEL, zdict=_ZDICT)
        record._body = packer.compress(orjson.dumps(body)) + packer.flush()
        return record

    def model(self) -> JobExecution:
        """The whole JobExecution, as validated when the record was made."""
        unpacker = zlib.decompressobj(_WBITS, zdict=_ZDICT)
        raw = unpacker.decompress(self._body) + unpacker.flush()
        return JobExecution.model_validate(orjson.loads(raw))

    # The model's three parts: the record holds the fields of all three.
    @property
    def metadata(self) -> ExecutionRecord:
        return self

    @property
    def spec(self) -> ExecutionRecord:
        return self

    @property
    def status(self) -> ExecutionRecord:
        return self
