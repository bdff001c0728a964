"""The Dockerfile's rules, read from its text (no build needed).

Its instructions are parsed and held to the rules the chart relies on: an exactly pinned
base by default, non-root uid 10001, no compilers in the final stage, the ports and entry
point the chart uses. The image itself is built from this file with buildah and run in
tests/e2e/test_image.py and, through the chart, in tests/e2e/test_real_node.py.
"""

from __future__ import annotations

import fnmatch
import json
import re
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
    build_args: dict[str, str] = {}
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
        if keyword == "ARG" and not stages:
            # A global build argument: its default is what FROM lines see without --build-arg.
            name, _, default = arguments.partition("=")
            build_args[name] = default
        elif keyword == "FROM":
            words = [w for w in arguments.split() if not w.startswith("--")]
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            base = re.sub(r"\$\{(\w+)\}", lambda m: build_args.get(m.group(1), ""), words[0])
            stages.append(Stage(base=base, name=name))
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
