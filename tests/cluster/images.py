"""Container images for the real node, built here without a registry.

No registry is reachable from these machines, so every image is made locally with
Debian's ``buildah`` and handed to the node's containerd as an OCI archive:

* ``localhost/barbeque-python``: the base the project's ``Dockerfile`` is built on here
  instead of the official ``python:3.11-slim`` (its ``PYTHON_IMAGE`` build argument).
  A minimal Debian bookworm made by ``mmdebstrap`` with python3, pip, passwd and
  ca-certificates. Cached by the hash of its recipe (a few minutes the first time).
* ``localhost/barbeque``: the project's image, built from ``Dockerfile`` exactly as a
  user builds it, only with the base above. Tagged by the hash of what the Dockerfile
  copies, so an unchanged tree is not rebuilt.
* ``localhost/barbeque-job``: a job image for examples and tests: busybox and a
  non-root user (uid 10001), so executions run real shell commands.
* ``localhost/barbeque-pause``: the pod sandbox image (busybox sleeping), as
  ``registry.k8s.io/pause`` cannot be pulled.

buildah's storage and the archives live in ``~/.cache/barbeque/images`` (outside the
checkout), like the Kubernetes binaries.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.cluster.binaries import BuildError, cache_root, file_lock

ROOT = Path(__file__).resolve().parents[2]
DEBIAN_SUITE = "bookworm"
# The base image's packages: what the Dockerfile's two stages call (python, pip,
# groupadd/useradd) and the CA bundle pip needs. No compiler, no perl.
BASE_PACKAGES = ("python3", "python3-pip", "python-is-python3", "passwd", "ca-certificates")
BASE_EXCLUDES = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/locale/*", "/usr/share/info/*")
# What the Dockerfile's COPY lines take into the build (keep in step with it).
APP_SOURCES = (
    "Dockerfile", "pyproject.toml", "README.md", "constraints.txt", "operator", "dashboard",
    "client",
)  # fmt: skip
JOB_UID = 10001

Progress = Callable[[str], None]


def _stderr(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def images_dir() -> Path:
    return cache_root() / "images"


def unavailable_reason() -> str | None:
    """Why images cannot be built on this machine, or None."""
    if os.geteuid() != 0:
        return "building images needs root (buildah with the overlay driver, mmdebstrap)"
    missing = [c for c in ("buildah", "mmdebstrap", "busybox") if not shutil.which(c)]
    if missing:
        packages = {"buildah": "buildah", "mmdebstrap": "mmdebstrap", "busybox": "busybox-static"}
        return "building images needs the Debian packages " + ", ".join(
            packages[m] for m in missing
        )
    return None


@dataclass(frozen=True)
class Images:
    """References of the built images and the OCI archives the node imports."""

    app: str
    job: str
    pause: str
    archives: tuple[Path, ...]


def buildah(*args: str, timeout: float = 1800.0, capture: bool = True) -> str:
    """Run buildah on the project's own storage (never the system's)."""
    store = images_dir() / "storage"
    cmd = [
        "buildah",
        "--root",
        str(store / "root"),
        "--runroot",
        str(store / "run"),
        "--storage-driver",
        "overlay",
        *args,
    ]
    result = subprocess.run(cmd, capture_output=capture, text=True, timeout=timeout)
    if result.returncode != 0:
        out = (result.stderr or "") + (result.stdout or "") if capture else ""
        raise BuildError(f"buildah {' '.join(args[:3])} ... failed: {out.strip()[-3000:]}")
    return (result.stdout or "").strip()


@contextlib.contextmanager
def _scratch_image(ref: str) -> Iterator[str]:
    """A buildah working container from scratch for the block to fill and configure; it is
    committed as ``ref`` when the block ends without an error, and removed in any case."""
    container = buildah("from", "scratch")
    try:
        yield container
        buildah("commit", "--quiet", container, ref)
    finally:
        buildah("rm", container)


def image_exists(ref: str) -> bool:
    try:
        return bool(buildah("images", "--quiet", ref))
    except BuildError:
        return False


def _digest(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()[:12]


def base_ref() -> str:
    recipe = json.dumps([DEBIAN_SUITE, BASE_PACKAGES, BASE_EXCLUDES, "merged-usr", "essential"])
    return f"localhost/barbeque-python:{DEBIAN_SUITE}-{_digest(recipe)}"


def build_base(progress: Progress) -> str:
    """The Debian base with Python, made by mmdebstrap (cached by its recipe)."""
    ref = base_ref()
    if image_exists(ref):
        return ref
    progress(f"building {ref} with mmdebstrap (first time on this machine, ~2 min)…")
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="barbeque-base-", dir=images_dir()) as tmp:
        tarball = Path(tmp) / "rootfs.tar"
        cmd = [
            "mmdebstrap",
            "--variant=essential",
            "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
            f"--include={','.join(BASE_PACKAGES)}",
            *(f"--dpkgopt=path-exclude={pattern}" for pattern in BASE_EXCLUDES),
            DEBIAN_SUITE,
            str(tarball),
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        if result.returncode != 0:
            raise BuildError(f"mmdebstrap failed: {result.stderr.strip()[-3000:]}")
        with _scratch_image(ref) as container:
            buildah("add", container, str(tarball), "/")
            path = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
            buildah("config", "--env", path, "--env", "LANG=C.UTF-8", "--cmd", "python3", container)
    progress(f"  {ref} ready in {time.monotonic() - start:.0f} s")
    return ref


def _busybox_image(ref: str, cmd: list[str], progress: Progress) -> str:
    """A from-scratch image of busybox (static) and its applets, user 10001."""
    if image_exists(ref):
        return ref
    busybox = shutil.which("busybox")
    assert busybox is not None
    with _scratch_image(ref) as container:
        rootfs = Path(buildah("mount", container))
        (rootfs / "bin").mkdir()
        shutil.copy2(busybox, rootfs / "bin" / "busybox")
        applets = subprocess.run(
            [busybox, "--list"], capture_output=True, text=True, check=True
        ).stdout.split()
        for applet in applets:
            link = rootfs / "bin" / applet
            if not link.exists():
                link.symlink_to("busybox")
        for d in ("etc", "tmp", "home/job"):
            (rootfs / d).mkdir(parents=True, exist_ok=True)
        (rootfs / "tmp").chmod(0o1777)
        (rootfs / "etc" / "passwd").write_text(
            f"root:x:0:0:root:/root:/bin/sh\njob:x:{JOB_UID}:{JOB_UID}:job:/home/job:/bin/sh\n"
        )
        (rootfs / "etc" / "group").write_text(f"root:x:0:\njob:x:{JOB_UID}:\n")
        os.chown(rootfs / "home" / "job", JOB_UID, JOB_UID)
        buildah("umount", container)
        buildah(
            "config",
            "--user",
            f"{JOB_UID}:{JOB_UID}",
            "--workingdir",
            "/home/job",
            "--env",
            "PATH=/bin",
            "--cmd",
            json.dumps(cmd),
            container,
        )
    progress(f"  built {ref}")
    return ref


def job_ref() -> str:
    busybox = shutil.which("busybox")
    content = Path(busybox).read_bytes() if busybox else b""
    return f"localhost/barbeque-job:{_digest(content, str(JOB_UID))}"


def pause_ref() -> str:
    return job_ref().replace("barbeque-job:", "barbeque-pause:")


def _source_digest() -> str:
    """Hash of every file the Dockerfile copies, as they are in the work tree."""
    h = hashlib.sha256()
    for name in APP_SOURCES:
        path = ROOT / name
        files = [path] if path.is_file() else sorted(
            p for p in path.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and not p.name.endswith(".pyc")
            and ".egg-info" not in str(p)
        )  # fmt: skip
        for f in files:
            h.update(str(f.relative_to(ROOT)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def app_ref(base: str) -> str:
    return f"localhost/barbeque:{_digest(_source_digest(), base)}"


def build_app(base: str, progress: Progress) -> str:
    """``buildah build`` of the project's Dockerfile on ``base``.

    The build needs PyPI (the builder stage runs ``pip wheel``): it shares the host's
    network and sees the host's CA bundle, as the machine's own pip does; neither
    changes what the Dockerfile does elsewhere.
    """
    ref = app_ref(base)
    if image_exists(ref):
        return ref
    progress(f"building {ref} from Dockerfile with buildah (~1 min)…")
    start = time.monotonic()
    # No --layers: buildah's layer cache keys a RUN step by its text, not by what a
    # --mount from another stage holds, so it would reuse a final stage of stale wheels.
    args = [
        "build",
        "--network",
        "host",
        "--build-arg",
        f"PYTHON_IMAGE={base}",
        "--tag",
        ref,
    ]
    bundle = Path("/etc/ssl/certs/ca-certificates.crt")
    if bundle.exists():
        args += ["--volume", f"{bundle}:{bundle}:ro"]
    buildah(*args, "--file", str(ROOT / "Dockerfile"), str(ROOT))
    buildah("rmi", "--prune")  # the builder stage's image, and earlier untagged ones
    progress(f"  {ref} ready in {time.monotonic() - start:.0f} s")
    return ref


def archive(ref: str) -> Path:
    """An OCI archive of ``ref`` for ``ctr images import`` (cached by tag)."""
    name = ref.removeprefix("localhost/").replace(":", "_").replace("/", "_") + ".oci.tar"
    path = images_dir() / "archives" / name
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    buildah("push", "--quiet", ref, f"oci-archive:{partial}:{ref}")
    partial.replace(path)
    return path


def ensure_images(progress: Progress | None = None, *, app: bool = True) -> Images:
    """Build what is missing (base, job, pause, and with ``app`` the project's image)."""
    report = progress or _stderr
    reason = unavailable_reason()
    if reason:
        raise BuildError(reason)
    with file_lock(images_dir() / ".build.lock"):
        job = _busybox_image(job_ref(), ["sh"], report)
        pause = _busybox_image(pause_ref(), ["sleep", "2147483647"], report)
        refs = [job, pause]
        app_image = ""
        if app:
            app_image = build_app(build_base(report), report)
            refs.append(app_image)
        return Images(app=app_image, job=job, pause=pause, archives=tuple(archive(r) for r in refs))


def image_sizes(ref: str) -> tuple[str, int]:
    """(uncompressed size as buildah prints it, bytes of its gzip-compressed OCI archive)."""
    uncompressed = buildah("images", "--format", "{{.Size}}", ref)
    return uncompressed, archive(ref).stat().st_size
