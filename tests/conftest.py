"""Fixtures shared by every tier; each tier starts only the servers its tests ask for."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.fixture import cluster, real_node
from tests.support.aws import aws, moto
from tests.support.operator import app, crds, operator
from tests.support.slack import slack

__all__ = ["app", "aws", "cluster", "crds", "moto", "operator", "real_node", "slack"]

TESTS = Path(__file__).parent
TIERS = ("unit", "integration", "e2e")
# The fixtures that build or start something (a control plane, moto, the Slack recorder,
# an operator, the Web API): the unit tier asks for none of them.
SERVER_FIXTURES = frozenset(
    {*__all__, "service", "webapp", "operator_process"}  # tests/support/webapi_servers.py
)


def pytest_sessionstart(session: pytest.Session) -> None:
    """No implicit event loop: the looptime plugin asks the policy for the current loop
    around every test, and for a sync test that ran before any async one the policy
    would make a loop nobody closes (its sockets then warn, an error here)."""
    asyncio.get_event_loop_policy().set_event_loop(None)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Markers say the truth: a test carries the marker of its folder and no other, so
    ``-m unit`` selects exactly tests/unit, and a unit test starts no server."""
    wrong = []
    for item in items:
        folder = item.path.relative_to(TESTS).parts[0]
        marked = {mark.name for mark in item.iter_markers() if mark.name in TIERS}
        if folder in TIERS and marked != {folder}:
            wrong.append(f"{item.nodeid}: in tests/{folder}, marked {sorted(marked)}")
        servers = SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ()))
        if folder == "unit" and servers:
            wrong.append(f"{item.nodeid}: a unit test using {sorted(servers)}")
    if wrong:
        raise pytest.UsageError("tier markers do not match:\n  " + "\n  ".join(wrong))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Generator[None, Any, None]:
    """In CI a skip is a failure: a missing component must not pass as a green run."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where nothing may be skipped: {reason}"
