"""Proposed operator changes, tried at run time without editing operator/ (measurement only).

docs/performance.md proposes code changes; these monkeypatches approximate them so their
effect can be measured before anyone edits the operator. They are not the fix: each says
which function the real change belongs in. Chosen with ``--experiments a,b`` (or ``all``) on
any benchmark, which runs the operator under ``bench.traced_operator``.

- ``quiet-kopf``: kopf logs "Handler 'x' succeeded." at INFO for every watch event;
  real change: ``barbeque/__main__.py::_operator``, set the ``kopf.objects`` logger to WARNING.
- ``no-diffbase``: kopf deep-copies every event's body to build a diff "essence" that only
  on.create/on.update handlers use (barbeque has none); real change: in
  ``barbeque/handlers/__init__.py::startup``, ``settings.persistence.diffbase_storage`` = a
  ``kopf.DiffBaseStorage`` whose build() returns an empty essence.
- ``pipeline``: ``Poller.handle`` (create executions, delete the batch) no longer blocks the
  next ReceiveMessage; up to 4 batches per queue in flight. Real change:
  ``barbeque/services/intake.py::Poller.run`` (count in-flight messages in ``free_slots``).
- ``s3-pool``: boto3's S3 client keeps 10 connections ("Connection pool is full,
  discarding connection" under load); real change: ``barbeque/adapters/s3.py::S3.__init__``,
  ``Config(max_pool_connections=...)`` like the SQS adapter.
- ``lean-create-job``: ``create_namespaced_job`` deserialises the response into V1Job
  models that nobody reads; real change: ``barbeque/adapters/kube.py::Kube.create_job``,
  ``_preload_content=False``.
- ``slim-finished`` and ``trim`` (memory; not part of ``all``): see their docstrings.
- ``rv-first``: ``Store.put_execution`` validates the pydantic model before finding the
  body older than what it holds (every write's watch echo); real change: compare
  resourceVersions on the raw dict first.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

ALL = ("quiet-kopf", "no-diffbase", "pipeline", "s3-pool", "lean-create-job", "rv-first")
# Memory experiments, not in "all": they change what the store keeps.
MEMORY = ("slim-finished", "trim")
PIPELINE_DEPTH = 4


def quiet_kopf() -> None:
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)


def no_diffbase() -> None:
    import kopf

    class NoDiffBase(kopf.DiffBaseStorage):
        def build(self, *, body: Any, extra_fields: Any = None) -> Any:
            return kopf.BodyEssence()

        def fetch(self, *, body: Any) -> Any:
            return None

        def store(self, *, body: Any, patch: Any, essence: Any) -> None:
            return None

    @kopf.on.startup()
    def _bench_no_diffbase(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.diffbase_storage = NoDiffBase()


def pipeline() -> None:
    from barbeque.services import intake

    original = intake.Poller.handle

    async def handle(self: Any, messages: list[Any]) -> list[Any]:
        state = self.__dict__.setdefault(
            "_bench_pipeline", (asyncio.Semaphore(PIPELINE_DEPTH), set())
        )
        semaphore, tasks = state
        await semaphore.acquire()

        async def run() -> None:
            try:
                await original(self, messages)
            finally:
                semaphore.release()

        task = asyncio.create_task(run())
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return []

    intake.Poller.handle = handle  # type: ignore[method-assign]


def s3_pool() -> None:
    import boto3
    from botocore.config import Config

    from barbeque.adapters import s3

    original = s3.S3.__init__

    def __init__(self: Any, region: str, endpoint_url: str | None, bucket: str) -> None:
        original(self, region, endpoint_url, bucket)
        self._client = boto3.client(
            "s3",
            region_name=region,
            endpoint_url=endpoint_url,
            config=Config(
                retries={"mode": "standard", "max_attempts": 3},
                connect_timeout=5,
                read_timeout=30,
                s3={"addressing_style": "path"},
                max_pool_connections=32,
            ),
        )

    s3.S3.__init__ = __init__  # type: ignore[method-assign]


def lean_create_job() -> None:
    from barbeque.adapters import kube

    async def create_job(self: Any, body: dict[str, Any]) -> None:
        def call() -> bytes:
            response = self._batch.create_namespaced_job(
                body["metadata"]["namespace"], body, _preload_content=False
            )
            return bytes(response.data)

        await self._call("create_job", call)

    kube.Kube.create_job = create_job  # type: ignore[method-assign]


def rv_first() -> None:
    from barbeque.services import store

    original = store.Store.put_execution

    def put_execution(self: Any, body: dict[str, Any]) -> Any:
        meta = body.get("metadata") or {}
        old = self.executions.get((meta.get("namespace", ""), meta.get("name", "")))
        if old is not None and not store._newer(
            old.metadata.resource_version, meta.get("resourceVersion")
        ):
            return None
        return original(self, body)

    store.Store.put_execution = put_execution  # type: ignore[method-assign]


def slim_finished() -> None:
    """Keep finished executions (logs uploaded) as skeletons: no message, conditions, labels.

    Measurement only: a manual JobRetry of such an execution would lose its message. The real
    change keeps a small record (key, message id, phase) and GETs the parent when a JobRetry
    names it (``Intake._record_retry``).
    """
    from barbeque.api import models
    from barbeque.services import store

    original = store.Store.put_execution

    def put_execution(self: Any, body: dict[str, Any]) -> Any:
        kept = original(self, body)
        if kept is None or kept.status.phase not in ("Succeeded", "Failed", "Error"):
            return kept
        if kept.status.logs is None or not kept.status.logs.uploaded:
            return kept
        meta, spec, status = kept.metadata, kept.spec, kept.status
        slim = models.JobExecution.model_construct(
            metadata=models.ObjectMeta.model_construct(
                name=meta.name,
                namespace=meta.namespace,
                uid=meta.uid,
                resource_version=meta.resource_version,
                generation=meta.generation,
                labels={},
                annotations={},
            ),
            spec=models.JobExecutionSpec.model_construct(
                application=spec.application,
                job=spec.job,
                queue=spec.queue,
                message_id=spec.message_id,
                original_message_id=spec.original_message_id,
                attempt=spec.attempt,
                retry_of=spec.retry_of,
                invalid_reason=None,
                cancel=False,
                message=None,
                raw_message=None,
                sent_timestamp=None,
                not_before=None,
            ),
            status=models.JobExecutionStatus.model_construct(
                phase=status.phase,
                reason=status.reason,
                logs=status.logs,
                retried_by=status.retried_by,
                notified=status.notified,
                conditions=[],
            ),
        )
        self.executions[(meta.namespace or "", meta.name)] = slim
        return slim

    store.Store.put_execution = put_execution  # type: ignore[method-assign]


def trim() -> None:
    """Every 10 s: gc.collect() and glibc's malloc_trim(0), to see what is fragmentation."""
    import ctypes
    import gc
    import threading

    libc = ctypes.CDLL("libc.so.6")

    def loop() -> None:
        while True:
            threading.Event().wait(10)
            gc.collect()
            libc.malloc_trim(0)

    threading.Thread(target=loop, daemon=True, name="bench-trim").start()


PATCHES = {
    "slim-finished": slim_finished,
    "trim": trim,
    "quiet-kopf": quiet_kopf,
    "no-diffbase": no_diffbase,
    "pipeline": pipeline,
    "s3-pool": s3_pool,
    "lean-create-job": lean_create_job,
    "rv-first": rv_first,
}


def install(names: str | None = None) -> list[str]:
    """Apply the experiments named in ``names`` (or $BARBEQUE_BENCH_EXPERIMENTS)."""
    raw = names if names is not None else os.environ.get("BARBEQUE_BENCH_EXPERIMENTS", "")
    chosen = [n.strip() for n in raw.split(",") if n.strip()]
    if "all" in chosen:
        chosen = list(ALL)
    for name in chosen:
        PATCHES[name]()
    if chosen:
        logging.getLogger("bench.experiments").warning("experiments applied: %s", chosen)
    return chosen
