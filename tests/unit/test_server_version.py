"""The operator's floor on the Kubernetes version, and the chart saying the same to helm."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
import yaml

from barbeque.services import compat
from tests.unit import test_kube_errors

pytestmark = pytest.mark.unit

# The loopback API server of the adapter's own tests.
server = test_kube_errors.server

CHART = Path(__file__).resolve().parents[2] / "charts" / "barbeque" / "Chart.yaml"


def version(git: str, major: str = "1", minor: str = "") -> dict[str, str]:
    return {"major": major, "minor": minor, "gitVersion": git, "platform": "linux/amd64"}


@pytest.mark.parametrize(
    ("info", "expected"),
    [
        (version("v1.31.0", minor="31"), (1, 31)),
        (version("v1.34.4", minor="34"), (1, 34)),
        (version("v1.31.2-eks-7f9249a", minor="31+"), (1, 31)),
        (version("", minor="32+"), (1, 32)),
        (version("v1.30.14-gke.1", minor="30+"), (1, 30)),
        ({"major": "", "minor": "", "gitVersion": "unknown"}, None),
        ({}, None),
    ],
)
def test_the_version_is_read_from_git_version_then_major_and_minor(
    info: dict[str, Any], expected: tuple[int, int] | None
) -> None:
    assert compat.server_version(info) == expected


@pytest.mark.parametrize("git", ["v1.31.0", "v1.31.2-eks-7f9249a", "v1.34.4", "v2.0.0"])
def test_a_server_of_1_31_or_later_is_accepted(git: str) -> None:
    compat.require_supported(version(git))


@pytest.mark.parametrize("git", ["v1.30.14", "v1.29.0-gke.1", "v1.27.3"])
def test_an_older_server_is_refused_naming_its_version_the_floor_and_why(git: str) -> None:
    with pytest.raises(compat.UnsupportedServer) as refused:
        compat.require_supported(version(git))
    message = str(refused.value)
    assert f"Kubernetes {git}" in message
    assert "1.31 or later" in message
    assert "selectableFields" in message


def test_a_server_that_names_no_version_is_let_through_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="barbeque.services.compat"):
        compat.require_supported({"gitVersion": "custom-build"})
    assert "needs Kubernetes 1.31 or later" in caplog.text


async def test_the_adapter_asks_get_version_and_an_old_answer_is_refused(server: Any) -> None:
    api, kube = server
    api.answer = (200, json.dumps(version("v1.30.4", minor="30")))
    info = await kube.server_version()
    assert api.requests[-1]["method"] == "GET"
    assert api.requests[-1]["path"] == "/version"
    with pytest.raises(compat.UnsupportedServer, match=r"Kubernetes v1\.30\.4"):
        compat.require_supported(info)


def test_the_charts_kube_version_is_the_operators_floor() -> None:
    declared = yaml.safe_load(CHART.read_text())["kubeVersion"]
    major, minor = compat.MIN_KUBERNETES
    assert declared == f">={major}.{minor}.0-0", "Chart.yaml kubeVersion and compat disagree"
