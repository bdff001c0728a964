"""Fixtures shared by every tier; each tier starts only the servers its tests ask for."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Generator
from typing import Any

import pytest

from tests.cluster.fixture import cluster, real_node
from tests.support.aws import aws, moto
from tests.support.operator import app, crds, operator
from tests.support.slack import slack

__all__ = ["app", "aws", "cluster", "crds", "moto", "operator", "real_node", "slack"]


def pytest_sessionstart(session: pytest.Session) -> None:
    """No implicit event loop: the looptime plugin asks the policy for the current loop
    around every test, and for a sync test that ran before any async one the policy
    would make a loop nobody closes (its sockets then warn, an error here)."""
    asyncio.get_event_loop_policy().set_event_loop(None)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Generator[None, Any, None]:
    """In CI a skip is a failure: a missing component must not pass as a green run."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where nothing may be skipped: {reason}"
