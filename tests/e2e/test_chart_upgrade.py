"""``helm upgrade`` from the previous chart to this one, with executions in flight.

The previous chart (0.1.0, packaged with ``helm package`` from git) installs the CRDs of
its crds/ directory, which helm never upgrades. Executions run (kwok keeps their pods
Running for a while) while ``helm upgrade --take-ownership --set crds.install=true``
moves to the working tree's chart: the CRDs become release objects and are updated in
place, no execution or Job is lost or made twice, and the ``keep`` policy leaves the
CRDs, and so every execution, in place when crds.install is turned off again or the
release is uninstalled.

Its own control plane: the test downgrades and adopts the cluster-scoped CRDs, which the
session's cluster shares with every other test.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster.fixture import ensure_binaries_or_skip
from tests.cluster.harness import Cluster
from tests.support.aws import Aws
from tests.support.operator import GROUP, App, OperatorProcess, application, operator_env
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
# The last chart whose CRDs differ from today's: its JobDefinition has no
# startDeadlineSeconds (default 600), which b7196d2 added. Pinned rather than "main's
# merge-base", which is this very chart once the branch is merged.
PREVIOUS_CHART = "6253c9aa938fe64c64dffe549c1c6722640b150f"
RELEASE, NAMESPACE = "bbq", "barbeque-system"
KEEP_RUNNING_MS = "25000"  # each pod's Running time under kwok
EXECUTIONS = 6
CRD_NAMES = ("jobqueues", "jobdefinitions", "jobexecutions")
# Kinds that came after 0.1.0: the upgrade creates their CRDs.
NEW_CRD_NAMES = ("snssubscriptions",)
# Both charts run without pods: the operator is the local process below.
NO_PODS = ("--set", "operator.replicas=0", "--set", "dashboard.enabled=false")


@pytest.fixture(scope="module")
def own_cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    ensure_binaries_or_skip(request)
    instance = Cluster(tmp_path_factory.mktemp("upgrade-cluster"), build=False)
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()
        shutil.rmtree(instance.workdir / "etcd", ignore_errors=True)


def package_previous_chart(cluster: Cluster, into: Path) -> Path:
    """``helm package`` of charts/barbeque as it was at PREVIOUS_CHART."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", PREVIOUS_CHART, "charts/barbeque"],
        capture_output=True,
        check=False,
    )
    assert archive.returncode == 0, (
        f"git archive {PREVIOUS_CHART} failed (a shallow clone lacks it): {archive.stderr!r}"
    )
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="data")
    cluster.helm("package", str(into / "charts" / "barbeque"), "--destination", str(into))
    [packaged] = into.glob("barbeque-*.tgz")
    return packaged


def crd(cluster: Cluster, plural: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(
        cluster.kubectl("get", "crd", f"{plural}.{GROUP}", "-o", "json").stdout
    )
    return loaded


def working_tree_crd(plural: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(
        (ROOT / "charts" / "barbeque" / "crds" / f"{GROUP}_{plural}.yaml").read_text()
    )
    return loaded


@dataclass
class Upgrade:
    cluster: Cluster
    app: App
    operator: OperatorProcess
    running: dict[str, str]  # execution name -> uid, Running before the upgrade
    crds_before: dict[str, dict[str, Any]]
    definition_before: dict[str, Any]


@pytest.fixture(scope="module")
def upgrade(
    own_cluster: Cluster, aws: Aws, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Upgrade]:
    cluster = own_cluster
    work = tmp_path_factory.mktemp("previous-chart")
    previous = package_previous_chart(cluster, work)
    cluster.helm(
        "install", RELEASE, str(previous), "--namespace", NAMESPACE, "--create-namespace",
        *NO_PODS,
    )  # fmt: skip
    cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", "crd",
        *(f"{plural}.{GROUP}" for plural in CRD_NAMES),
    )  # fmt: skip
    operator = OperatorProcess(
        operator_env(cluster.kubeconfig, NAMESPACE, aws.endpoint_url, aws.endpoint_url),
        work / "operator.log",
    )
    operator.start(timeout=90)
    try:
        with application(cluster, aws) as app:
            app.define("slow", podAnnotations={"barbeque.dev/kwok-duration-ms": KEEP_RUNNING_MS})
            for number in range(EXECUTIONS):
                app.enqueue("slow", {"n": number})

            def all_running() -> dict[str, str] | None:
                found = app.executions()
                phases = [(x.get("status") or {}).get("phase") for x in found]
                if len(found) == EXECUTIONS and set(phases) == {"Running"}:
                    return {x["metadata"]["name"]: x["metadata"]["uid"] for x in found}
                return None

            running = wait_until(f"{EXECUTIONS} executions Running", all_running, 60)
            crds_before = {plural: crd(cluster, plural) for plural in CRD_NAMES}
            definition_before = app.custom.get_namespaced_custom_object(
                GROUP, "v1alpha1", app.namespace, "jobdefinitions", "slow"
            )
            cluster.helm(
                "upgrade", RELEASE, str(ROOT / "charts" / "barbeque"), "--namespace", NAMESPACE,
                "--take-ownership", "--set", "crds.install=true", *NO_PODS,
            )  # fmt: skip
            yield Upgrade(cluster, app, operator, running, crds_before, definition_before)
    finally:
        operator.stop()
        cluster.helm("uninstall", RELEASE, "--namespace", NAMESPACE, check=False)


def test_the_previous_chart_came_from_git_with_the_older_crds(upgrade: Upgrade) -> None:
    history = json.loads(
        upgrade.cluster.helm("history", RELEASE, "-n", NAMESPACE, "-o", "json").stdout
    )
    assert [entry["chart"] for entry in history] == ["barbeque-0.1.0", "barbeque-0.2.0"]
    old_schema = upgrade.crds_before["jobdefinitions"]["spec"]["versions"][0]["schema"]
    assert "startDeadlineSeconds" not in json.dumps(old_schema)
    assert "startDeadlineSeconds" not in upgrade.definition_before["spec"]


def test_the_upgrade_updated_every_crd_to_the_working_trees(upgrade: Upgrade) -> None:
    for plural in CRD_NAMES:
        stored = crd(upgrade.cluster, plural)
        expected = working_tree_crd(plural)
        assert stored["spec"]["versions"] == expected["spec"]["versions"], plural
        assert stored["spec"]["names"] == expected["spec"]["names"], plural
        annotations = stored["metadata"]["annotations"]
        assert annotations["helm.sh/resource-policy"] == "keep", plural
        assert annotations["meta.helm.sh/release-name"] == RELEASE, plural
        assert stored["metadata"]["uid"] == upgrade.crds_before[plural]["metadata"]["uid"], (
            f"{plural}: updated in place, never deleted and created again"
        )
    for plural in NEW_CRD_NAMES:
        stored, expected = crd(upgrade.cluster, plural), working_tree_crd(plural)
        assert stored["spec"]["versions"] == expected["spec"]["versions"], plural
        assert stored["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep", plural
    definitions = crd(upgrade.cluster, "jobdefinitions")
    assert (
        definitions["metadata"]["generation"]
        > upgrade.crds_before["jobdefinitions"]["metadata"]["generation"]
    )


def test_a_definition_made_before_the_upgrade_reads_with_the_new_fields_default(
    upgrade: Upgrade,
) -> None:
    app = upgrade.app
    definition = app.custom.get_namespaced_custom_object(
        GROUP, "v1alpha1", app.namespace, "jobdefinitions", "slow"
    )
    assert definition["spec"]["startDeadlineSeconds"] == 600


def test_no_execution_in_flight_is_lost_or_run_twice(upgrade: Upgrade) -> None:
    app = upgrade.app
    after = {x["metadata"]["name"]: x["metadata"]["uid"] for x in app.executions()}
    assert after == upgrade.running, "the same executions, the same objects"
    for name in upgrade.running:
        app.wait_phase(name, ("Succeeded",), timeout=90)
    assert sorted(job.metadata.name for job in app.jobs()) == sorted(upgrade.running)
    assert app.queue_depth() == 0
    assert upgrade.operator.alive()


def test_turning_crds_install_off_and_uninstalling_keep_the_crds_and_executions(
    upgrade: Upgrade,
) -> None:
    cluster, app = upgrade.cluster, upgrade.app
    chart = str(ROOT / "charts" / "barbeque")

    def crd_uids() -> dict[str, str]:
        return {
            plural: crd(cluster, plural)["metadata"]["uid"]
            for plural in (*CRD_NAMES, *NEW_CRD_NAMES)
        }

    uids = crd_uids()
    for install in ("false", "true"):
        cluster.helm(
            "upgrade", RELEASE, chart, "--namespace", NAMESPACE,
            "--set", f"crds.install={install}", *NO_PODS,
        )  # fmt: skip
        assert crd_uids() == uids, f"crds.install={install}"
    uninstalled = cluster.helm("uninstall", RELEASE, "--namespace", NAMESPACE)
    assert "kept due to the resource policy" in uninstalled.stdout + uninstalled.stderr
    assert crd_uids() == uids
    assert {x["metadata"]["name"] for x in app.executions()} == set(upgrade.running)
