"""The session-scoped ``cluster`` pytest fixture: one real control plane per test run.

Import it into a conftest (``from tests.cluster.fixture import cluster``). On a
machine without the cached binaries it builds them (5-15 min the first time,
with progress shown despite output capture). Outside CI it skips the tier when
``go`` is missing; with ``CI`` set it never skips, so a broken toolchain fails
the run instead of hiding it. ``BARBEQUE_CLUSTER_WORKDIR=<workdir of up>``
reuses a cluster started by ``python -m tests.cluster up`` instead.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Generic, TypeVar

import pytest

from tests.cluster import binaries, images, realnode
from tests.cluster.harness import Cluster
from tests.cluster.realnode import RealNode

# Set to a workdir of `python -m tests.cluster up` to reuse that cluster (saves
# its start-up time when re-running tests by hand); it is not stopped after.
ATTACH_ENV = "BARBEQUE_CLUSTER_WORKDIR"


T = TypeVar("T")


class Shared(Generic[T]):
    """One instance for the session, though every module that imports a session fixture
    holds a fixture of its own: the first user starts it, the last one stops it."""

    def __init__(self) -> None:
        self.instance: T | None = None
        self.users = 0

    @contextlib.contextmanager
    def use(self, start: Callable[[], T], stop: Callable[[T], None]) -> Iterator[T]:
        if self.instance is None:
            self.instance = start()
        instance = self.instance
        self.users += 1
        try:
            yield instance
        finally:
            self.users -= 1
            if self.users <= 0:
                self.instance = None
                stop(instance)


_shared_cluster: Shared[Cluster] = Shared()


@contextlib.contextmanager
def _alarm_paused() -> Iterator[None]:
    """Pause pytest-timeout's SIGALRM (signal method) while a cold build runs."""
    remaining, _interval = signal.getitimer(signal.ITIMER_REAL)
    if remaining:
        signal.setitimer(signal.ITIMER_REAL, 0)
    try:
        yield
    finally:
        if remaining:
            signal.setitimer(signal.ITIMER_REAL, remaining)


def _show(request: pytest.FixtureRequest) -> contextlib.AbstractContextManager[None]:
    capman = request.config.pluginmanager.getplugin("capturemanager")
    if capman is None:
        return contextlib.nullcontext()
    return capman.global_and_fixture_disabled()  # type: ignore[no-any-return]


def _progress(message: str) -> None:
    sys.stderr.write(f"[cluster] {message}\n")
    sys.stderr.flush()


def ensure_binaries_or_skip(request: pytest.FixtureRequest) -> None:
    """Build missing binaries, or skip outside CI when there is no Go toolchain."""
    missing = binaries.missing_binaries()
    if not missing:
        return
    if binaries.find_go() is None and not os.environ.get("CI"):
        pytest.skip(
            "cluster tier skipped: the Go toolchain ('go') is needed to build "
            f"{', '.join(missing)} into {binaries.bin_dir()} "
            "(or run `python -m tests.cluster build` "
            "on a machine with Go)"
        )
    with _show(request), _alarm_paused():
        binaries.ensure_binaries(_progress)


@pytest.fixture(scope="session")
def cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    """A started :class:`Cluster` (kubeconfig, server, kubectl(), api(), ...) for the session."""
    borrowed = os.environ.get(ATTACH_ENV)
    if borrowed and _shared_cluster.instance is None:
        # A cluster from `python -m tests.cluster up`: reuse it, leave it running.
        yield Cluster.attach(Path(borrowed).expanduser())
        return

    def start() -> Cluster:
        ensure_binaries_or_skip(request)
        instance = Cluster(tmp_path_factory.mktemp("cluster"), build=False, progress=_progress)
        with _show(request):
            instance.start()
        instance.progress = lambda _msg: None
        return instance

    with _shared_cluster.use(start, _stop) as instance:
        yield instance


def _stop(instance: Cluster) -> None:
    instance.stop()
    # etcd preallocates 64 MB WAL files; pytest keeps old tmp dirs around.
    shutil.rmtree(instance.workdir / "etcd", ignore_errors=True)


def _missing_for_real_node() -> str | None:
    return realnode.unavailable_reason() or images.unavailable_reason()


@pytest.fixture(scope="session")
def real_node(request: pytest.FixtureRequest, cluster: Cluster) -> Iterator[RealNode]:
    """The session cluster's real node (containerd + kubelet) with the project's images.

    Builds the images the first time on a machine (the Debian base ~2 min, the project's
    image ~1 min, then cached by content). Outside CI the tier is skipped when the machine
    cannot run containers (not root, no runc/containerd/buildah): the message says what is
    missing; in CI that skip fails the run.
    """
    if cluster.real_node is not None:
        yield cluster.real_node
        return
    reason = _missing_for_real_node()
    if reason:
        pytest.skip(f"real-node tier skipped: {reason}")
    with _show(request), _alarm_paused():
        built = images.ensure_images(_progress)
        node = cluster.start_real_node(built.archives, built.pause)
    node.built = built
    try:
        yield node
    finally:
        node.stop()
        cluster.real_node = None
