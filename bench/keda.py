"""KEDA ScaledJob side by side: the dispatch scenario against KEDA's aws-sqs-queue scaler
and against the operator, one after the other on one control plane and one moto server.

Both sides get ``--messages`` messages at ``--rate`` a second in a queue of their own.

- **KEDA**: its operator (built from Go modules by ``--build``, run as a process of its
  own with the admin kubeconfig, as ``helm install keda`` would run it in a pod) and a
  ScaledJob whose trigger is the queue (``queueLength: 1``: a Job per message, the
  ``pollingInterval`` of ``--polling``). A ScaledJob's Job is not told its message: the
  container receives one. kwok runs no containers, so a consumer here stands in for
  them: for each Job the watch sees it waits ``--container-start`` seconds (the real
  node's pod start, docs/performance.md), receives one message and deletes it, as a job's
  container would; a Job that finds no message is a duplicate.
- **barbeque**: the operator and a JobQueue on the same kind of queue; each message
  becomes the Job named after it.

Reported for each: enqueue (SendMessage returned) -> the Job that handles the message
exists, p50/p99; Jobs per message; messages left in the queue once both have settled.

    python -m bench.keda --build            # once: go build of KEDA (~1 h on 2 cores cold)
    python -m bench.keda --messages 200 --rate 10
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.cluster.processes import free_port, spawn, tail
from tests.support import samples as objects
from tests.support.aws import CREDENTIALS, REGION
from tests.support.waiting import wait_until

from barbeque.services.naming import execution_name
from bench.cli import bench_main
from bench.env import App, Environment, Result, Watch, log, percentile, stop_process

VERSION = "v2.21.0"
MODULE = "github.com/kedacore/keda/v2"
CACHE = Path(os.environ.get("BARBEQUE_CACHE", Path.home() / ".cache" / "barbeque")) / "keda"
BINARY = CACHE / f"keda-operator-{VERSION}"
CRDS = CACHE / f"crds-{VERSION}"
NAMESPACE = "keda"
# The goal: our p99 at least this many times lower than KEDA's, and no duplicates.
GOAL_RATIO = 15.0
WARMUP = 5
# KEDA's ScaledJob strategies: "default" subtracts every running Job from the queue's
# length; "accurate" only the pending ones (its docs: for consumers that delete messages
# as they take them, as here).
STRATEGIES = ("default", "accurate")


def build() -> Path:
    """``go build`` of KEDA's operator from the module proxy, and a copy of its CRDs.

    It links every scaler's SDK (3,338 packages): about an hour on two idle cores the
    first time; Go's build cache keeps what was compiled, so a stopped build resumes."""
    CACHE.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GOFLAGS": "-mod=mod"}
    listing = subprocess.run(
        ["go", "mod", "download", "-json", f"{MODULE}@{VERSION}"],
        check=True, capture_output=True, text=True, env=env,
    )  # fmt: skip
    source = Path(json.loads(listing.stdout)["Dir"])
    log(f"keda: building {MODULE}@{VERSION} in {source} (go build -v prints each package)")
    subprocess.run(
        ["go", "build", "-v", "-o", str(BINARY), "./cmd/operator"], check=True, cwd=source, env=env
    )
    CRDS.mkdir(exist_ok=True)
    for crd in (source / "config" / "crd" / "bases").glob("*.yaml"):
        shutil.copyfile(crd, CRDS / crd.name)
    log(f"keda: {BINARY} ({BINARY.stat().st_size / 2**20:.0f} MiB), CRDs in {CRDS}")
    return BINARY


class KedaOperator:
    """KEDA's operator as a local process: all namespaces, loopback ports, and the
    self-signed certificate its gRPC metrics service insists on (``--cert-dir``)."""

    def __init__(self, env: Environment) -> None:
        self.env = env
        self.dir = env.scratch / "keda"
        self.log = self.dir / "keda.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> KedaOperator:
        if not BINARY.exists() or not CRDS.is_dir():
            raise RuntimeError(f"KEDA is not built: run `python -m bench.keda --build` ({BINARY})")
        self.dir.mkdir(parents=True, exist_ok=True)
        certs = self._certificates()
        self.env.k8s.kubectl("apply", "--server-side", "-f", str(CRDS))
        # Not `kubectl wait`: it fails while a CRD just applied has no conditions yet.
        wait_until("KEDA's CRDs Established", self._established, 60)
        self.env.k8s.create_namespace(NAMESPACE)
        variables = {
            **os.environ,
            **CREDENTIALS,
            "AWS_REGION": REGION,
            "KUBECONFIG": str(self.env.k8s.kubeconfig),
            "WATCH_NAMESPACE": "",
            "POD_NAMESPACE": NAMESPACE,
            "KEDA_CLUSTER_OBJECT_NAMESPACE": NAMESPACE,
        }
        args = [
            str(BINARY),
            f"--metrics-bind-address=127.0.0.1:{free_port()}",
            f"--health-probe-bind-address=127.0.0.1:{free_port()}",
            f"--metrics-service-bind-address=127.0.0.1:{free_port()}",
            f"--cert-dir={certs}",
            "--enable-webhook-patching=false",
            "--enable-apiservice-patching=false",
            "--zap-log-level=info",
        ]
        self.process = spawn(args, self.log, self.dir, variables, detach=False)
        time.sleep(2)
        if self.process.poll() is not None:
            raise RuntimeError(f"KEDA's operator exited at start:\n{tail(self.log)}")
        log(f"keda: operator pid {self.process.pid}, log {self.log}")
        return self

    def _established(self) -> bool:
        crd = self.env.k8s.api(
            "GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/scaledjobs.keda.sh"
        )
        return _condition(crd, "Established")

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None

    def _certificates(self) -> Path:
        certs = self.dir / "certs"
        certs.mkdir(exist_ok=True)
        openssl = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        subprocess.run(
            [*openssl, "-keyout", str(certs / "tls.key"), "-out", str(certs / "tls.crt"),
             "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
            check=True, capture_output=True,
        )  # fmt: skip
        shutil.copyfile(certs / "tls.crt", certs / "ca.crt")
        return certs


def scaled_job(
    namespace: str, queue_url: str, moto_url: str, polling: int, strategy: str, pod_ms: int
) -> dict[str, Any]:
    """tests/data/keda/scaledjob.yaml for this run."""
    body = objects.load("keda/scaledjob.yaml")
    body["metadata"]["namespace"] = namespace
    spec = body["spec"]
    spec.update(pollingInterval=polling, scalingStrategy={"strategy": strategy})
    spec["jobTargetRef"]["template"]["metadata"]["annotations"] = {
        "barbeque.dev/kwok-duration-ms": str(pod_ms)
    }
    [trigger] = spec["triggers"]
    trigger["metadata"].update(queueURL=queue_url, awsRegion=REGION, awsEndpoint=moto_url)
    return body


class Consumer(threading.Thread):
    """Stands in for the container of each Job the watch sees: ``start`` seconds after
    the Job appears it receives one message and deletes it."""

    def __init__(self, env: Environment, app: App, jobs: Watch, start: float) -> None:
        super().__init__(daemon=True, name="keda consumer")
        self.env, self.app, self.jobs, self.start_delay = env, app, jobs, start
        # execution name -> (Job, Job seen, message received)
        self.handled: dict[str, tuple[str, float, float]] = {}
        self.empty: list[str] = []  # Jobs that found no message
        self.stopped = threading.Event()
        self.pool = ThreadPoolExecutor(32)

    def run(self) -> None:
        taken: set[str] = set()
        while not self.stopped.is_set():
            for job, seen in list(self.jobs.added.items()):
                if job not in taken:
                    taken.add(job)
                    self.pool.submit(self._container, job, seen)
            time.sleep(0.02)

    def _container(self, job: str, seen: float) -> None:
        time.sleep(max(0.0, seen + self.start_delay - time.time()))
        received = (
            self.env.sqs()
            .receive_message(QueueUrl=self.app.queue_url, MaxNumberOfMessages=1, WaitTimeSeconds=1)
            .get("Messages", [])
        )
        if not received:
            self.empty.append(job)
            return
        at = time.time()
        message = received[0]
        self.env.sqs().delete_message(
            QueueUrl=self.app.queue_url, ReceiptHandle=message["ReceiptHandle"]
        )
        self.handled[execution_name(message["MessageId"])] = (job, seen, at)

    def stop(self) -> None:
        self.stopped.set()
        self.pool.shutdown(wait=True)


@dataclass
class Side:
    """One side's figures over the measured messages."""

    latencies: list[float]
    started: list[float]
    jobs: int
    empty: int
    left: int

    def row(self, label: str, messages: int) -> list[str]:
        figures = [percentile(v, q) for v in (self.latencies, self.started) for q in (50, 99)]
        return [
            label, *(f"{f:.2f} s" for f in figures), f"{self.jobs / messages:.2f}",
            str(self.empty), str(messages - len(self.latencies)), str(self.left),
        ]  # fmt: skip


def queue_left(env: Environment, app: App) -> int:
    attributes = env.sqs().get_queue_attributes(
        QueueUrl=app.queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return sum(int(value) for value in attributes.values())


def run_keda(
    env: Environment,
    messages: int,
    rate: float,
    polling: int,
    strategy: str,
    container_start: float,
    pod_ms: int,
) -> Side:
    """KEDA's side, its operator already running: work starts when a container has
    received the message."""
    app = env.new_app("keda", definitions=(), create_queue=False)
    jobs = env.watch_jobs(app.namespace)
    consumer = Consumer(env, app, jobs, container_start)
    scaled_jobs = f"/apis/keda.sh/v1alpha1/namespaces/{app.namespace}/scaledjobs"
    try:
        env.k8s.api(
            "POST",
            scaled_jobs,
            scaled_job(app.namespace, app.queue_url, env.moto_url, polling, strategy, pod_ms),
        )
        consumer.start()
        wait_until("the ScaledJob Ready", lambda: _ready(env, app), 60)
        # Warm-up, as the operator's side gets: the scale loop's first polls and the SQS
        # client's connections are not counted.
        warm = env.send_steadily(app, WARMUP, rate, tag="warm")
        wait_until("the warm-up handled", lambda: warm.keys() <= consumer.handled.keys(), 120)
        time.sleep(3 * polling)
        before = len(jobs.added)
        sent = env.send_steadily(app, messages, rate)
        deadline = time.time() + 120 + messages / rate
        while not sent.keys() <= consumer.handled.keys() and time.time() < deadline:
            time.sleep(0.5)
        # Settle: a few more polls see an empty queue, and any extra Job shows up.
        time.sleep(3 * polling + container_start + 5)
        left = queue_left(env, app)
    finally:
        consumer.stop()
        jobs.stop()
        # The operator serves the next strategy: this ScaledJob stops polling its queue.
        env.k8s.api("DELETE", f"{scaled_jobs}/consumer")
    if not sent.keys() <= consumer.handled.keys():
        log(f"keda: {len(sent) - len(consumer.handled)} messages never reached a Job")
    # A Job KEDA made before the message came (a surplus one) handles it at once: 0 s.
    handled = {n: consumer.handled[n] for n in sent if n in consumer.handled}
    latencies = [max(0.0, seen - sent[n]) for n, (_, seen, _) in handled.items()]
    received = [at - sent[n] for n, (_, _, at) in handled.items()]
    return Side(latencies, received, len(jobs.added) - before, len(consumer.empty), left)


def _ready(env: Environment, app: App) -> bool:
    found = env.k8s.api(
        "GET", f"/apis/keda.sh/v1alpha1/namespaces/{app.namespace}/scaledjobs/consumer"
    )
    return _condition(found, "Ready")


def _condition(obj: dict[str, Any], kind: str) -> bool:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return any(c["type"] == kind and c["status"] == "True" for c in conditions)


def run_barbeque(
    env: Environment,
    messages: int,
    rate: float,
    receive_wait: int,
    container_start: float,
    pod_ms: int,
) -> Side:
    """The operator's side: the container has its message from the start (in its
    environment), so work starts ``container_start`` after the Job."""
    env.start_operator()
    app = env.new_app(
        "bbq",
        queue_spec={"receiveWaitSeconds": receive_wait},
        definition_spec={"podAnnotations": {"barbeque.dev/kwok-duration-ms": str(pod_ms)}},
    )
    env.wait_queue_ready(app)
    jobs = env.watch_jobs(app.namespace)
    try:
        warm = env.send_steadily(app, WARMUP, rate, tag="warm")
        jobs.wait_names(set(warm), 60, "the warm-up Jobs")
        before = len(jobs.added)
        sent = env.send_steadily(app, messages, rate)
        jobs.wait_names(set(sent), 120 + messages / 5, "every Job")
        time.sleep(5)
        left = queue_left(env, app)
    finally:
        jobs.stop()
        env.delete_jobqueue(app)
        env.stop_operator()
    latencies = [jobs.added[name] - at for name, at in sent.items()]
    started = [latency + container_start for latency in latencies]
    return Side(latencies, started, len(jobs.added) - before, 0, left)


def run(
    env: Environment,
    messages: int = 200,
    rate: float = 10.0,
    polling: int = 1,
    strategy: list[str] | None = None,
    container_start: float = 1.1,
    pod_ms: int = 3000,
    receive_wait: int = 20,
) -> Result:
    strategies = strategy or list(STRATEGIES)
    result = Result(
        "keda",
        "4. Side by side with KEDA ScaledJob (enqueue -> the Job that handles the message)",
        {
            "messages": messages,
            "rate_per_s": rate,
            "keda": f"{MODULE}@{VERSION}",
            "pollingInterval_s": polling,
            "scalingStrategy": ",".join(strategies),
            "container_start_s": container_start,
            "pod_ms": pod_ms,
        },
    )
    keda = KedaOperator(env).start()
    try:
        kedas = {
            name: run_keda(env, messages, rate, polling, name, container_start, pod_ms)
            for name in strategies
        }
    finally:
        keda.stop()
    ours = run_barbeque(env, messages, rate, receive_wait, container_start, pod_ms)
    rows = [ours.row("barbeque", messages)]
    rows += [side.row(f"KEDA, {name} strategy", messages) for name, side in kedas.items()]
    for row in rows:
        log(f"keda: {row}")
    result.tables["side by side"] = [
        ["", "-> Job p50", "-> Job p99", "-> work starts p50", "-> work starts p99",
         "Jobs per message", "Jobs without a message", "never handled", "left in the queue"],
        *rows,
    ]  # fmt: skip
    p99 = percentile(ours.latencies, 99)
    result.add("barbeque enqueue -> Job p50", percentile(ours.latencies, 50), "s")
    result.add("barbeque enqueue -> Job p99", p99, "s")
    result.add(
        "barbeque Jobs per message",
        ours.jobs / messages,
        goal="1.00 (no duplicates)",
        ok=ours.jobs == messages and ours.left == 0,
    )
    for name, side in kedas.items():
        keda_p99 = percentile(side.latencies, 99)
        result.add(
            f"KEDA ({name}) p99 / barbeque p99",
            keda_p99 / p99 if p99 else None,
            "x",
            goal=f">= {GOAL_RATIO:.0f}",
            ok=p99 * GOAL_RATIO <= keda_p99,
        )
        result.add(f"KEDA ({name}) Jobs per message", side.jobs / messages)
    return result


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--rate", type=float, default=10.0, help="messages per second")
    parser.add_argument(
        "--polling",
        type=int,
        default=1,
        help="the ScaledJob's pollingInterval (KEDA's default: 30)",
    )
    parser.add_argument(
        "--strategy",
        action="append",
        choices=STRATEGIES,
        help="the ScaledJob's scalingStrategy (repeatable; default: both)",
    )
    parser.add_argument(
        "--container-start",
        type=float,
        default=1.1,
        help="seconds from a KEDA Job to its container receiving (the real node's pod start p50)",
    )
    parser.add_argument("--pod-ms", type=int, default=3000, help="how long each pod runs (kwok)")
    parser.add_argument("--receive-wait", type=int, default=20, help="JobQueue receiveWaitSeconds")


if __name__ == "__main__":
    if sys.argv[1:] == ["--build"]:  # no cluster: only the go build
        build()
        sys.exit(0)
    sys.exit(bench_main("keda", __doc__, arguments, run))
