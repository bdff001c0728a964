"""The image built from ``Dockerfile``, run as a container (buildah and runc, no engine).

What the chart relies on and a user would check first: it runs as uid 10001, carries no
compiler, and its entry point answers. (The console starting inside it, with probes
passing, is test_real_node.py's chart test.)
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster import images

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
COMPILERS = ("gcc", "cc", "c++", "g++", "clang", "make", "ld", "as")


@pytest.fixture(scope="module")
def app_image() -> str:
    reason = images.unavailable_reason()
    if reason:
        pytest.skip(f"image tier skipped: {reason}")
    return images.ensure_images().app


@pytest.fixture
def container(app_image: str) -> Iterator[str]:
    name = images.buildah("from", "--pull-never", app_image)
    try:
        yield name
    finally:
        images.buildah("rm", name)


def run(container: str, *command: str) -> str:
    return images.buildah("run", "--network", "none", container, "--", *command)


def test_the_image_runs_as_uid_10001(container: str) -> None:
    assert run(container, "id", "-u") == "10001"
    assert run(container, "id", "-g") == "10001"


def test_the_image_has_no_compiler(container: str) -> None:
    script = "; ".join(f"command -v {c} || true" for c in COMPILERS)
    assert run(container, "sh", "-c", script) == ""


def test_barbeque_help_answers_in_the_image(container: str) -> None:
    usage = run(container, "barbeque", "--help")
    assert "operator" in usage
    assert "Barbeque on Kubernetes" in usage


def test_the_console_module_imports_in_the_image(container: str) -> None:
    # Imported the way the chart's console container starts it (python -m barbeque_dashboard).
    out = run(container, "python", "-c", "import barbeque_dashboard.__main__, sys; print('ok')")
    assert out == "ok"


def test_the_image_holds_every_file_of_the_console_package(container: str) -> None:
    listed = run(
        container, "python", "-c",
        "import barbeque_dashboard, pathlib; p = pathlib.Path(barbeque_dashboard.__file__).parent;"
        "print('\\n'.join(sorted(f.relative_to(p).as_posix() for f in p.rglob('*')"
        " if f.is_file() and '__pycache__' not in f.parts)))",
    ).splitlines()  # fmt: skip
    package = ROOT / "dashboard" / "barbeque_dashboard"
    expected = sorted(
        f.relative_to(package).as_posix()
        for f in package.rglob("*")
        if f.is_file() and "__pycache__" not in f.parts
    )
    assert listed == expected


def test_the_crds_the_image_generates_are_the_checked_in_ones(container: str) -> None:
    for crd in sorted((ROOT / "crds").glob("*.yaml")):
        kind = crd.stem.split("_", 1)[1]
        generated = run(
            container, "python", "-c",
            "from barbeque.api.crdgen import render_all; import sys;"
            f"sys.stdout.write(render_all()[{crd.name!r}])",
        )  # fmt: skip
        assert generated.strip() == crd.read_text().strip(), kind
