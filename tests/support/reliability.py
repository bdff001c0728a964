"""Helpers of the reliability and security tests: processes to kill, servers to stop.

- ``OperatorProcess``: ``python -m barbeque operator`` as its own process (as it ships),
  which a test can start, SIGKILL, SIGTERM and start again, with one log across its lives
  and its ``/metrics`` read back.
- ``MotoProcess``: moto's server as its own process, so SQS and S3 can be separate servers
  and one of them can be stopped and started again.
- ``SlackStub``: a Slack Web API stand-in that can answer error statuses or stall.
- Counting and listing through the API server, bulk sends, and ``record_figures`` to print
  the figures of a run and keep them under ``artifacts/reliability/``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qs

import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.cluster.harness import ApiError, Cluster
from tests.support.aws import CREDENTIALS, REGION, Aws, free_port
from tests.support.operator import BUCKET, GROUP, VERSION
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
FIGURES_DIR = ROOT / "artifacts" / "reliability"
EXECUTIONS = f"/apis/{GROUP}/{VERSION}"
LABEL_EXECUTION = "barbeque.dev/execution"
FINISHED = ("Succeeded", "Failed", "Error")

# Executions must stay countable for the whole test: keep history garbage collection (when
# the operator has it) from deleting any of them.
NO_HISTORY_GC = {"BARBEQUE_HISTORY_TTL_SECONDS": "604800", "BARBEQUE_HISTORY_KEEP": "1000000"}


# -- moto as its own process --------------------------------------------------------------


class MotoProcess:
    """``moto_server`` on a fixed 127.0.0.1 port; stop and start it again on the same port.

    moto keeps its state in memory, so a restart forgets queues, messages and buckets: a
    test that restarts one recreates what the real service would have kept.
    """

    def __init__(self, log: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def aws(self) -> Aws:
        """What ``tests.support.operator.make_app`` needs: the endpoint (no in-process server)."""
        return Aws(self.url, cast(Any, None))

    def start(self) -> MotoProcess:
        for key, value in CREDENTIALS.items():
            os.environ.setdefault(key, value)
        moto_server = str(Path(sys.executable).with_name("moto_server"))
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [moto_server, "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **CREDENTIALS},
            )
        wait_until(f"moto on port {self.port}", self._answers, 30)
        return self

    def _answers(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"moto exited: {self.log.read_text()[-2000:]}")
        with socket.socket() as sock:
            sock.settimeout(1)
            return sock.connect_ex(("127.0.0.1", self.port)) == 0

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> MotoProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- the operator as its own process ------------------------------------------------------


def operator_env(
    kubeconfig: Path,
    namespace: str,
    sqs_url: str,
    s3_url: str,
    slack_url: str = "",
    slack_token: str = "",
    **extra: str,
) -> dict[str, str]:
    env = {
        **os.environ,
        **CREDENTIALS,
        "KUBECONFIG": str(kubeconfig),
        "BARBEQUE_NAMESPACE": namespace,
        "BARBEQUE_AWS_REGION": REGION,
        "BARBEQUE_SQS_ENDPOINT_URL": sqs_url,
        "BARBEQUE_S3_ENDPOINT_URL": s3_url,
        "BARBEQUE_S3_BUCKET": BUCKET,
        "BARBEQUE_S3_CREATE_BUCKET": "true",
        **NO_HISTORY_GC,
        **extra,
    }
    for key in ("BARBEQUE_SLACK_TOKEN", "BARBEQUE_SLACK_API_URL", "BARBEQUE_LEADER_ELECTION"):
        if key not in extra:
            env.pop(key, None)
    if slack_token:
        env["BARBEQUE_SLACK_TOKEN"] = slack_token
        env["BARBEQUE_SLACK_API_URL"] = slack_url
    return env


@dataclass
class OperatorProcess:
    """One operator; ``start`` again after ``kill`` or ``terminate`` (new ports each life)."""

    env: dict[str, str]
    log: Path
    verbose: bool = False
    process: subprocess.Popen[bytes] | None = None
    metrics_port: int = 0
    health_port: int = 0
    lives: int = 0
    pids: list[int] = field(default_factory=list)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, wait: bool = True, timeout: float = 90.0) -> OperatorProcess:
        assert not self.alive(), "already running"
        self.metrics_port, self.health_port = free_port(), free_port()
        env = {**self.env, "BARBEQUE_METRICS_PORT": str(self.metrics_port)}
        self.lives += 1
        args = [sys.executable, "-m", "barbeque", "operator"]
        args += ["--liveness", f"http://127.0.0.1:{self.health_port}/healthz"]
        if self.verbose:
            args.append("--verbose")
        with self.log.open("ab") as out:
            out.write(f"\n===== life {self.lives} at {time.time():.3f} =====\n".encode())
            out.flush()
            self.process = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)
        self.pids.append(self.process.pid)
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 90.0) -> None:
        def ready() -> bool:
            if not self.alive():
                raise AssertionError(f"the operator exited: {self.tail()}")
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.health_port}/healthz", timeout=2
                ) as response:
                    return bool(response.status == 200)
            except OSError:
                return False

        wait_until("the operator's liveness endpoint", ready, timeout)
        # Liveness answers before the start-up handler has primed the store; /metrics
        # is served from inside that handler, so it answering means "started".
        wait_until("the operator's /metrics", lambda: self._metrics_text() is not None, timeout)

    def life_log(self) -> str:
        """The log of the current (or last) life only."""
        return self.log_text().rsplit("===== life", 1)[-1]

    def wait_log(self, text: str, timeout: float = 90.0) -> None:
        """Wait until the current life has logged ``text``."""

        def logged() -> bool:
            if not self.alive():
                raise AssertionError(f"the operator exited: {self.tail()}")
            return text in self.life_log()

        wait_until(f"the operator to log {text!r}", logged, timeout)

    def kill(self) -> None:
        """SIGKILL: no cleanup of any kind, as when a node dies or the OOM killer strikes."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def terminate(self, timeout: float = 30.0) -> tuple[int | None, float]:
        """SIGTERM; returns (exit code or None if it outlived ``timeout``, seconds taken)."""
        assert self.process is not None
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            code: int | None = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            code = None
        return code, time.monotonic() - started

    def stop(self) -> None:
        if not self.alive():
            return
        code, _ = self.terminate(30)
        if code is None:
            self.kill()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def tail(self, chars: int = 4000) -> str:
        return self.log_text()[-chars:]

    def _metrics_text(self) -> str | None:
        try:
            with urllib.request.urlopen(self.metrics_url, timeout=5) as response:
                return str(response.read().decode())
        except OSError:
            return None

    def metrics_text(self) -> str:
        text = self._metrics_text()
        assert text is not None, f"/metrics of the operator does not answer: {self.tail()}"
        return text

    def metric(self, name: str, **labels: str) -> float:
        """The sum of the samples called ``name`` whose labels include ``labels``."""
        total = 0.0
        for family in text_string_to_metric_families(self.metrics_text()):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    total += sample.value
        return total


@contextlib.contextmanager
def running(operator: OperatorProcess, wait: bool = True) -> Iterator[OperatorProcess]:
    operator.start(wait=wait)
    try:
        yield operator
    finally:
        operator.stop()


def kubeconfig_for(cluster: Cluster, path: Path, server: str | None = None) -> Path:
    """The admin kubeconfig, pointed at ``server`` (a fault proxy) when given."""
    config = json.loads(cluster.kubeconfig.read_text())
    if server is not None:
        config["clusters"][0]["cluster"]["server"] = server
    path.write_text(json.dumps(config))
    return path


def install_chart(cluster: Cluster, release: str, namespace: str, path: Path) -> tuple[str, Path]:
    """``helm install`` the chart (no pods) and a kubeconfig of its operator ServiceAccount."""
    cluster.helm(
        "install", release, str(ROOT / "charts" / "barbeque"),
        "--namespace", namespace, "--create-namespace",
        "--set", "operator.replicas=0",
        "--set", "dashboard.enabled=false",
    )  # fmt: skip
    deployment = json.loads(
        cluster.kubectl(
            "get", "deployments", "-n", namespace,
            "-l", "app.kubernetes.io/component=operator", "-o", "json",
        ).stdout
    )["items"][0]  # fmt: skip
    account: str = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    token = cluster.kubectl(
        "create", "token", account, "-n", namespace, "--duration=2h"
    ).stdout.strip()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "local",
                "cluster": {
                    "server": cluster.server,
                    "certificate-authority": str(cluster.ca_file),
                },
            }
        ],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "local", "user": account}}],
        "current-context": "sa",
    }
    path.write_text(yaml.safe_dump(config))
    return account, path


# -- Slack that fails or stalls -----------------------------------------------------------


@dataclass
class SlackCall:
    at: float
    channel: str
    text: str
    auth: str
    status: int  # what was answered (0: the client gave up before the answer)


@dataclass
class SlackStub:
    """Slack's ``chat.postMessage``, answering ``statuses`` in turn and stalling when asked.

    ``statuses``: HTTP statuses to answer before answering 200 again; ``stall_seconds`` >
    0 makes every call wait that long before answering (longer than the client's timeout:
    a Slack that hangs).
    """

    url: str = ""
    calls: list[SlackCall] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    stall_seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def posts(self, channel: str) -> list[SlackCall]:
        with self.lock:
            return [c for c in self.calls if c.channel == channel]


def _slack_handler(stub: SlackStub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length).decode()
            if "json" in (self.headers.get("Content-Type") or ""):
                payload = json.loads(raw or "{}")
            else:
                payload = {k: v[0] for k, v in parse_qs(raw).items()}
            with stub.lock:
                status = stub.statuses.pop(0) if stub.statuses else 200
                stall = stub.stall_seconds
                call = SlackCall(
                    time.monotonic(),
                    str(payload.get("channel", "")),
                    str(payload.get("text", "")),
                    self.headers.get("Authorization") or "",
                    status,
                )
                stub.calls.append(call)
            if stall:
                time.sleep(stall)
            body = json.dumps({"ok": status == 200, "error": None if status == 200 else "fail"})
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                if status == 429:
                    self.send_header("Retry-After", "1")
                self.end_headers()
                self.wfile.write(body.encode())
            except OSError:
                call.status = 0  # the client hung up first (its timeout)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextlib.contextmanager
def slack_stub() -> Iterator[SlackStub]:
    stub = SlackStub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _slack_handler(stub))
    server.daemon_threads = True
    stub.url = f"http://127.0.0.1:{server.server_address[1]}/api/"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield stub
    finally:
        server.shutdown()
        server.server_close()


# -- reading the cluster in bulk ----------------------------------------------------------


def list_all(cluster: Cluster, path: str, **query: str) -> list[dict[str, Any]]:
    """Every item of a list path, page by page."""
    items: list[dict[str, Any]] = []
    token = ""
    while True:
        params = {"limit": "500", **query}
        if token:
            params["continue"] = token
        page = cluster.api("GET", path + "?" + urllib.parse.urlencode(params), timeout=60)
        items.extend(page.get("items") or [])
        token = (page.get("metadata") or {}).get("continue") or ""
        if not token:
            return items


def executions_path(namespace: str | None = None) -> str:
    if namespace is None:
        return f"{EXECUTIONS}/jobexecutions"
    return f"{EXECUTIONS}/namespaces/{namespace}/jobexecutions"


def count(cluster: Cluster, path: str) -> int:
    """How many objects a list path has, without reading them (limit=1 + remainingItemCount)."""
    page = cluster.api("GET", path + "?limit=1", timeout=30)
    items = page.get("items") or []
    return len(items) + int((page.get("metadata") or {}).get("remainingItemCount") or 0)


def phase_of(execution: dict[str, Any]) -> str | None:
    phase = (execution.get("status") or {}).get("phase")
    return str(phase) if phase else None


def send_batch(sqs: Any, queue_url: str, bodies: Iterable[str]) -> list[str]:
    """SendMessageBatch in tens; returns the message ids (a failed entry is sent again)."""
    ids: list[str] = []
    pending = list(bodies)
    while pending:
        chunk, pending = pending[:10], pending[10:]
        entries = [{"Id": str(i), "MessageBody": body} for i, body in enumerate(chunk)]
        result = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
        ids.extend(ok["MessageId"] for ok in result.get("Successful", []))
        for failed in result.get("Failed", []):
            pending.append(chunk[int(failed["Id"])])
    return ids


def queue_counts(sqs: Any, queue_url: str) -> tuple[int, int]:
    """(visible, in flight) messages of a queue."""
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return (
        int(attributes["ApproximateNumberOfMessages"]),
        int(attributes["ApproximateNumberOfMessagesNotVisible"]),
    )


def lease(cluster: Cluster, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        result: dict[str, Any] = cluster.api(
            "GET", f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}"
        )
    except ApiError as exc:
        if exc.status == 404:
            return None
        raise
    return result


def record_figures(name: str, figures: dict[str, Any]) -> None:
    """Print the figures of a run and keep them in artifacts/reliability/<name>.json."""
    FIGURES_DIR.mkdir(parents=True, exist_ok=True)
    figures = {"test": name, "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ"), **figures}
    (FIGURES_DIR / f"{name}.json").write_text(json.dumps(figures, indent=2) + "\n")
    sys.stdout.write(f"\n[reliability] {name}: {json.dumps(figures)}\n")
