"""The embedded local default: everything Barbeque needs, on this machine, in one command.

``up`` starts a real control plane (etcd, kube-apiserver, controller manager, scheduler)
and moto's server standing in for SQS and S3. Where the machine can run containers (root,
runc, containerd, buildah), it joins a real node, builds the project's image from
``Dockerfile`` and installs the chart with helm, so the operator and the console run in
pods as a user runs them, and the demo job runs in a real container; its log is printed
from S3. Elsewhere it says so and falls back to kwok's simulated nodes, with the operator
and the console as local processes. ``down`` stops every process it started, by pid.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.cluster import harness, images, realnode  # noqa: E402

NAME = "local"
WORKDIR = harness.default_workdir(NAME)
STATE = WORKDIR / "barbeque.json"
VENV_BIN = ROOT / ".venv" / "bin"
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def say(message: str) -> None:
    sys.stdout.write(f"==> {message}\n")
    sys.stdout.flush()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_http(url: str, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"{what} did not answer at {url} within {timeout:.0f}s")


def spawn(name: str, args: list[str], env: dict[str, str]) -> int:
    log = WORKDIR / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        process = subprocess.Popen(
            args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT
        )
    return process.pid


def kubectl(*args: str, input: str | None = None) -> str:
    cluster = harness.Cluster(WORKDIR, build=False)
    result = cluster.kubectl(*args, input=input)
    return result.stdout


def up(args: argparse.Namespace) -> int:
    started = time.monotonic()
    if STATE.exists():
        say("a previous local setup is recorded; stopping it first")
        down(args)
    no_real_node = realnode.unavailable_reason() or images.unavailable_reason()
    if args.kwok:
        no_real_node = "--kwok was given"
    if no_real_node:
        say(f"no real node ({no_real_node}): nodes are simulated by kwok, jobs do not really run")
    say("starting the local control plane (first run builds Kubernetes from Go modules, ~15 min)")
    subprocess.run(
        [sys.executable, "-m", "tests.cluster", "up", "--workdir", str(WORKDIR)]
        + ([] if no_real_node else ["--real-node"]),
        check=True,
        cwd=ROOT,
    )
    kubeconfig = WORKDIR / "kubeconfig"
    state: dict[str, Any] = {"pids": {}, "kubeconfig": str(kubeconfig)}

    say("starting moto's server (local SQS and S3)")
    aws_port = free_port()
    aws_url = f"http://127.0.0.1:{aws_port}"
    env = {**os.environ, **AWS_ENV, "KUBECONFIG": str(kubeconfig)}
    state["pids"]["moto"] = spawn(
        "moto", [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(aws_port)], env
    )
    state["aws"] = aws_url
    STATE.write_text(json.dumps(state, indent=2))
    wait_http(aws_url + "/moto-api/", 30, "moto")

    if no_real_node:
        run_as_processes(state, env, aws_url)
    else:
        run_in_pods(state, aws_url)
    kubectl("apply", "-f", str(ROOT / "examples"))
    job_image = ""
    if not no_real_node:
        # The example's busybox cannot be pulled here: the local job image, on the real node.
        job_image = images.job_ref()
        patch = {"spec": {"image": job_image, "imagePullPolicy": "IfNotPresent",
                          **realnode.placement()}}  # fmt: skip
        kubectl("patch", "jobdefinition", "hello", "-n", "demo", "--type=merge",
                "-p", json.dumps(patch))  # fmt: skip
    return demo(state, aws_url, kubeconfig, job_image, started)


def make_namespace(namespace: str, labels: dict[str, str] | None = None) -> None:
    manifest = {"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": namespace, "labels": labels or {}}}  # fmt: skip
    kubectl("apply", "-f", "-", input=json.dumps(manifest))


def run_in_pods(state: dict[str, Any], aws_url: str) -> None:
    """helm install of the chart from the image built from Dockerfile, on the real node."""
    cluster = harness.Cluster.attach(WORKDIR)
    app_image = images.app_ref(images.base_ref())
    ports = {"metrics": free_port(), "health": free_port(), "console": free_port()}
    make_namespace("barbeque-system")
    # Applications' pods are admitted by Pod Security "restricted", as they should be.
    make_namespace("demo", {"pod-security.kubernetes.io/enforce": "restricted"})
    kubectl("create", "secret", "generic", "aws", "-n", "barbeque-system",
            *(f"--from-literal={k}={v}" for k, v in AWS_ENV.items()))  # fmt: skip
    console_url = f"http://127.0.0.1:{ports['console']}"
    say(f"installing the chart: the operator and console from {app_image}, in pods")
    cluster.helm(
        "install", "barbeque", str(ROOT / "charts" / "barbeque"),
        "--namespace", "barbeque-system",
        *realnode.chart_settings(cluster, app_image, ports),
        "--set", f"aws.sqsEndpointUrl={aws_url}", "--set", f"aws.s3EndpointUrl={aws_url}",
        "--set", "aws.credentialsSecret=aws", "--set", "s3.createBucket=true",
        "--set", f"consoleUrl={console_url}",
        "--set", "dashboard.auth.token=local-demo-token",
        "--set-json", 'dashboard.extraEnv=[{"name":"BARBEQUE_PUBLIC_READS","value":"true"}]',
        "--set", "operator.readinessProbe.initialDelaySeconds=1",
        "--set", "operator.readinessProbe.periodSeconds=2",
        "--wait", "--timeout", "180s",
    )  # fmt: skip
    state["metrics"] = f"http://127.0.0.1:{ports['metrics']}/metrics"
    state["console"] = console_url
    state["in_pods"] = True
    STATE.write_text(json.dumps(state, indent=2))


def run_as_processes(state: dict[str, Any], env: dict[str, str], aws_url: str) -> None:
    """The operator and the console as local processes (the kwok fallback)."""
    say("installing the CRDs")
    harness.Cluster(WORKDIR, build=False).apply_crds(ROOT / "crds")
    for namespace in ("barbeque-system", "demo"):
        make_namespace(namespace)
    settings = {
        "BARBEQUE_NAMESPACE": "barbeque-system",
        "BARBEQUE_SQS_ENDPOINT_URL": aws_url,
        "BARBEQUE_S3_ENDPOINT_URL": aws_url,
        "BARBEQUE_S3_CREATE_BUCKET": "true",
    }
    metrics_port, health_port, console_port = free_port(), free_port(), free_port()
    console_url = f"http://127.0.0.1:{console_port}"
    say("starting the operator")
    state["pids"]["operator"] = spawn(
        "operator",
        [
            str(VENV_BIN / "barbeque"),
            "operator",
            "--liveness",
            f"http://127.0.0.1:{health_port}/healthz",
        ],
        {
            **env,
            **settings,
            "BARBEQUE_METRICS_PORT": str(metrics_port),
            "BARBEQUE_CONSOLE_URL": console_url,
        },
    )
    state["metrics"] = f"http://127.0.0.1:{metrics_port}/metrics"
    STATE.write_text(json.dumps(state, indent=2))
    wait_http(f"http://127.0.0.1:{health_port}/healthz", 60, "the operator")

    if importlib.util.find_spec("barbeque_dashboard.__main__") is not None:
        say("starting the console and Web API")
        state["pids"]["dashboard"] = spawn(
            "dashboard",
            [str(VENV_BIN / "python"), "-m", "barbeque_dashboard"],
            {
                **env,
                **settings,
                "BARBEQUE_DASHBOARD_HOST": "127.0.0.1",
                "BARBEQUE_DASHBOARD_PORT": str(console_port),
                "BARBEQUE_PUBLIC_READS": "true",
                "BARBEQUE_API_TOKENS": "local-demo-token",
            },
        )
        state["console"] = console_url
        STATE.write_text(json.dumps(state, indent=2))
        wait_http(console_url + "/healthz", 60, "the console")


def demo(
    state: dict[str, Any], aws_url: str, kubeconfig: Path, job_image: str, started: float
) -> int:
    say("enqueueing a demo message")
    import boto3

    clients = {
        "endpoint_url": aws_url,
        "region_name": "us-east-1",
        "aws_access_key_id": "local",
        "aws_secret_access_key": "local",
    }
    sqs = boto3.client("sqs", **clients)
    s3 = boto3.client("s3", **clients)
    url = None
    deadline = time.monotonic() + 60
    while url is None and time.monotonic() < deadline:
        try:
            url = sqs.get_queue_url(QueueName="Barbeque-default")["QueueUrl"]
        except sqs.exceptions.QueueDoesNotExist:
            time.sleep(0.5)  # the operator creates it (the example JobQueue says create: true)
    if url is None:
        raise SystemExit(
            "the operator did not create the SQS queue; see " + str(WORKDIR / "logs/operator.log")
        )
    body = {
        "Type": "JobExecution",
        "Application": "demo",
        "Job": "hello",
        "Message": {"greeting": "hello"},
    }
    message_id = sqs.send_message(QueueUrl=url, MessageBody=json.dumps(body))["MessageId"]

    say(f"waiting for execution {message_id} to finish")
    deadline = time.monotonic() + 120
    phase = ""
    while time.monotonic() < deadline:
        phase = kubectl(
            "get",
            "jobexecution",
            "-n",
            "demo",
            message_id,
            "-o",
            "jsonpath={.status.phase}",
            "--ignore-not-found",
        )
        if phase in ("Succeeded", "Failed", "Error"):
            break
        time.sleep(1)
    sys.stdout.write(kubectl("get", "executions", "-n", "demo", "-o", "wide"))
    prefix = kubectl(
        "get", "jobexecution", "-n", "demo", message_id, "-o", "jsonpath={.status.logs.prefix}"
    )  # fmt: skip
    if prefix:
        log = s3.get_object(Bucket="barbeque", Key=prefix + "stdout.txt")["Body"].read()
        say(f"its log, from s3://barbeque/{prefix}stdout.txt:")
        sys.stdout.write(log.decode(errors="replace"))
    cached = harness.Cluster(WORKDIR, build=False)
    where = (
        f"the demo job ran in a real container ({job_image}) on the real node, and the\n"
        "operator and console run in pods from the image built from Dockerfile"
        if job_image
        else "nodes are simulated by kwok: pods do not really run, they complete after\n"
        "~1 s and their logs are a fixed text"
    )
    sys.stdout.write(
        f"\nBarbeque is running locally, up in {time.monotonic() - started:.0f} s ({where}).\n\n"
        f"  export KUBECONFIG={kubeconfig}\n"
        f"  export PATH={cached.bin('kubectl').parent}:$PATH\n"
        "  kubectl get executions -A\n"
        f"  metrics:   {state['metrics']}\n"
        + (
            f"  console:   {state['console']}  (write token: local-demo-token)\n"
            if "console" in state
            else ""
        )
        + f"  SQS/S3:    {aws_url}  (moto; AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local)\n"
        f"  logs:      {WORKDIR / 'logs'}\n"
        "  stop it:   scripts/local down\n"
    )
    return 0 if phase == "Succeeded" else 1


def down(args: argparse.Namespace) -> int:
    if STATE.exists():
        state = json.loads(STATE.read_text())
        for name, pid in state.get("pids", {}).items():
            try:
                os.killpg(pid, signal.SIGTERM)
                say(f"stopped {name} (pid {pid})")
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        for pid in state.get("pids", {}).values():
            while harness.pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            if harness.pid_alive(pid):
                os.killpg(pid, signal.SIGKILL)
        STATE.unlink()
    subprocess.run(
        [sys.executable, "-m", "tests.cluster", "down", "--workdir", str(WORKDIR)], cwd=ROOT
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="scripts/local", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("up", help="start everything and run a demo job")
    start.add_argument(
        "--kwok", action="store_true", help="simulated nodes only, even where a real node can run"
    )
    start.set_defaults(func=up)
    commands.add_parser("down", help="stop everything `up` started").set_defaults(func=down)
    args = parser.parse_args()
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
