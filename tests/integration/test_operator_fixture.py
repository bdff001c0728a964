"""The in-process operator of the test harness is configured for its block only.

It is configured through its environment, as it ships; a later module's operator or a
service started from ``os.environ`` must not inherit those settings (two tests once saw
the operator's console URL in a Web API started after it).
"""

from __future__ import annotations

import os

import pytest

from barbeque.config import get_settings
from tests.cluster.harness import Cluster
from tests.support.aws import Aws
from tests.support.operator import OPERATOR_NAMESPACE, in_process_operator
from tests.support.slack import SlackRecorder

pytestmark = pytest.mark.integration


def barbeque_variables() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith("BARBEQUE_")}


def test_the_in_process_operator_leaves_no_settings_behind(
    cluster: Cluster, aws: Aws, slack: SlackRecorder, crds: None
) -> None:
    before = barbeque_variables()
    kubeconfig = os.environ.get("KUBECONFIG")
    with in_process_operator(cluster, aws, slack):
        assert get_settings().console_url == "http://console.test"
        assert os.environ["BARBEQUE_NAMESPACE"] == OPERATOR_NAMESPACE
    assert barbeque_variables() == before
    assert os.environ.get("KUBECONFIG") == kubeconfig
    assert get_settings().console_url == before.get("BARBEQUE_CONSOLE_URL")
