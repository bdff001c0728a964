"""A real Kubernetes control plane on 127.0.0.1, without containers.

The project's operator has to be judged by a real apiserver (structural CRD
schemas, RBAC on its ServiceAccount token, owner-reference garbage collection,
the real Job controller, helm installs), and this machine has no container
engine. So :class:`Cluster` runs etcd, kube-apiserver, kube-controller-manager
and kube-scheduler as plain processes, and kwok to play the kubelet of a few
fake Nodes: pods get scheduled, turn Running, and Job pods complete (or fail
with a chosen exit code) on the timetable set by the Stage files in
``stages/``. Everything listens on free 127.0.0.1 ports, logs to
``<workdir>/logs/<component>.log``, and is stopped by pid.

Standard library and pyyaml only: certificates come from the ``openssl`` CLI, API calls
from ``urllib``.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import os
import secrets
import shutil
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

from tests.cluster import binaries
from tests.cluster.processes import free_port, pid_alive, spawn, stop_pids, tail
from tests.cluster.realnode import RealNode, stop_root

HERE = Path(__file__).resolve().parent
STAGES_DIR = HERE / "stages"
KWOK_LOGS_CRD = HERE / "kwok-logs-crd.yaml"

SERVICE_CIDR = "10.96.0.0/16"
SERVICE_IP = "10.96.0.1"
POD_CIDR = "10.244.0.1/16"
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"
NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
DEFAULT_POD_LOG = "hello from kwok\n"
# Annotations read by the kwok Stages in stages/ (see docs/cluster.md).
EXIT_CODE_ANNOTATION = "barbeque.dev/kwok-exit-code"
DURATION_ANNOTATION = "barbeque.dev/kwok-duration-ms"

STATE_FILE = "cluster.json"
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")

Progress = Callable[[str], None]


class ClusterError(RuntimeError):
    """The cluster could not start, or a component misbehaved."""


class ApiError(ClusterError):
    """The apiserver answered a request with an HTTP error status."""

    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        self.method = method
        self.path = path
        self.status = status
        self.body = body
        try:
            self.reason = str(json.loads(body).get("reason", ""))
        except ValueError:
            self.reason = ""
        super().__init__(f"{method} {path} -> HTTP {status}: {body[:500]}")


def default_workdir(name: str = "local") -> Path:
    """``~/.cache/barbeque/run/<name>`` (or under ``$BARBEQUE_CACHE``)."""
    return binaries.cache_root() / "run" / name


class Cluster:
    """etcd + kube-apiserver + kube-controller-manager + kube-scheduler + kwok.

    ``Cluster(workdir).start()`` returns once the apiserver is ready, the fake
    Node(s) are Ready and untainted, and the controller manager has created
    the ``default`` ServiceAccount. Use it as a context manager, or call
    :meth:`stop`. With ``detach=True`` the processes outlive this Python
    process and are stopped later by :func:`stop_workdir` (the CLI's ``down``).
    """

    def __init__(
        self,
        workdir: str | Path | None = None,
        *,
        nodes: int = 1,
        pod_log: str = DEFAULT_POD_LOG,
        progress: Progress | None = None,
        build: bool = True,
        detach: bool = False,
        startup_timeout: float = 120.0,
        controller_manager_flags: dict[str, str] | None = None,
    ) -> None:
        self.workdir = (
            Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="barbeque-cluster-"))
        )
        self.nodes = nodes
        self.pod_log_text = pod_log
        self.build = build
        self.detach = detach
        self.startup_timeout = startup_timeout
        # Flags of kube-controller-manager replacing (by name) or added to ours, such as
        # {"--kube-api-qps": "20"}: the benchmarks compare upstream defaults and a tuned one.
        self.controller_manager_flags = dict(controller_manager_flags or {})
        self.progress: Progress = progress or (lambda _msg: None)
        self._build_progress = progress  # None: binaries.ensure_binaries reports on stderr
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self.ports: dict[str, int] = {}
        self.admin_token = ""
        self.server = ""
        self.timings: dict[str, float] = {}
        self.real_node: RealNode | None = None
        # Where things are: fixed for the cluster's life.
        self.kubeconfig = self.workdir / "kubeconfig"
        self.pki_dir = self.workdir / "pki"
        self.ca_file = self.pki_dir / "ca.crt"
        self.logs_dir = self.workdir / "logs"
        self.pod_log_file = self.workdir / "pod.log"  # what every pod's ``pods/log`` returns

    @property
    def node_names(self) -> list[str]:
        return [f"kwok-node-{i}" for i in range(self.nodes)]

    def bin(self, name: str) -> Path:
        """Path of a cached binary: kubectl, helm, kwok, etcd, kube-apiserver, ..."""
        return binaries.binary_path(name)

    def log_path(self, component: str) -> Path:
        return self.logs_dir / f"{component}.log"

    def env(self) -> dict[str, str]:
        """os.environ plus KUBECONFIG for this cluster and the cached bin dir first on PATH."""
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["PATH"] = str(binaries.bin_dir()) + os.pathsep + env.get("PATH", "")
        return env

    # -- client helpers ----------------------------------------------------------

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """Run the cached kubectl against this cluster; raises ClusterError on failure if check."""
        return self._run_tool("kubectl", args, check=check, input=input, timeout=timeout)

    def helm(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 300.0
    ) -> subprocess.CompletedProcess[str]:
        """Run the cached helm against this cluster (its own cache dirs under the workdir)."""
        return self._run_tool("helm", args, check=check, input=input, timeout=timeout)

    def _run_tool(
        self, tool: str, args: Sequence[str], *, check: bool, input: str | None, timeout: float
    ) -> subprocess.CompletedProcess[str]:
        env = self.env()
        if tool == "helm":
            for var, sub in (
                ("HELM_CACHE_HOME", "cache"),
                ("HELM_CONFIG_HOME", "config"),
                ("HELM_DATA_HOME", "data"),
            ):
                env[var] = str(self.workdir / "helm" / sub)
        cmd = [str(self.bin(tool)), f"--kubeconfig={self.kubeconfig}", *args]
        result = subprocess.run(
            cmd, env=env, input=input, capture_output=True, text=True, timeout=timeout
        )
        if check and result.returncode != 0:
            raise ClusterError(
                f"{tool} {' '.join(args)} failed (exit {result.returncode}):\n"
                f"{result.stderr.strip()}"
                f"\n{result.stdout.strip()}"
            )
        return result

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    def api(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        content_type: str = "application/json",
        timeout: float = 30.0,
        raw: bool = False,
    ) -> Any:
        """One HTTPS request to the apiserver as admin (or ``token``); JSON in and out.

        Raises :class:`ApiError` on an HTTP error status. ``raw=True`` returns the
        body as text (for ``pods/log``).
        """
        data = None
        if body is not None:
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        req = urllib.request.Request(self.server + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {token or self.admin_token}")
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, context=self.ssl_context(), timeout=timeout) as resp:
                text = resp.read().decode()
        except urllib.error.HTTPError as err:
            raise ApiError(method, path, err.code, err.read().decode(errors="replace")) from None
        if raw:
            return text
        return json.loads(text) if text else None

    def apply_crds(self, directory: Path = HERE.parents[1] / "crds") -> None:
        """Apply the project's generated CRDs and wait until the API server serves them."""
        self.kubectl("apply", "--server-side", "-f", str(directory))
        self.kubectl(
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd",
            "-l",
            "app.kubernetes.io/part-of=barbeque",
        )

    def create_namespace(self, name: str, timeout: float = 30.0) -> None:
        """Create a namespace and wait for its ``default`` ServiceAccount (pods need it)."""
        try:
            self.api(
                "POST",
                "/api/v1/namespaces",
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
            )
        except ApiError as err:
            if err.status != 409:
                raise
        self._wait(
            f"ServiceAccount {name}/default",
            lambda: self._exists(f"/api/v1/namespaces/{name}/serviceaccounts/default"),
            timeout,
        )

    def start_real_node(self, images: Sequence[Path], sandbox_image: str) -> RealNode:
        """Join a real node (containerd + kubelet, see realnode.py) with these images."""
        node = RealNode(
            self, images=images, sandbox_image=sandbox_image, progress=self.progress,
            detach=self.detach,
        )  # fmt: skip
        self.real_node = node.start()
        return node

    def delete_namespace(self, name: str) -> None:
        with contextlib.suppress(ApiError):
            self.api("DELETE", f"/api/v1/namespaces/{name}")

    @contextlib.contextmanager
    def temporary_namespace(self, prefix: str, digits: int = 8) -> Iterator[str]:
        """A namespace of its own for one test (``prefix-<random hex>``), deleted after."""
        name = f"{prefix}-{uuid.uuid4().hex[:digits]}"
        self.create_namespace(name)
        try:
            yield name
        finally:
            self.delete_namespace(name)

    def set_pod_log(self, pod: str, namespace: str, text: str) -> Path:
        """Make ``pods/log`` of one pod return ``text`` (a kwok ``Logs`` object + a file).

        Takes effect within about a second (kwok watches Logs objects).
        """
        path = self.workdir / "pod-logs" / namespace / f"{pod}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_cri_log(text))
        obj: dict[str, Any] = {
            "apiVersion": "kwok.x-k8s.io/v1alpha1",
            "kind": "Logs",
            "metadata": {"name": pod, "namespace": namespace},
            "spec": {"logs": [{"logsFile": str(path)}]},
        }
        base = f"/apis/kwok.x-k8s.io/v1alpha1/namespaces/{namespace}/logs"
        try:
            self.api("POST", base, obj)
        except ApiError as err:
            if err.status != 409:
                raise
            current = self.api("GET", f"{base}/{pod}")
            obj["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            self.api("PUT", f"{base}/{pod}", obj)
        return path

    def _exists(self, path: str) -> bool:
        try:
            self.api("GET", path)
        except ApiError as err:
            if err.status == 404:
                return False
            raise
        return True

    # -- lifecycle ---------------------------------------------------------------

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> Cluster:
        """Start every component and wait until the cluster can run pods."""
        t0 = time.monotonic()
        if self.build:
            binaries.ensure_binaries(self._build_progress)
        else:
            missing = binaries.missing_binaries()
            if missing:
                raise ClusterError(
                    f"binaries missing from {binaries.bin_dir()}: {', '.join(missing)}; "
                    "run `python -m tests.cluster build`"
                )
        self.timings["binaries"] = time.monotonic() - t0
        existing = read_state(self.workdir)
        if existing and any(pid_alive(p["pid"]) for p in existing.get("processes", [])):
            raise ClusterError(
                f"a cluster is already running in {self.workdir}; stop it first (`down`)"
            )
        for attempt in range(3):
            try:
                self._start(t0)
            except ClusterError as err:
                self.stop()
                # free_port() can race with another cluster starting on this
                # machine; pick new ports and try again.
                if "address already in use" in str(err) and attempt < 2:
                    self.progress(f"  port clash, retrying with new ports: {str(err)[:200]}")
                    continue
                raise
            except BaseException:
                self.stop()
                raise
            return self
        raise AssertionError("unreachable")

    def _start(self, t0: float) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.logs_dir.mkdir(exist_ok=True)
        for component in COMPONENTS:
            self.log_path(component).unlink(missing_ok=True)
        shutil.rmtree(self.workdir / "etcd", ignore_errors=True)  # a fresh cluster every start
        self.ports = {
            "etcd": free_port(),
            "etcd-peer": free_port(),
            "kube-apiserver": free_port(),
            "kube-controller-manager": free_port(),
            "kube-scheduler": free_port(),
            "kwok": free_port(),
        }
        self.server = f"https://127.0.0.1:{self.ports['kube-apiserver']}"
        self._write_pki()
        self._write_kubeconfig()
        self.pod_log_file.write_text(_cri_log(self.pod_log_text))
        self.timings["prepare"] = time.monotonic() - t0

        self._spawn("etcd", self._etcd_args())
        self._wait_http("etcd", f"http://127.0.0.1:{self.ports['etcd']}/health", tls=False)
        self._spawn("kube-apiserver", self._apiserver_args())
        self._wait_http(
            "kube-apiserver", self.server + "/readyz", tls=True, timeout=self.startup_timeout
        )
        self.timings["apiserver_ready"] = time.monotonic() - t0

        self._install_kwok_logs_crd()
        self._spawn("kube-controller-manager", self._controller_manager_args())
        self._spawn("kube-scheduler", self._scheduler_args())
        self._spawn("kwok", self._kwok_args(), extra_env={"HOME": str(self.workdir / "kwok-home")})
        self._write_state()
        for name in self.node_names:
            self._create_node(name)
        self._wait_http("kwok", f"http://127.0.0.1:{self.ports['kwok']}/healthz", tls=False)
        self._wait_http(
            "kube-controller-manager", self._component_url("kube-controller-manager"), tls=True
        )
        self._wait_http("kube-scheduler", self._component_url("kube-scheduler"), tls=True)
        for name in self.node_names:
            self._wait(
                f"node {name} Ready and untainted",
                functools.partial(self._node_usable, name),
                self.startup_timeout,
                component="kwok",
            )
        self._wait(
            "ServiceAccount default/default",
            lambda: self._exists("/api/v1/namespaces/default/serviceaccounts/default"),
            self.startup_timeout,
            component="kube-controller-manager",
        )
        self.timings["ready"] = time.monotonic() - t0
        self.progress(
            f"cluster ready in {self.timings['ready']:.1f} s: {self.server} "
            f"(kubeconfig {self.kubeconfig})"
        )

    def stop(self) -> None:
        """Stop every process this cluster started (SIGTERM, then SIGKILL after 10 s)."""
        # The real node first: its kubelet needs the apiserver to let go of its pods.
        if self.real_node is not None:
            self.real_node.stop()
            self.real_node = None
        elif (self.workdir / "realnode").is_dir():
            stop_root(self.workdir / "realnode")
        entries = [(name, p.pid, str(self.bin(name))) for name, p in self._procs.items()]
        state = read_state(self.workdir)
        if state:
            known = {pid for _, pid, _ in entries}
            entries += [
                (p["name"], int(p["pid"]), p.get("exe", ""))
                for p in state.get("processes", [])
                if int(p["pid"]) not in known
            ]
        # Dependants first: kwok and controllers, then the apiserver, etcd last.
        order = {name: i for i, name in enumerate(reversed(COMPONENTS))}
        entries.sort(key=lambda e: order.get(e[0], -1))
        for entry in entries:
            stop_pids([entry])
        for p in self._procs.values():
            with contextlib.suppress(Exception):
                p.wait(timeout=1)
        self._procs.clear()
        with contextlib.suppress(OSError):
            (self.workdir / STATE_FILE).unlink()

    def restart_controller_manager(self, flags: dict[str, str] | None = None) -> None:
        """Stop kube-controller-manager and start it again with ``flags`` (see __init__)."""
        name = "kube-controller-manager"
        proc = self._procs.pop(name, None)
        if proc is not None:
            stop_pids([(name, proc.pid, str(self.bin(name)))])
            with contextlib.suppress(Exception):
                proc.wait(timeout=5)
        self.controller_manager_flags = dict(flags or {})
        self._spawn(name, self._controller_manager_args())
        self._write_state()
        self._wait_http(name, self._component_url(name), tls=True)

    def is_running(self) -> bool:
        """True while every process of this cluster is alive (started here or attached)."""
        if self._procs:
            return all(p.poll() is None for p in self._procs.values())
        state = read_state(self.workdir)
        if not state:
            return False
        return all(pid_alive(int(p["pid"])) for p in state.get("processes", []))

    @classmethod
    def attach(cls, workdir: str | Path) -> Cluster:
        """A handle on a cluster already running in ``workdir`` (e.g. from the CLI's ``up``).

        Its :meth:`stop` stops that cluster; callers that merely borrow it should not call it.
        """
        state = read_state(workdir)
        if not state:
            raise ClusterError(f"no cluster is running in {workdir} (no {STATE_FILE})")
        cluster = cls(workdir, build=False, nodes=int(state.get("nodes", 1)))
        cluster.server = str(state["server"])
        cluster.ports = {str(k): int(v) for k, v in state["ports"].items()}
        cluster.admin_token = (cluster.pki_dir / "admin.token").read_text().strip()
        if not cluster.is_running():
            raise ClusterError(f"the cluster in {workdir} is not running (a process is gone)")
        return cluster

    # -- internals ---------------------------------------------------------------

    def _spawn(self, name: str, args: list[str], extra_env: dict[str, str] | None = None) -> None:
        env = dict(os.environ)
        env.pop("KUBECONFIG", None)
        env.update(extra_env or {})
        args = [str(self.bin(name)), *args]
        proc = spawn(args, self.log_path(name), self.workdir, env, self.detach)
        self._procs[name] = proc
        self.progress(f"  started {name} (pid {proc.pid})")

    def _fail(self, component: str, what: str) -> ClusterError:
        proc = self._procs.get(component)
        status = ""
        if proc is not None and proc.poll() is not None:
            status = f" ({component} exited with code {proc.returncode})"
        return ClusterError(
            f"{what}{status}. Last lines of {self.log_path(component)}:\n"
            f"{tail(self.log_path(component))}"
        )

    def _check_alive(self) -> None:
        for name, proc in self._procs.items():
            if proc.poll() is not None:
                raise self._fail(name, f"{name} exited during startup")

    def _wait(
        self,
        what: str,
        predicate: Callable[[], bool],
        timeout: float,
        component: str = "kube-apiserver",
    ) -> None:
        deadline = time.monotonic() + timeout
        last_err: Exception | None = None
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                if predicate():
                    return
            except (OSError, ClusterError, ValueError) as err:
                last_err = err
            time.sleep(0.2)
        detail = f" (last error: {last_err})" if last_err else ""
        raise self._fail(component, f"timed out after {timeout:.0f} s waiting for {what}{detail}")

    def _wait_http(self, component: str, url: str, *, tls: bool, timeout: float = 60.0) -> None:
        if tls:
            ctx = ssl.create_default_context(cafile=str(self.ca_file))
            if not url.startswith(self.server):
                ctx = ssl._create_unverified_context()  # self-signed serving certs of kcm/scheduler
        else:
            ctx = None

        def ok() -> bool:
            req = urllib.request.Request(url)
            if url.startswith(self.server):
                req.add_header("Authorization", f"Bearer {self.admin_token}")
            try:
                with urllib.request.urlopen(req, context=ctx, timeout=5) as resp:
                    return bool(resp.status == 200)
            except urllib.error.HTTPError:
                return False

        self._wait(f"{component} at {url}", ok, timeout, component=component)

    def _component_url(self, component: str) -> str:
        return f"https://127.0.0.1:{self.ports[component]}/healthz"

    def _node_usable(self, name: str) -> bool:
        node = self.api("GET", f"/api/v1/nodes/{name}")
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in (node.get("status") or {}).get("conditions") or []
        )
        return ready and not (node.get("spec") or {}).get("taints")

    def _openssl(self, *args: str) -> None:
        result = subprocess.run(
            ["openssl", *args], cwd=self.pki_dir, capture_output=True, text=True
        )
        if result.returncode != 0:
            raise ClusterError(f"openssl {' '.join(args)} failed: {result.stderr.strip()}")

    def _ec_key(self, name: str) -> None:
        curve = "ec_paramgen_curve:P-256"
        self._openssl("genpkey", "-algorithm", "EC", "-pkeyopt", curve, "-out", name)

    def _write_pki(self) -> None:
        """CA, apiserver serving cert, service-account keys and admin token; reused if present."""
        if shutil.which("openssl") is None:
            raise ClusterError("the openssl CLI is needed to make the cluster's certificates")
        pki = self.pki_dir
        pki.mkdir(parents=True, exist_ok=True)
        token_file = pki / "admin.token"
        if not (pki / "apiserver.crt").exists() or not token_file.exists():
            self._ec_key("ca.key")
            self._openssl(
                "req",
                "-x509",
                "-new",
                "-key",
                "ca.key",
                "-subj",
                "/CN=barbeque-test-ca",
                "-days",
                "3650",
                "-out",
                "ca.crt",
            )
            self._ec_key("apiserver.key")
            self._openssl(
                "req",
                "-new",
                "-key",
                "apiserver.key",
                "-subj",
                "/CN=kube-apiserver",
                "-out",
                "apiserver.csr",
            )
            sans = [
                "IP:127.0.0.1",
                f"IP:{SERVICE_IP}",
                "DNS:localhost",
                "DNS:kubernetes",
                "DNS:kubernetes.default",
                "DNS:kubernetes.default.svc",
                "DNS:kubernetes.default.svc.cluster.local",
            ]
            (pki / "apiserver.ext").write_text(
                "basicConstraints=CA:FALSE\n"
                "keyUsage=critical,digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=serverAuth\n"
                "subjectKeyIdentifier=hash\n"
                "authorityKeyIdentifier=keyid,issuer\n"
                f"subjectAltName={','.join(sans)}\n"
            )
            self._openssl(
                "x509",
                "-req",
                "-in",
                "apiserver.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "3650",
                "-extfile",
                "apiserver.ext",
                "-out",
                "apiserver.crt",
            )
            self._openssl(
                "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "sa.key"
            )
            self._openssl("pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub")
            token_file.write_text(secrets.token_hex(24))
            for key in pki.glob("*.key"):
                key.chmod(0o600)
            token_file.chmod(0o600)
        if not (pki / "apiserver-kubelet-client.crt").exists():
            from tests.cluster.realnode import kubelet_cert_request

            kubelet_cert_request(
                pki,
                pki,
                "apiserver-kubelet-client",
                "/O=system:masters/CN=kube-apiserver-kubelet-client",
                "clientAuth",
                sans=None,
            )
        self.admin_token = token_file.read_text().strip()
        (pki / "tokens.csv").write_text(f'{self.admin_token},admin,admin,"system:masters"\n')

    def _write_kubeconfig(self) -> None:
        # JSON is valid YAML, so kubectl, helm and kopf read this without pyyaml.
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "barbeque",
                    "cluster": {
                        "server": self.server,
                        "certificate-authority-data": base64.b64encode(
                            self.ca_file.read_bytes()
                        ).decode(),
                    },
                }
            ],
            "users": [{"name": "admin", "user": {"token": self.admin_token}}],
            "contexts": [
                {
                    "name": "barbeque",
                    "context": {"cluster": "barbeque", "user": "admin", "namespace": "default"},
                }
            ],
            "current-context": "barbeque",
        }
        self.kubeconfig.write_text(json.dumps(config, indent=2) + "\n")
        self.kubeconfig.chmod(0o600)

    def _etcd_args(self) -> list[str]:
        client = f"http://127.0.0.1:{self.ports['etcd']}"
        peer = f"http://127.0.0.1:{self.ports['etcd-peer']}"
        return [
            "--name=barbeque",
            f"--data-dir={self.workdir / 'etcd'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=barbeque={peer}",
            "--unsafe-no-fsync",
            "--quota-backend-bytes=2147483648",
            "--log-level=warn",
        ]

    def _apiserver_args(self) -> list[str]:
        pki = self.pki_dir
        return [
            f"--etcd-servers=http://127.0.0.1:{self.ports['etcd']}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={self.ports['kube-apiserver']}",
            f"--cert-dir={pki}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--token-auth-file={pki / 'tokens.csv'}",
            # Node authorizes the real node's kubelet (system:node:127.0.0.1), as in any
            # cluster; NodeRestriction keeps it to its own Node and pods.
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            f"--service-account-issuer={SA_ISSUER}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--allow-privileged=true",
            # pods/log is proxied to the node's InternalIP (127.0.0.1 for kwok's nodes
            # and the real one) and daemonEndpoints port. With no kubelet CA given, the
            # apiserver skips verifying kwok's self-signed certificate; it presents its
            # own client certificate, which the real kubelet checks against the CA.
            "--kubelet-preferred-address-types=InternalIP",
            f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
            "--profiling=false",
            "--v=1",
        ]

    def _control_plane_args(self, component: str, cert_dir: str) -> list[str]:
        """What kube-controller-manager and kube-scheduler share: the admin kubeconfig, a
        secure port on loopback with its own certificates, and no leader election."""
        return [
            f"--kubeconfig={self.kubeconfig}",
            f"--authentication-kubeconfig={self.kubeconfig}",
            f"--authorization-kubeconfig={self.kubeconfig}",
            # No requestheader CA is configured; don't look it up (quiets the log).
            "--authentication-skip-lookup=true",
            "--bind-address=127.0.0.1",
            f"--secure-port={self.ports[component]}",
            f"--cert-dir={self.workdir / cert_dir}",
            "--leader-elect=false",
        ]

    def _controller_manager_args(self) -> list[str]:
        pki = self.pki_dir
        args = [
            *self._control_plane_args("kube-controller-manager", "kcm-certs"),
            "--controllers=*",
            f"--root-ca-file={pki / 'ca.crt'}",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--allocate-node-cidrs=false",
            "--kube-api-qps=100",
            "--kube-api-burst=200",
            "--v=1",
        ]
        if self.controller_manager_flags:
            replaced = {flag.split("=", 1)[0] for flag in args} & set(self.controller_manager_flags)
            args = [flag for flag in args if flag.split("=", 1)[0] not in replaced]
            args += [f"{name}={value}" for name, value in self.controller_manager_flags.items()]
        return args

    def _scheduler_args(self) -> list[str]:
        return [*self._control_plane_args("kube-scheduler", "scheduler-certs"), "--v=1"]

    def _kwok_args(self) -> list[str]:
        logs_config = self.workdir / "kwok-cluster-logs.yaml"
        logs_config.write_text(
            json.dumps(
                {
                    "apiVersion": "kwok.x-k8s.io/v1alpha1",
                    "kind": "ClusterLogs",
                    "metadata": {"name": "barbeque-all-pods"},
                    "spec": {"logs": [{"logsFile": str(self.pod_log_file)}]},
                },
                indent=2,
            )
            + "\n"
        )
        (self.workdir / "kwok-home").mkdir(exist_ok=True)
        port = self.ports["kwok"]
        args = [
            f"--kubeconfig={self.kubeconfig}",
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={NODE_ANNOTATION[0]}={NODE_ANNOTATION[1]}",
            "--node-ip=127.0.0.1",
            f"--node-port={port}",
            f"--server-address=127.0.0.1:{port}",
            f"--cidr={POD_CIDR}",
            "--node-lease-duration-seconds=40",
            "--enable-crds=Logs",
            f"--config={logs_config}",
        ]
        args += [f"--config={stage}" for stage in sorted(STAGES_DIR.glob("*.yaml"))]
        return args

    def _install_kwok_logs_crd(self) -> None:
        """kwok's Logs CRD, so :meth:`set_pod_log` can give one pod its own log text."""
        crd = _load_yaml(KWOK_LOGS_CRD)
        try:
            self.api("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
        except ApiError as err:
            if err.status != 409:
                raise
        name = crd["metadata"]["name"]

        def established() -> bool:
            obj = self.api("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
            return any(
                c.get("type") == "Established" and c.get("status") == "True"
                for c in (obj.get("status") or {}).get("conditions") or []
            )

        self._wait(f"CRD {name} Established", established, 30)

    def _create_node(self, name: str) -> None:
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "annotations": {
                    NODE_ANNOTATION[0]: NODE_ANNOTATION[1],
                    "node.alpha.kubernetes.io/ttl": "0",
                },
                "labels": {
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "type": "kwok",
                },
            },
            "spec": {},
            "status": {
                "allocatable": {"cpu": "32", "memory": "256Gi", "pods": "1000"},
                "capacity": {"cpu": "32", "memory": "256Gi", "pods": "1000"},
                "addresses": [
                    {"type": "InternalIP", "address": "127.0.0.1"},
                    {"type": "Hostname", "address": name},
                ],
            },
        }
        try:
            self.api("POST", "/api/v1/nodes", node)
        except ApiError as err:
            if err.status != 409:
                raise

    def _write_state(self) -> None:
        state = {
            "server": self.server,
            "kubeconfig": str(self.kubeconfig),
            "ports": self.ports,
            "detached": self.detach,
            "nodes": self.nodes,
            "processes": [
                {"name": name, "pid": p.pid, "exe": str(self.bin(name))}
                for name, p in self._procs.items()
            ],
        }
        (self.workdir / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")


def _cri_log(text: str) -> str:
    """kwok reads log files in the CRI format: ``<RFC3339Nano> stdout F <line>``."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime())
    return "".join(f"{stamp} stdout F {line}\n" for line in text.splitlines())


def _load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def read_state(workdir: str | Path) -> dict[str, Any] | None:
    """The ``cluster.json`` of a workdir (server, ports, pids), or None."""
    try:
        data = json.loads((Path(workdir) / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def stop_workdir(workdir: str | Path) -> list[str]:
    """Stop the processes recorded in a workdir's ``cluster.json``; returns the names stopped."""
    state = read_state(workdir)
    if not state:
        return []
    stopped = stop_root(Path(workdir) / "realnode")
    order = {name: i for i, name in enumerate(reversed(COMPONENTS))}
    procs = sorted(state.get("processes", []), key=lambda p: order.get(p["name"], -1))
    for p in procs:
        if pid_alive(int(p["pid"])):
            stopped.append(p["name"])
        stop_pids([(p["name"], int(p["pid"]), p.get("exe", ""))])
    with contextlib.suppress(OSError):
        (Path(workdir) / STATE_FILE).unlink()
    return stopped
