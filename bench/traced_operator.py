"""The operator, unchanged, with timers around its adapter calls: where does the time go?

``python -m bench.traced_operator operator [--liveness URL]`` runs ``barbeque``'s own
command line after wrapping, at run time (no source edited):

- every ``Sqs._call`` and ``S3._call``: time waiting for a thread of the pool ("queued"),
  running the blocking SDK call ("call"), and from the call's end until the coroutine
  resumed on the event loop ("resume");
- every ``Kube._request`` (aiohttp on the event loop, no thread): wall time per call, by
  the adapter's verb;
- ``Poller.handle`` (record a received batch and delete it), ``Intake.record`` and
  ``Reconciler.reconcile``: wall time per call;
- the event loop's lag: a task sleeping 50 ms measures how late it wakes.

Figures are written as JSON to ``$BARBEQUE_BENCH_TRACE`` every 2 s and at exit (no
timers without it).
``$BARBEQUE_BENCH_TRACEMALLOC=path``: tracemalloc on; SIGUSR1 writes the top allocations.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

_LOCK = threading.Lock()
_SAMPLES: dict[str, list[list[float]]] = defaultdict(list)
_PATH = os.environ.get("BARBEQUE_BENCH_TRACE", "")
_MAX = 20_000
_TASKS: list[asyncio.Task[None]] = []


def record(name: str, *values: float) -> None:
    with _LOCK:
        samples = _SAMPLES[name]
        if len(samples) < _MAX:
            samples.append(list(values))


def dump() -> None:
    if not _PATH:
        return
    with _LOCK:
        data = {k: list(v) for k, v in _SAMPLES.items()}
    tmp = _PATH + ".tmp"
    with open(tmp, "w") as handle:
        json.dump(data, handle)
    os.replace(tmp, _PATH)


def _wrap_call(cls: Any, service: str) -> None:
    original = cls._call

    async def _call(self: Any, verb: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        submitted = time.perf_counter()
        marks: dict[str, float] = {}

        def timed(*a: Any, **k: Any) -> Any:
            marks["start"] = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                marks["end"] = time.perf_counter()

        try:
            return await original(self, verb, timed, *args, **kwargs)
        finally:
            resumed = time.perf_counter()
            start = marks.get("start", resumed)
            end = marks.get("end", resumed)
            record(f"{service}.{verb}", start - submitted, end - start, resumed - end)

    cls._call = _call


def _wrap_request(cls: Any, service: str) -> None:
    """Time an awaitable adapter method whose first argument names the call (its verb)."""
    original = cls._request

    async def _request(self: Any, verb: str, *args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        try:
            return await original(self, verb, *args, **kwargs)
        finally:
            record(f"{service}.{verb}", time.perf_counter() - began)

    cls._request = _request


def _wrap_async(cls: Any, method: str, name: str) -> None:
    original = getattr(cls, method)

    async def timed(self: Any, *args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        try:
            return await original(self, *args, **kwargs)
        finally:
            record(name, time.perf_counter() - began)

    setattr(cls, method, timed)


async def _lag_monitor() -> None:
    while True:
        began = time.perf_counter()
        await asyncio.sleep(0.05)
        record("loop.lag", time.perf_counter() - began - 0.05)


async def _dumper() -> None:
    while True:
        await asyncio.sleep(2.0)
        await asyncio.get_running_loop().run_in_executor(None, dump)


def install() -> None:
    from barbeque.adapters import kube, s3, sqs
    from barbeque.controller import manager
    from barbeque.services import intake, poller, reconciler

    _wrap_request(kube.Kube, "kube")
    _wrap_call(sqs.Sqs, "sqs")
    _wrap_call(s3.S3, "s3")
    _wrap_async(poller.Poller, "handle", "poller.handle")
    _wrap_async(intake.Intake, "record", "intake.record")
    _wrap_async(reconciler.Reconciler, "reconcile", "reconciler.reconcile")

    original_start = manager.Manager.start

    async def start(self: Any, *args: Any, **kwargs: Any) -> None:
        await original_start(self, *args, **kwargs)
        if not _TASKS:
            _TASKS.append(asyncio.create_task(_lag_monitor(), name="bench-lag"))
            _TASKS.append(asyncio.create_task(_dumper(), name="bench-dump"))

    manager.Manager.start = start  # type: ignore[method-assign]
    atexit.register(dump)


def _tracemalloc(path: str) -> None:
    """Trace allocations; on SIGUSR1 write the biggest holders (by line and by file) to path."""
    import signal
    import tracemalloc

    tracemalloc.start(1)

    def report(*_: Any) -> None:
        snapshot = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(False, tracemalloc.__file__)]
        )
        traced, peak = tracemalloc.get_traced_memory()
        lines = [f"traced {traced / 2**20:.1f} MiB (peak {peak / 2**20:.1f} MiB)", ""]
        for key in ("filename", "lineno"):
            lines.append(f"top by {key}:")
            for stat in snapshot.statistics(key)[:25]:
                frame = stat.traceback[0]
                where = frame.filename.split("site-packages/")[-1].split("/barbeque/")[-1]
                if key == "lineno":
                    where += f":{frame.lineno}"
                lines.append(f"  {stat.size / 2**20:8.1f} MiB {stat.count:9d} blocks  {where}")
            lines.append("")
        with open(path + ".tmp", "w") as handle:
            handle.write("\n".join(lines))
        os.replace(path + ".tmp", path)

    signal.signal(signal.SIGUSR1, report)


def main() -> int:
    malloc_path = os.environ.get("BARBEQUE_BENCH_TRACEMALLOC")
    if malloc_path:
        _tracemalloc(malloc_path)
    if _PATH:
        install()
    from barbeque.__main__ import main as barbeque_main

    return barbeque_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
