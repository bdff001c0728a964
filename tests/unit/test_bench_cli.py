"""Each benchmark script's own flags reach its scenario as keywords.

``bench.cli.bench_main`` calls the scenario with the script's own flags by their dests, so
a flag whose dest is not a parameter of the scenario fails only when someone runs the
benchmark; this finds it without a cluster.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

BENCH = Path(__file__).resolve().parents[2] / "bench"
SCRIPTS = sorted(
    path.stem
    for path in BENCH.glob("*.py")
    if "bench_main(" in path.read_text() and path.stem != "cli"
)


def test_every_scenario_script_uses_bench_main() -> None:
    assert len(SCRIPTS) == 11, SCRIPTS


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_flags_bind_to_its_scenario(name: str) -> None:
    module = importlib.import_module(f"bench.{name}")
    scenario = "scenario" if hasattr(module, "scenario") else "run"
    call = f'bench_main("{name}", __doc__, arguments, {scenario})'
    assert call in (BENCH / f"{name}.py").read_text()
    parser = argparse.ArgumentParser()
    module.arguments(parser)
    flags = vars(parser.parse_args([]))
    inspect.signature(getattr(module, scenario)).bind(None, **flags)
