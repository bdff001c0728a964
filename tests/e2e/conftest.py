"""What the e2e modules share besides tests/support: a directory per module."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def workdir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One directory for the module's processes: their logs, kubeconfigs and state."""
    return tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
