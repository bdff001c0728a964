"""Least privilege, checked by behaviour: secrets stay secret, pods are restricted,
applications stay apart.

The chart is installed with helm (no pods) and the operator runs as its own process with a
token of the chart's ServiceAccount, so every call it makes is authorized by the chart's
RBAC. It is given a Slack token and AWS credentials with recognisable values, runs with
debug logging, meets failing Slack posts and bad messages, and afterwards none of those
values may appear anywhere the operator writes: its log, JobExecutions (spec and status),
Jobs and pods, Events, or /metrics. (What the ServiceAccount may do is checked rule by rule
by ``kubectl auth can-i`` in tests/e2e/test_chart_install.py.)
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from barbeque.services.naming import execution_name
from tests.cluster.harness import Cluster
from tests.support.aws import MotoProcess
from tests.support.operator import (
    App,
    OperatorProcess,
    application,
    cleanup_app,
    make_app,
    operator_env,
)
from tests.support.reliability import LABEL_EXECUTION, executions_path, install_chart, list_all
from tests.support.slack import SlackRecorder, slack_recorder
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

NAMESPACE = "barbeque-relsec"
RELEASE = "relsec"
SLACK_TOKEN = "xoxb-sekrit-123"
AWS_SECRET = "aws-sekrit-456"
SECRETS = (SLACK_TOKEN, AWS_SECRET)
RESTRICTED = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


@dataclass
class Deployed:
    moto: MotoProcess
    slack: SlackRecorder
    operator: OperatorProcess


@pytest.fixture(scope="module")
def deployed(cluster: Cluster, crds: None, workdir: Path) -> Iterator[Deployed]:
    _, kubeconfig = install_chart(cluster, RELEASE, NAMESPACE, workdir / "kubeconfig")
    try:
        with MotoProcess(workdir / "moto.log") as moto, slack_recorder() as slack:
            env = operator_env(
                kubeconfig,
                NAMESPACE,
                moto.url,
                moto.url,
                slack_url=slack.url,
                slack_token=SLACK_TOKEN,
                AWS_ACCESS_KEY_ID="AKIAEXAMPLEKEYID",
                AWS_SECRET_ACCESS_KEY=AWS_SECRET,
            )
            operator = OperatorProcess(env, workdir / "operator.log", verbose=True)
            operator.start()
            try:
                yield Deployed(moto, slack, operator)
            finally:
                operator.stop()
    finally:
        cluster.helm("uninstall", RELEASE, "--namespace", NAMESPACE, check=False)
        cluster.delete_namespace(NAMESPACE)


@pytest.fixture
def app(cluster: Cluster, deployed: Deployed) -> Iterator[App]:
    with application(cluster, deployed.moto.aws) as made:
        yield made


def test_no_secret_value_reaches_logs_records_events_or_metrics(
    cluster: Cluster, deployed: Deployed, app: App
) -> None:
    slack, operator = deployed.slack, deployed.operator
    channel = f"#{app.namespace}"
    app.define("talkative", slack={"channel": channel, "notifySuccess": True})
    slack.failures[:] = [500, 429]  # the failures are logged, with whatever they carry
    ok = app.enqueue("talkative", {"n": 1})
    unknown = app.enqueue("no-such-job", {"n": 2})
    poison = app.send('{"Type": "JobExecution", "Application": 42}')
    app.wait_phase(execution_name(ok), ("Succeeded",), timeout=90)
    app.wait_phase(execution_name(unknown), ("Error",), timeout=60)
    app.wait_phase(execution_name(poison), ("Error",), timeout=60, namespace=NAMESPACE)
    wait_until("the Slack posts", lambda: len(slack.posts(channel)) >= 3 or None, 30)
    # The token was configured and used: the check below would see it if it leaked.
    assert {c["auth"] for c in slack.posts(channel)} == {f"Bearer {SLACK_TOKEN}"}
    assert operator.metric("barbeque_slack_failures_total") >= 2

    places = {
        "operator log": operator.log_text(),
        "/metrics": operator.metrics_text(),
        "JobExecutions": json.dumps(
            list_all(cluster, executions_path(app.namespace))
            + list_all(cluster, executions_path(NAMESPACE))
        ),
        "Jobs": json.dumps(list_all(cluster, f"/apis/batch/v1/namespaces/{app.namespace}/jobs")),
        "pods": json.dumps(list_all(cluster, f"/api/v1/namespaces/{app.namespace}/pods")),
        "Events": json.dumps(
            list_all(cluster, f"/api/v1/namespaces/{app.namespace}/events")
            + list_all(cluster, f"/api/v1/namespaces/{NAMESPACE}/events")
        ),
        "JobQueue status": json.dumps(
            cluster.api("GET", f"/apis/barbeque.dev/v1alpha1/jobqueues/{app.queue}")
        ),
    }
    assert "DEBUG" in places["operator log"], "debug logging was on"
    leaks = [
        (secret, where) for where, text in places.items() for secret in SECRETS if secret in text
    ]
    assert not leaks, leaks
    assert "Forbidden" not in places["operator log"], "the chart's RBAC let the operator work"


def test_job_pods_get_the_restricted_security_context_and_pass_restricted_admission(
    cluster: Cluster, deployed: Deployed, app: App
) -> None:
    # Pod Security Admission refuses any pod of this namespace short of "restricted".
    cluster.api(
        "PATCH",
        f"/api/v1/namespaces/{app.namespace}",
        {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}},
        content_type="application/merge-patch+json",
    )
    app.define("plain")
    app.define("tuned", securityContext={"runAsUser": 1000, "readOnlyRootFilesystem": True})
    plain = app.enqueue("plain", {})
    tuned = app.enqueue("tuned", {})
    app.wait_phase(execution_name(plain), ("Succeeded",), timeout=90)
    app.wait_phase(execution_name(tuned), ("Succeeded",), timeout=90)

    pods = {
        p["metadata"]["labels"][LABEL_EXECUTION]: p
        for p in list_all(
            cluster, f"/api/v1/namespaces/{app.namespace}/pods", labelSelector=LABEL_EXECUTION
        )
    }
    plain_context = pods[execution_name(plain)]["spec"]["containers"][0]["securityContext"]
    assert plain_context == RESTRICTED
    tuned_context = pods[execution_name(tuned)]["spec"]["containers"][0]["securityContext"]
    assert tuned_context == {**RESTRICTED, "runAsUser": 1000, "readOnlyRootFilesystem": True}


def test_a_message_cannot_run_another_applications_job(
    cluster: Cluster, deployed: Deployed, app: App
) -> None:
    other = make_app(cluster, deployed.moto.aws)
    try:
        other.define("payroll")
        # Application A's message names B's job, on A's queue and then on B's queue.
        on_a = app.enqueue("payroll", {"steal": True})
        on_b = other.send(
            json.dumps(
                {
                    "Type": "JobExecution",
                    "Application": app.namespace,
                    "Job": "payroll",
                    "Message": 1,
                }
            )
        )
        for message_id in (on_a, on_b):
            refused = app.wait_phase(execution_name(message_id), ("Error",), timeout=60)
            assert refused["status"]["reason"] == "UnknownJob"
            assert (
                f"no JobDefinition named 'payroll' in application (namespace) {app.namespace!r}"
                in (refused["status"]["message"])
            )
        assert other.executions() == []
        assert other.jobs() == []
        assert app.jobs() == []
    finally:
        cleanup_app(other)
