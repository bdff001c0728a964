"""The environment every benchmark runs in, started and stopped by the benchmark itself.

- a fresh local control plane (``tests.cluster.harness.Cluster``: etcd, kube-apiserver,
  kube-controller-manager, kube-scheduler, kwok) with the CRDs applied;
- moto's server for SQS and S3 in a process of its own (``bench.moto_server``), which
  counts the calls it answers;
- the operator as its own process (``python -m barbeque operator``), logged in with the
  admin kubeconfig, with ``BARBEQUE_METRICS_PORT`` set and no Slack token;
- helpers to create applications, definitions and queues, watch objects appear, scrape the
  apiserver's own ``apiserver_request_total``, and read CPU and memory of every process.

Everything started here is stopped by pid in :meth:`Environment.stop`.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import platform
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import boto3
from botocore.config import Config
from tests.cluster import binaries
from tests.cluster.harness import ApiError, Cluster
from tests.support import samples as objects
from tests.support.aws import CREDENTIALS, REGION, MotoProcess
from tests.support.operator import OperatorProcess, operator_env
from tests.support.waiting import wait_until

from barbeque.services import builders
from barbeque.services.naming import execution_name

ROOT = Path(__file__).resolve().parents[1]
GROUP, VERSION = "barbeque.dev", "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
GROUP_PATH = f"/apis/{GROUP}/{VERSION}"
OPERATOR_NAMESPACE = "barbeque-system"
BUCKET = "barbeque-bench"
BENCH_AGENT = "barbeque-bench"
T = TypeVar("T")


def out(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def log(text: str) -> None:
    sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {text}\n")
    sys.stderr.flush()


def pdeathsig() -> None:
    """In a child: SIGTERM when the benchmark dies, so nothing outlives a killed run."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


def stop_process(process: subprocess.Popen[bytes], grace: float = 30.0) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# -- /proc ------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds (0 if it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (kB) from /proc/<pid>/status."""
    values: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0])
    except OSError:
        pass
    return values


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def wait_for_quiet_machine(max_load: float, timeout: float) -> str:
    """Wait (up to ``timeout``) for the 1-minute load average to drop under ``max_load``."""
    deadline = time.monotonic() + timeout
    while float(loadavg().split()[0]) > max_load and time.monotonic() < deadline:
        time.sleep(5)
    return loadavg()


# -- the operator's source --------------------------------------------------------------------


def source_paths(ref: str | None, scratch: Path) -> tuple[list[str], str]:
    """PYTHONPATH entries running ``ref``'s operator and dashboard (none: the work tree)."""
    if not ref:
        return [], "work tree"
    commit = subprocess.run(
        ["git", "rev-parse", "--short", ref], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    target = scratch / f"src-{commit}"
    if not target.exists():
        target.mkdir(parents=True)
        archive = subprocess.run(
            ["git", "archive", commit, "operator", "dashboard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return [str(target / "operator"), str(target / "dashboard")], f"git {commit}"


def git_state() -> dict[str, str]:
    def git(*args: str) -> str:
        result = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return result.stdout.strip()

    dirty = git("status", "--short", "--", "operator", "dashboard")
    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "subject": git("log", "-1", "--format=%s"),
        "uncommitted_in_operator_or_dashboard": str(len(dirty.splitlines())),
    }


def machine_info() -> dict[str, str]:
    from importlib.metadata import version

    meminfo = Path("/proc/meminfo").read_text().splitlines()
    total_kb = int(next(line for line in meminfo if line.startswith("MemTotal")).split()[1])
    cpu = "?"
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    versions = []
    for package in ("kopf", "kubernetes", "boto3", "moto", "aiohttp", "pydantic"):
        with contextlib.suppress(Exception):
            versions.append(f"{package} {version(package)}")
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "memory": f"{total_kb / 1024 / 1024:.1f} GiB",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "control plane": f"kubernetes {binaries.KUBERNETES_VERSION}, etcd {binaries.ETCD_VERSION}, "
        f"kwok {binaries.KWOK_VERSION}",
        "packages": ", ".join(versions),
        **git_state(),
    }


# -- results ----------------------------------------------------------------------------------


@dataclass
class Figure:
    name: str
    value: float | None
    unit: str = ""
    baseline: float | None = None
    goal: str = ""
    ok: bool | None = None
    note: str = ""

    def cell(self, value: float | None) -> str:
        if value is None:
            return "-"
        if self.unit in ("ms",) or abs(value) >= 100:
            text = f"{value:.0f}"
        elif abs(value) >= 10:
            text = f"{value:.1f}"
        else:
            text = f"{value:.2f}"
        return f"{text} {self.unit}".strip()


@dataclass
class Result:
    scenario: str
    title: str
    params: dict[str, Any]
    figures: list[Figure] = field(default_factory=list)
    tables: dict[str, list[list[str]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, *args: Any, **kwargs: Any) -> Figure:
        figure = Figure(*args, **kwargs)
        self.figures.append(figure)
        return figure

    def figure(self, name: str) -> Figure:
        return next(f for f in self.figures if f.name == name)

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "title": self.title,
            "params": self.params,
            "figures": [f.__dict__ for f in self.figures],
            "tables": self.tables,
            "notes": self.notes,
        }


def render_table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |"]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        cells = [str(c).ljust(w) for c, w in zip(row, widths, strict=True)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render(result: Result) -> str:
    params = ", ".join(f"{k}={v}" for k, v in result.params.items())
    parts = [f"## {result.title}", "", f"({params})", ""]
    rows = []
    for f in result.figures:
        verdict = "" if f.ok is None else ("ok" if f.ok else "MISSED")
        rows.append(
            [
                f.name,
                f.cell(f.value),
                f.cell(f.baseline) if f.baseline is not None else "",
                f.goal,
                verdict,
                f.note,
            ]
        )
    parts.append(render_table(rows, ["figure", "value", "baseline", "goal", "", "note"]))
    for name, table in result.tables.items():
        parts += ["", f"{name}:", "", render_table(table[1:], table[0])]
    parts += [f"- {note}" for note in result.notes]
    return "\n".join(parts) + "\n"


def render_machine(info: dict[str, str], load_start: str, load_end: str) -> str:
    rows = [[k, v] for k, v in info.items()]
    rows.append(["load average (1/5/15 min) at start", load_start])
    rows.append(["load average (1/5/15 min) at end", load_end])
    return "## Machine\n\n" + render_table(rows, ["", ""]) + "\n"


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, int(-(-q * len(ordered) // 100)))  # ceil
    return ordered[min(rank, len(ordered)) - 1]


# -- the apiserver's own request counters -----------------------------------------------------

_REQUESTS = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
WRITE_VERBS = ("POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION")
RequestKey = tuple[str, str, str, str]  # verb, group, resource, subresource


def scrape_requests(cluster: Cluster) -> Counter[RequestKey]:
    """apiserver_request_total summed over codes, by (verb, group, resource, subresource)."""
    text = cluster.api("GET", "/metrics", raw=True)
    counts: Counter[RequestKey] = Counter()
    for line in text.splitlines():
        match = _REQUESTS.match(line)
        if not match:
            continue
        labels = dict(_LABEL.findall(match.group("labels")))
        key = (
            labels.get("verb", ""),
            labels.get("group", ""),
            labels.get("resource", ""),
            labels.get("subresource", ""),
        )
        counts[key] += int(float(match.group("value")))
    return counts


def request_delta(before: Counter[RequestKey], after: Counter[RequestKey]) -> Counter[RequestKey]:
    delta: Counter[RequestKey] = Counter()
    for key, value in after.items():
        if value - before.get(key, 0) > 0:
            delta[key] = value - before.get(key, 0)
    return delta


def resource_name(key: RequestKey) -> str:
    _verb, group, resource, sub = key
    name = f"{resource}.{group}" if group else resource
    return f"{name}/{sub}" if sub else name


# -- watching objects appear ------------------------------------------------------------------


class Watch(threading.Thread):
    """A watch stream in a thread of its own, timestamping what it sees (``time.time()``).

    ``added[name]``: when the object was first seen; ``phases[name][phase]``: when
    ``status.phase`` was first seen with that value (executions), or a condition of that
    type was first seen True (a Job's ``Complete``, an execution's ``LogsUploaded``).
    """

    def __init__(self, cluster: Cluster, path: str) -> None:
        super().__init__(daemon=True, name=f"watch {path}")
        self.cluster = cluster
        self.path = path
        self.added: dict[str, float] = {}
        self.phases: dict[str, dict[str, float]] = {}
        self.events = 0
        self.stopped = threading.Event()
        self.ready = threading.Event()
        self.error: str | None = None

    def run(self) -> None:
        version: str | None = None
        context = ssl.create_default_context(cafile=str(self.cluster.ca_file))
        while not self.stopped.is_set():
            query = "watch=1&allowWatchBookmarks=true&timeoutSeconds=300"
            if version:
                query += f"&resourceVersion={version}"
            request = urllib.request.Request(f"{self.cluster.server}{self.path}?{query}")
            request.add_header("Authorization", f"Bearer {self.cluster.admin_token}")
            try:
                with urllib.request.urlopen(request, context=context, timeout=2) as response:
                    self.ready.set()
                    for line in response:
                        seen = time.time()
                        event = json.loads(line)
                        obj = event.get("object") or {}
                        if event.get("type") == "ERROR":
                            version = None  # 410 Gone: start over (first-seen times stay)
                            break
                        version = (obj.get("metadata") or {}).get("resourceVersion", version)
                        if event.get("type") in ("ADDED", "MODIFIED"):
                            self._seen(obj, seen)
                        if self.stopped.is_set():
                            return
            except (TimeoutError, OSError, urllib.error.URLError) as exc:
                if self.stopped.is_set():
                    return
                if not isinstance(exc, TimeoutError) and "timed out" not in str(exc):
                    self.error = str(exc)
                    time.sleep(0.2)

    def _seen(self, obj: dict[str, Any], seen: float) -> None:
        name = obj.get("metadata", {}).get("name", "")
        self.events += 1
        self.added.setdefault(name, seen)
        status = obj.get("status") or {}
        reached = [
            c.get("type") for c in status.get("conditions") or [] if c.get("status") == "True"
        ]
        if status.get("phase"):
            reached.append(status["phase"])
        for phase in reached:
            self.phases.setdefault(name, {}).setdefault(phase, seen)

    def stop(self) -> None:
        self.stopped.set()

    def wait_names(self, names: set[str], timeout: float, what: str) -> None:
        wait_until(what, lambda: names <= self.added.keys(), timeout)

    def wait_phase(self, names: set[str], phases: set[str], timeout: float, what: str) -> None:
        def reached() -> bool:
            return all(phases & self.phases.get(n, {}).keys() for n in names)

        wait_until(what, reached, timeout)


# -- the operator process ---------------------------------------------------------------------


@dataclass
class BenchOperator(OperatorProcess):
    """The tests' operator process, with what the benchmarks read of it."""

    trace_path: Path | None = None

    def memory(self) -> dict[str, int]:
        return memory_kb(self.pid)

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def metrics(self) -> dict[str, float]:
        """Its own /metrics, summed over labels, by sample name."""
        values: Counter[str] = Counter()
        for line in self.metrics_text().splitlines():
            if line.startswith("#") or not line.strip():
                continue
            name, _, value = line.rpartition(" ")
            values[name.split("{", 1)[0]] += float(value)
        return dict(values)


@dataclass
class App:
    namespace: str
    queue: str
    queue_url: str
    definitions: list[str]


class AsyncApi:
    """aiohttp against the apiserver (admin token, the cluster's CA): the tight baseline client.

    aiohttp rather than httpx: on this machine httpx.AsyncClient's pool fell from 83 to 42
    requests/s going from 1 to 32 connections, while aiohttp rose to ~190/s.
    """

    def __init__(self, cluster: Cluster, concurrency: int) -> None:
        self.server = cluster.server
        self.headers = {"Authorization": f"Bearer {cluster.admin_token}"}
        self.context = ssl.create_default_context(cafile=str(cluster.ca_file))
        self.concurrency = concurrency
        self.session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> AsyncApi:
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.concurrency, ssl=self.context),
            headers=self.headers,
            timeout=aiohttp.ClientTimeout(total=60),
        )
        return self

    async def __aexit__(self, *_: object) -> None:
        if self.session is not None:
            await self.session.close()

    async def request(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> Any:
        assert self.session is not None
        data = json.dumps(body) if body is not None else None
        headers = {"Content-Type": content_type} if data is not None else {}
        async with self.session.request(
            method, self.server + path, data=data, headers=headers
        ) as response:
            text = await response.text()
            if response.status >= 400:
                raise ApiError(method, path, response.status, text)
            return json.loads(text) if text else None

    async def post(self, path: str, body: Any) -> Any:
        return await self.request("POST", path, body)

    async def patch_status(self, path: str, status: dict[str, Any]) -> Any:
        return await self.request(
            "PATCH", path + "/status", {"status": status}, "application/merge-patch+json"
        )


class Environment:
    """Cluster + moto + (on demand) the operator, for one benchmark run."""

    def __init__(
        self,
        nodes: int = 4,
        ref: str | None = None,
        keep: bool = False,
        workers: int | None = None,
        operator_env: dict[str, str] | None = None,
        trace: bool = False,
    ) -> None:
        self.scratch = Path(tempfile.mkdtemp(prefix="barbeque-bench-"))
        self.nodes = nodes
        self.ref = ref
        self.keep = keep
        self.workers = workers
        self.operator_env = operator_env or {}
        self.trace = trace
        self.cluster: Cluster | None = None
        self.moto: MotoProcess | None = None
        self.moto_url = ""
        self.operator: BenchOperator | None = None
        self.pythonpath: list[str] = []
        self.source = "work tree"
        self._operators = 0
        self._sqs: Any = None

    # -- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> Environment:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self) -> Environment:
        for key, value in CREDENTIALS.items():
            os.environ.setdefault(key, value)
        self.pythonpath, self.source = source_paths(self.ref, self.scratch)
        missing = binaries.missing_binaries()
        if missing:
            raise RuntimeError(
                f"cluster binaries missing ({', '.join(missing)}): "
                "run `python -m tests.cluster build` first"
            )
        try:
            self._start_moto()
            log("starting the local control plane")
            self.cluster = Cluster(
                self.scratch / "cluster", nodes=self.nodes, build=False, progress=log
            )
            self.cluster.start()
            self.cluster.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
            self.cluster.kubectl(
                "wait", "--for=condition=Established", "--timeout=60s", "crd",
                "-l", "app.kubernetes.io/part-of=barbeque",
            )  # fmt: skip
            self.cluster.create_namespace(OPERATOR_NAMESPACE)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.operator is not None:
            self.operator.stop()
            self.operator = None
        if self.cluster is not None:
            self.cluster.stop()
            self.cluster = None
        if self.moto is not None:
            self.moto.stop()
            self.moto = None
        if not self.keep:
            shutil.rmtree(self.scratch, ignore_errors=True)

    def _start_moto(self) -> None:
        self.moto = MotoProcess(
            self.scratch / "moto.log", module="bench.moto_server", cwd=ROOT, preexec_fn=pdeathsig
        ).start()
        self.moto_url = self.moto.url
        self.s3().create_bucket(Bucket=BUCKET)

    # -- clients --------------------------------------------------------------------------

    @property
    def k8s(self) -> Cluster:
        assert self.cluster is not None, "the environment is not started"
        return self.cluster

    def sqs(self) -> Any:
        if self._sqs is None:
            self._sqs = boto3.client(
                "sqs",
                region_name=REGION,
                endpoint_url=self.moto_url,
                config=Config(user_agent_extra=BENCH_AGENT, max_pool_connections=16),
            )
        return self._sqs

    def s3(self) -> Any:
        return boto3.client(
            "s3",
            region_name=REGION,
            endpoint_url=self.moto_url,
            config=Config(user_agent_extra=BENCH_AGENT),
        )

    def async_client(self, concurrency: int = 32) -> AsyncApi:
        """An async client of the apiserver as admin, at most ``concurrency`` connections."""
        return AsyncApi(self.k8s, concurrency)

    def moto_calls(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(self.moto_url + "/_bench/calls", timeout=5) as response:
            calls: list[dict[str, Any]] = json.loads(response.read())["calls"]
            return calls

    def moto_reset(self) -> None:
        request = urllib.request.Request(self.moto_url + "/_bench/reset", method="POST")
        with urllib.request.urlopen(request, timeout=5):
            pass

    # -- the operator ---------------------------------------------------------------------

    def start_operator(self, launcher: bool = False, **extra: str) -> BenchOperator:
        """Start the operator (stopping a running one first) and wait until it primed.

        ``launcher``: through bench.traced_operator even without --trace.
        """
        self.stop_operator()
        self._operators += 1
        env = operator_env(
            self.k8s.kubeconfig,
            OPERATOR_NAMESPACE,
            self.moto_url,
            self.moto_url,
            BARBEQUE_S3_BUCKET=BUCKET,
            # The benchmarks keep every execution: no history pruning.
            BARBEQUE_HISTORY_TTL_SECONDS=str(365 * 24 * 3600),
            **self.operator_env,
            **extra,
        )
        if self.workers:
            env["BARBEQUE_WORKERS"] = str(self.workers)
        env.pop("KUBERNETES_SERVICE_HOST", None)
        module = "barbeque"
        trace_path = None
        pythonpath = list(self.pythonpath)
        if self.trace or launcher:
            module = "bench.traced_operator"
            pythonpath.append(str(ROOT))
        if self.trace:
            trace_path = self.scratch / f"trace-{self._operators}.json"
            env["BARBEQUE_BENCH_TRACE"] = str(trace_path)
        if pythonpath:
            env["PYTHONPATH"] = os.pathsep.join([*pythonpath, env.get("PYTHONPATH", "")])
        self.operator = BenchOperator(
            env,
            self.scratch / f"operator-{self._operators}.log",
            module=module,
            cwd=self.scratch,
            preexec_fn=pdeathsig,
            trace_path=trace_path,
        )
        try:
            self.operator.start(wait=False)
            # Started: the start-up handler has primed the store.
            self.operator.wait_log("Barbeque operator started", 120)
        except BaseException:
            self.stop_operator()
            raise
        return self.operator

    def stop_operator(self) -> None:
        if self.operator is not None:
            began = time.monotonic()
            self.operator.stop()
            log(f"operator stopped in {time.monotonic() - began:.1f} s")
            self.operator = None

    # -- objects --------------------------------------------------------------------------

    def new_app(
        self,
        prefix: str,
        definitions: tuple[str, ...] = ("hello",),
        queue_spec: dict[str, Any] | None = None,
        definition_spec: dict[str, Any] | None = None,
        create_queue: bool = True,
    ) -> App:
        """A namespace, its definitions, an SQS queue and (unless told not to) its JobQueue."""
        suffix = f"{int(time.time() * 1000) % 10**8:08d}"
        namespace = f"{prefix}-{suffix}"
        queue = f"{prefix}-q-{suffix}"
        self.k8s.create_namespace(namespace)
        url = self.sqs().create_queue(QueueName=f"Barbeque-{queue}")["QueueUrl"]
        for name in definitions:
            self.k8s.api(
                "POST",
                f"{GROUP_PATH}/namespaces/{namespace}/jobdefinitions",
                definition_body(namespace, name, queue, **(definition_spec or {})),
            )
        app = App(namespace, queue, url, list(definitions))
        if create_queue:
            self.create_jobqueue(app, **(queue_spec or {}))
        return app

    def create_jobqueue(self, app: App, **spec: Any) -> None:
        body = objects.queue(
            app.queue, **{"receiveWaitSeconds": 20, "visibilityTimeoutSeconds": 60, **spec}
        )
        self.k8s.api("POST", f"{GROUP_PATH}/jobqueues", body)

    def delete_jobqueue(self, app: App) -> None:
        """Delete the JobQueue, so that later operators stop polling its SQS queue."""
        with contextlib.suppress(ApiError):
            self.k8s.api("DELETE", f"{GROUP_PATH}/jobqueues/{app.queue}")

    def wait_queue_ready(self, app: App, timeout: float = 60) -> None:
        def ready() -> bool:
            try:
                body = self.k8s.api("GET", f"{GROUP_PATH}/jobqueues/{app.queue}")
            except ApiError:
                return False
            return bool((body.get("status") or {}).get("phase") == "Ready")

        wait_until(f"JobQueue {app.queue} to be Ready", ready, timeout)

    def watch(self, path: str) -> Watch:
        watch = Watch(self.k8s, path)
        watch.start()
        watch.ready.wait(10)
        return watch

    def watch_jobs(self, namespace: str) -> Watch:
        return self.watch(f"/apis/batch/v1/namespaces/{namespace}/jobs")

    def watch_executions(self, namespace: str) -> Watch:
        return self.watch(f"{GROUP_PATH}/namespaces/{namespace}/jobexecutions")

    def send_batch(self, app: App, bodies: list[str]) -> list[tuple[str, float]]:
        """SendMessageBatch, ten at a time; returns (message id, time the call returned)."""
        sent: list[tuple[str, float]] = []
        for start in range(0, len(bodies), 10):
            entries = [
                {"Id": str(i), "MessageBody": body}
                for i, body in enumerate(bodies[start : start + 10])
            ]
            result = self.sqs().send_message_batch(QueueUrl=app.queue_url, Entries=entries)
            done = time.time()
            if result.get("Failed"):
                raise RuntimeError(f"SendMessageBatch failed: {result['Failed']}")
            ordered = sorted(result["Successful"], key=lambda s: int(s["Id"]))
            sent += [(s["MessageId"], done) for s in ordered]
        return sent

    def send_steadily(self, app: App, count: int, rate: float, tag: str = "i") -> dict[str, float]:
        """``count`` messages, one SendMessage at a time, ``rate`` a second; returns
        {execution name: time SendMessage returned}, in the order sent."""
        sent: dict[str, float] = {}
        start = time.monotonic()
        for i in range(count):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            response = self.sqs().send_message(
                QueueUrl=app.queue_url, MessageBody=message_body(app, "hello", {tag: i})
            )
            sent[execution_name(response["MessageId"])] = time.time()
        return sent

    # -- accounting -----------------------------------------------------------------------

    def processes(self) -> dict[str, int]:
        """pids of everything the benchmark runs, by name."""
        pids: dict[str, int] = {}
        if self.cluster is not None:
            state = json.loads((self.cluster.workdir / "cluster.json").read_text())
            for proc in state.get("processes", []):
                pids[proc["name"]] = int(proc["pid"])
        if self.moto is not None:
            assert self.moto.process is not None
            pids["moto"] = self.moto.process.pid
        if self.operator is not None:
            pids["operator"] = self.operator.pid
        pids["bench"] = os.getpid()
        return pids

    def cpu_snapshot(self) -> dict[str, float]:
        return {name: cpu_seconds(pid) for name, pid in self.processes().items()}


class Window:
    """What happened between :meth:`open` and :meth:`close`: API requests, AWS calls, CPU."""

    def __init__(self, env: Environment) -> None:
        self.env = env
        self.requests: Counter[RequestKey] = Counter()
        self.calls: list[dict[str, Any]] = []
        self.cpu: list[list[str]] = []
        self.seconds = 0.0

    def open(self) -> Window:
        self._requests = scrape_requests(self.env.k8s)
        self._cpu = self.env.cpu_snapshot()
        self.env.moto_reset()
        self.started = time.time()
        self._t0 = time.monotonic()
        return self

    def close(self) -> Window:
        self.seconds = time.monotonic() - self._t0
        self.calls = self.env.moto_calls()
        self.requests = request_delta(self._requests, scrape_requests(self.env.k8s))
        self.cpu = cpu_table(self._cpu, self.env.cpu_snapshot(), self.seconds)
        return self

    def aws(self, service: str, client: str = "other") -> dict[str, dict[str, Any]]:
        """The operator's (``other``) calls to one AWS service, by action."""
        return {
            c["action"]: c for c in self.calls if c["service"] == service and c["client"] == client
        }

    def aws_count(self, service: str, client: str = "other") -> int:
        return sum(c["count"] for c in self.aws(service, client).values())

    def request_rows(self, per: int | None = None, writes_only: bool = False) -> list[list[str]]:
        header = ["verb", "resource", "requests"] + (["per execution"] if per else [])
        rows = [header]
        for key, count in sorted(self.requests.items(), key=lambda kv: (-kv[1], kv[0])):
            if writes_only and key[0] not in WRITE_VERBS:
                continue
            if key[0] == "WATCH":
                continue
            row = [key[0], resource_name(key), str(count)]
            if per:
                row.append(f"{count / per:.2f}")
            rows.append(row)
        return rows

    def aws_rows(self, per: int | None = None) -> list[list[str]]:
        header = ["client", "service", "action", "calls"] + (["per message"] if per else [])
        rows = [header]
        for c in self.calls:
            who = "benchmark" if c["client"] == "bench" else "operator"
            action = c["action"]
            if action == "ReceiveMessage":
                action += f" ({c['messages']} messages)"
            row = [who, c["service"], action, str(c["count"])]
            if per:
                row.append(f"{c['count'] / per:.2f}")
            rows.append(row)
        return rows


def trace_table(path: Path | None) -> list[list[str]] | None:
    """Median and p90 (ms) of what bench.traced_operator recorded, busiest first."""
    if path is None or not path.exists():
        return None
    data: dict[str, list[list[float]]] = json.loads(path.read_text())
    rows = [["what", "count", "queued p50/p90", "call p50/p90", "resume p50/p90", "total p50/p90"]]

    def pair(values: list[float]) -> str:
        return f"{1000 * percentile(values, 50):.0f} / {1000 * percentile(values, 90):.0f}"

    ordered = sorted(data.items(), key=lambda kv: -sum(sum(v) for v in kv[1]))
    for name, samples in ordered:
        if not samples:
            continue
        totals = [sum(v) for v in samples]
        if len(samples[0]) == 3:
            parts = [pair([v[i] for v in samples]) for i in range(3)]
        else:
            parts = ["", "", ""]
        rows.append([name, str(len(samples)), *parts, pair(totals)])
    return rows


def cpu_table(before: dict[str, float], after: dict[str, float], seconds: float) -> list[list[str]]:
    """CPU seconds per process over a window, and the share of one core."""
    rows = [["process", "CPU s", "% of one core"]]
    for name in after:
        used = after[name] - before.get(name, 0.0)
        rows.append([name, f"{used:.1f}", f"{100 * used / max(seconds, 1e-9):.0f} %"])
    return rows


def definition_body(namespace: str, name: str, queue: str, **spec: Any) -> dict[str, Any]:
    return objects.definition(namespace, name, queue, **spec)


def baseline_execution(app: App, i: int) -> dict[str, Any]:
    """The JobExecution of the ``i``-th ``hello`` message, as a baseline client builds it
    (with the operator's own builder, so that the baseline creates the same objects)."""
    message_id = str(uuid.uuid4())
    return builders.build_execution(
        name=execution_name(message_id),
        namespace=app.namespace,
        application=app.namespace,
        job="hello",
        queue=app.queue,
        message_id=message_id,
        message={"i": i},
        sent_timestamp=int(time.time() * 1000),
    )


def message_body(app: App, job: str, payload: Any) -> str:
    return json.dumps(
        {"Type": "JobExecution", "Application": app.namespace, "Job": job, "Message": payload}
    )


@contextlib.contextmanager
def py_spy(pid: int, output: Path | None, rate: int = 50) -> Iterator[None]:
    """``py-spy record`` of ``pid`` while the block runs (nothing when ``output`` is None).

    ``--nonblocking``: the operator is not paused for each sample (py-spy's default pauses
    it, which on two busy cores slowed the operator down several times).
    """
    if output is None:
        yield
        return
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(exe).exists():
        raise RuntimeError("py-spy is not installed: pip install py-spy")
    output.parent.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [
            exe, "record", "--pid", str(pid), "--rate", str(rate), "--format", "speedscope",
            "--nonblocking", "--threads", "--output", str(output),
        ],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=pdeathsig,
    )  # fmt: skip
    time.sleep(1.0)
    try:
        yield
    finally:
        process.send_signal(signal.SIGINT)
        try:
            _, err = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            _, err = process.communicate()
        if not output.exists():
            log(f"py-spy wrote nothing: {err.decode(errors='replace')[-500:]}")
        else:
            log(f"profile written to {output}")
