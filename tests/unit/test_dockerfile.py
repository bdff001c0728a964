"""The Dockerfile, checked without a Docker engine.

This machine (and CI) cannot build images, so the Dockerfile is judged in two ways: its
instructions are parsed and held to the rules the chart relies on (pinned base, non-root
uid 10001, no compilers in the final stage, the ports and entry point the chart uses),
and its install steps are replayed in a fresh virtualenv: the project's wheel is built
from exactly what the builder stage copies, the dependency wheels (dashboard extra
included) are collected beside it, and the final stage's offline install runs from them.
The replay is slow (about a minute), hence the integration marker.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
VALUES = ROOT / "charts" / "barbeque" / "values.yaml"

# Packages that mean a compiler toolchain (or headers for one) in an image.
BUILD_TOOLS = re.compile(
    r"\b(gcc|g\+\+|clang|make|build-essential|cmake|rustc|cargo|[a-z0-9.+-]+-dev)\b"
)


@dataclass
class Instruction:
    keyword: str
    arguments: str
    line: int


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def parse_dockerfile(text: str) -> list[Stage]:
    """Stages and instructions, with comments dropped and continuation lines joined."""
    stages: list[Stage] = []
    pending = ""
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical = pending + stripped
        pending = ""
        keyword, _, arguments = logical.partition(" ")
        keyword = keyword.upper()
        arguments = " ".join(arguments.split())
        if keyword == "FROM":
            words = [w for w in arguments.split() if not w.startswith("--")]
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=words[0], name=name))
        else:
            assert stages, f"line {start}: {keyword} before any FROM"
            stages[-1].instructions.append(Instruction(keyword, arguments, start))
    assert not pending, "the Dockerfile ends inside a continued line"
    return stages


def exec_form(instruction: Instruction) -> list[str]:
    value = json.loads(instruction.arguments)
    assert isinstance(value, list), f"line {instruction.line}: use the exec (JSON) form"
    return [str(v) for v in value]


def dockerignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text().splitlines()
    return [p.strip().rstrip("/") for p in lines if p.strip() and not p.startswith("#")]


def ignored(relative: str, patterns: list[str]) -> bool:
    """Whether .dockerignore keeps a path out of the build context (no `!` rules used)."""
    parts = relative.split("/")
    for pattern in patterns:
        bare = pattern.removeprefix("**/")
        for depth in range(1, len(parts) + 1):
            prefix = "/".join(parts[:depth])
            if fnmatch.fnmatchcase(prefix, pattern):
                return True
            if pattern.startswith("**/") and fnmatch.fnmatchcase(parts[depth - 1], bare):
                return True
    return False


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def values() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(VALUES.read_text())
    return loaded


def copied_sources(stage: Stage) -> list[str]:
    sources: list[str] = []
    for copy in stage.all("COPY"):
        words = [w for w in copy.arguments.split() if not w.startswith("--")]
        sources.extend(w.rstrip("/") for w in words[:-1])
    return sources


@pytest.mark.unit
def test_every_stage_starts_from_the_same_exactly_pinned_python_slim_image(
    stages: list[Stage],
) -> None:
    assert len(stages) >= 2, "a builder stage and a final stage"
    for stage in stages:
        assert re.fullmatch(r"python:3\.11\.\d+-slim-[a-z]+", stage.base), (
            f"{stage.base}: pin an exact tag such as python:3.11.11-slim-bookworm"
        )
    assert len({stage.base for stage in stages}) == 1, "builder and runtime share one base"


@pytest.mark.unit
def test_the_builder_makes_wheels_of_the_project_and_its_dependencies(
    stages: list[Stage],
) -> None:
    runs = " ".join(i.arguments for i in stages[0].all("RUN"))
    assert "pip wheel --no-deps" in runs
    assert "[dashboard]" in runs, "the dashboard extra is part of the image"
    for source in copied_sources(stages[0]):
        assert (ROOT / source).exists(), f"COPY {source}: no such path in the repository"


@pytest.mark.unit
def test_the_final_stage_installs_offline_from_wheels_without_build_tools(
    stages: list[Stage],
) -> None:
    final = stages[-1]
    runs = " ".join(i.arguments for i in final.all("RUN"))
    assert "--no-index" in runs
    assert "--find-links" in runs
    assert "apt-get install" not in runs, "the final stage installs no system packages"
    assert not BUILD_TOOLS.search(runs), f"build tools in the final stage: {runs}"
    copies = [c.arguments for c in final.all("COPY")]
    assert not any("/wheels" in c for c in copies), "bind-mount the wheels: no layer for them"


@pytest.mark.unit
def test_the_final_stage_runs_as_the_non_root_uid_the_chart_expects(
    stages: list[Stage], values: dict[str, Any]
) -> None:
    users = stages[-1].all("USER")
    assert users, "the final stage sets USER"
    uid = users[-1].arguments.split(":")[0]
    assert uid.isdigit(), "a numeric uid, so runAsNonRoot can verify it"
    assert uid not in ("0", "root")
    for component in ("operator", "dashboard"):
        assert values[component]["podSecurityContext"]["runAsUser"] == int(uid)


@pytest.mark.unit
def test_entry_point_and_ports_match_the_chart(stages: list[Stage], values: dict[str, Any]) -> None:
    final = stages[-1]
    assert exec_form(final.all("ENTRYPOINT")[-1]) == ["barbeque"]
    assert exec_form(final.all("CMD")[-1]) == ["operator"]
    exposed = {int(p.split("/")[0]) for e in final.all("EXPOSE") for p in e.arguments.split()}
    assert exposed == {
        values["operator"]["metricsPort"],
        values["operator"]["healthPort"],
        values["dashboard"]["port"],
    }


@pytest.mark.unit
def test_dockerignore_keeps_local_state_out_but_not_what_the_build_copies(
    stages: list[Stage],
) -> None:
    patterns = dockerignore_patterns()
    for local in (".git", ".venv", ".pytest_cache", ".mypy_cache", "operator/x/__pycache__"):
        assert ignored(local, patterns), f"{local} should be in .dockerignore"
    for source in copied_sources(stages[0]):
        assert not ignored(source, patterns), f"COPY {source} is excluded by .dockerignore"


def _run(*args: str | Path, cwd: Path | None = None, timeout: float = 600) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    result = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, (
        f"{' '.join(map(str, args))} failed ({result.returncode}):\n"
        f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result.stdout


def _copy_context(stage: Stage, destination: Path) -> None:
    """What the builder stage's COPY lines put in /src, minus what .dockerignore drops."""
    patterns = dockerignore_patterns()
    for source in copied_sources(stage):
        path = ROOT / source
        if path.is_file():
            shutil.copy2(path, destination / source)
            continue
        for file in path.rglob("*"):
            relative = file.relative_to(ROOT).as_posix()
            if file.is_file() and not ignored(relative, patterns):
                target = destination / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(file, target)


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_the_image_install_steps_produce_a_working_barbeque_command(
    stages: list[Stage], tmp_path: Path
) -> None:
    context, wheels, venv = tmp_path / "src", tmp_path / "wheels", tmp_path / "venv"
    context.mkdir()
    _copy_context(stages[0], context)

    # builder: pip wheel --no-deps . ; pip wheel "<project wheel>[dashboard]"
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", wheels, context)
    [project_wheel] = wheels.glob("barbeque_k8s-*.whl")
    _run(sys.executable, "-m", "pip", "wheel", "--wheel-dir", wheels, f"{project_wheel}[dashboard]")

    # runtime: python -m venv ; pip install --no-index --find-links=/wheels ...
    _run(sys.executable, "-m", "venv", venv)
    _run(
        venv / "bin" / "pip",
        "install",
        "--no-index",
        f"--find-links={wheels}",
        "barbeque-k8s[dashboard]",
    )

    assert "operator" in _run(venv / "bin" / "barbeque", "--help")
    _run(venv / "bin" / "barbeque", "crds", "--check", "--dir", ROOT / "crds", cwd=tmp_path)

    # The dashboard's command in the chart, and the files it serves, are in the install.
    installed = _run(
        venv / "bin" / "python",
        "-c",
        "import barbeque_dashboard.__main__ as m, pathlib; print(pathlib.Path(m.__file__).parent)",
        cwd=tmp_path,
    ).strip()
    source_package = ROOT / "dashboard" / "barbeque_dashboard"
    missing = [
        file.relative_to(source_package).as_posix()
        for file in source_package.rglob("*")
        if file.is_file()
        and "__pycache__" not in file.parts
        and not (Path(installed) / file.relative_to(source_package)).exists()
    ]
    assert missing == [], "files of the dashboard package missing from the wheel"
