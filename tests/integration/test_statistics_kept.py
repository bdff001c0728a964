"""The statistics page counts executions that history collection deleted: the operator
(its own process) keeps their hourly buckets in a ConfigMap before deleting them, and the
console (its own process) shows them, also after it restarts.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from barbeque.services.statistics import HourlyStatistics, configmap_name
from tests.cluster.harness import ApiError, Cluster
from tests.support.aws import Aws
from tests.support.operator import (
    App,
    OperatorProcess,
    application,
    local_operator,
)
from tests.support.waiting import wait_until
from tests.support.webapi_servers import Service, start_service

pytestmark = pytest.mark.integration


@pytest.fixture
def collecting_operator(
    cluster: Cluster, aws: Aws, crds: None, tmp_path: Path
) -> Iterator[OperatorProcess]:
    """An operator sweeping history every second."""
    process = local_operator(
        cluster, aws.endpoint_url, tmp_path / "operator.log", BARBEQUE_HISTORY_INTERVAL_SECONDS="1"
    ).start()
    try:
        yield process
    finally:
        process.stop()


def counted(service: Service, app: App, job: str) -> int | None:
    page = service.client().get(
        f"/applications/{app.namespace}/job_definitions/{job}/statistics", params={"days": 30}
    )
    found = re.search(r"(\d+) executions in the last 30 days", page.text)
    return int(found.group(1)) if page.status_code == 200 and found else None


def test_collected_executions_still_count_on_the_statistics_page(
    cluster: Cluster, aws: Aws, collecting_operator: OperatorProcess, tmp_path: Path
) -> None:
    for run in ("console-1", "console-2"):
        (tmp_path / run).mkdir()
    service = start_service(cluster, aws, tmp_path / "console-1")
    try:
        with application(cluster, aws) as app:
            definition = app.define("tally", history={"keep": 1})
            for i in range(3):
                app.enqueue("tally", {"i": i})

            def kept() -> HourlyStatistics | None:
                try:
                    body = cluster.api(
                        "GET",
                        f"/api/v1/namespaces/{app.namespace}/configmaps/{configmap_name('tally')}",
                    )
                except ApiError:
                    return None
                stats = HourlyStatistics.from_configmap(body)
                return stats if sum(b.count for b in stats.hours.values()) == 2 else None

            stats = wait_until("two executions collected into statistics", kept, timeout=120)
            wait_until("one execution left", lambda: len(app.executions()) == 1, timeout=30)
            assert sum(b.timed for b in stats.hours.values()) == 2
            body = cluster.api(
                "GET", f"/api/v1/namespaces/{app.namespace}/configmaps/{configmap_name('tally')}"
            )
            assert body["metadata"]["ownerReferences"][0]["uid"] == definition["metadata"]["uid"]

            wait_until("the page to count all three", lambda: counted(service, app, "tally") == 3)
            service.close()
            service = start_service(cluster, aws, tmp_path / "console-2")
            assert (
                wait_until(
                    "the restarted console to count all three",
                    lambda: counted(service, app, "tally"),
                )
                == 3
            )
    finally:
        service.close()
