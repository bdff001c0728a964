"""A real node beside the kwok ones: containerd, runc and a kubelet on 127.0.0.1.

kwok only pretends: no container starts and every log is a fixed text. This node runs
real containers, so a Job's pod has real output, exit codes, deadlines and OOM kills,
and the project's own image (built by :mod:`tests.cluster.images`) runs the operator
and the console in pods. Everything lives under ``<cluster workdir>/realnode`` and is
stopped by pid, with the containers killed and their mounts undone first; no system
service is used.

Networking stays on loopback (docs/cluster.md, "The real node"):

* The node is named ``127.0.0.1``. The kubelet refuses a loopback ``--node-ip``, but
  takes an IP given as ``--hostname-override`` as the node's InternalIP unchecked; the
  apiserver (``--kubelet-preferred-address-types=InternalIP``) then dials the kubelet on
  127.0.0.1 for ``kubectl logs``, never the machine's own interface address.
* Pods get a network namespace that leads nowhere (``cni/barbeque-loopback``: ``lo``
  and an eth0 with a 127.244.x.y address, no host interface). Pods that need to talk to
  anything (the operator, the console) use hostNetwork.

Pods land here only when they ask: the node carries the label :data:`NODE_LABEL` and
the taint :data:`NODE_TAINT`; :func:`placement` gives the matching pod-spec fields.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.cluster import binaries
from tests.cluster.processes import free_port, pid_alive, spawn, stop_pids, tail

if TYPE_CHECKING:
    from tests.cluster.harness import Cluster
    from tests.cluster.images import Images

NODE_NAME = "127.0.0.1"
NODE_LABEL = ("barbeque.dev/node", "real")
NODE_TAINT = {"key": "barbeque.dev/real-node", "value": "true", "effect": "NoSchedule"}
# containerd 1.6 needs an eth0 with an address in each pod: this plugin gives one that
# leads nowhere (read its header).
CNI_PLUGIN = Path(__file__).resolve().parent / "cni" / "barbeque-loopback"
LOOPBACK_PLUGIN = Path("/usr/lib/cni/loopback")  # Debian's containernetworking-plugins
STATE_FILE = "realnode.json"
# What a machine needs for the real node, and the Debian packages that bring it.
REQUIRED_COMMANDS = {
    "containerd": "containerd",
    "containerd-shim-runc-v2": "containerd",
    "ctr": "containerd",
    "runc": "runc",
    "nsenter": "util-linux",
    "ip": "iproute2",
    "flock": "util-linux",
}

Progress = Callable[[str], None]


class RealNodeError(RuntimeError):
    """The real node could not start or stop; the message says why."""


def placement() -> dict[str, Any]:
    """Pod-spec fields that put a pod on the real node (and only there)."""
    return {
        "nodeSelector": {NODE_LABEL[0]: NODE_LABEL[1]},
        "tolerations": [{"key": NODE_TAINT["key"], "operator": "Exists", "effect": "NoSchedule"}],
    }


def chart_settings(cluster: Cluster, app_image: str, ports: dict[str, int]) -> list[str]:
    """``helm install`` arguments that run the chart's pods from ``app_image`` on this node.

    hostNetwork (no pod network here), every server on 127.0.0.1 at the given free ports
    (``metrics``, ``health``, ``console``), the API server's loopback address for in-cluster
    clients, the image imported rather than pulled, and the real node's placement.
    """
    repository, tag = app_image.rsplit(":", 1)
    where = placement()
    args = [
        f"image.repository={repository}", f"image.tag={tag}", "image.pullPolicy=Never",
        "hostNetwork=true", "listenAddress=127.0.0.1",
        "kubernetesApi.host=127.0.0.1", f"kubernetesApi.port={cluster.ports['kube-apiserver']}",
        f"operator.metricsPort={ports['metrics']}", f"operator.healthPort={ports['health']}",
        f"dashboard.port={ports['console']}",
    ]  # fmt: skip
    settings = [arg for value in args for arg in ("--set", value)]
    for component in ("operator", "dashboard"):
        for key, value in where.items():
            settings += ["--set-json", f"{component}.{key}={json.dumps(value)}"]
    return settings


def unavailable_reason() -> str | None:
    """Why this machine cannot run the real node, or None when it can."""
    if os.geteuid() != 0:
        return "the real node needs root (containerd, runc and the kubelet run as root)"
    missing = sorted({pkg for cmd, pkg in REQUIRED_COMMANDS.items() if not shutil.which(cmd)})
    if missing:
        return f"the real node needs the Debian packages {', '.join(missing)} (scripts/bootstrap)"
    if not LOOPBACK_PLUGIN.exists():
        return f"the real node needs Debian's containernetworking-plugins ({LOOPBACK_PLUGIN})"
    if not Path("/sys/fs/cgroup").is_dir():
        return "the real node needs cgroups mounted at /sys/fs/cgroup"
    return None


class RealNode:
    """containerd + kubelet joined to ``cluster`` as the Node :data:`NODE_NAME`.

    ``images`` are OCI archives imported into containerd's ``k8s.io`` namespace before
    the kubelet starts (pods use ``imagePullPolicy: Never`` or ``IfNotPresent`` with their
    ``localhost/...`` names); ``sandbox_image`` is the pod sandbox ("pause") image, one of
    them. No registry is reachable here, so an image that is not imported cannot be pulled.
    """

    def __init__(
        self,
        cluster: Cluster,
        *,
        images: Iterable[Path],
        sandbox_image: str,
        progress: Progress | None = None,
        detach: bool = False,
        startup_timeout: float = 90.0,
    ) -> None:
        self.cluster = cluster
        self.images = list(images)
        self.sandbox_image = sandbox_image
        self.progress: Progress = progress or (lambda _msg: None)
        self.detach = detach
        self.startup_timeout = startup_timeout
        self.root = cluster.workdir / "realnode"
        self.socket = self.root / "run" / "containerd.sock"
        self.kubelet_dir = self.root / "kubelet"
        # Where the kubelet keeps container logs (``<ns>_<pod>_<uid>/<container>/0.log``).
        self.pod_logs_dir = self.root / "pod-logs"
        self.ports: dict[str, int] = {}
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self.timings: dict[str, float] = {}
        self.built: Images | None = None  # what was imported, when the images module built it

    # -- paths -------------------------------------------------------------------

    def log_path(self, component: str) -> Path:
        return self.cluster.logs_dir / f"{component}.log"

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> RealNode:
        reason = unavailable_reason()
        if reason:
            raise RealNodeError(reason)
        if len(str(self.socket)) > 100:
            raise RealNodeError(
                f"containerd's socket path is too long for a unix socket: {self.socket}"
            )
        t0 = time.monotonic()
        try:
            self._start(t0)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, t0: float) -> None:
        stop_root(self.root)  # leftovers of a run that was killed
        for sub in ("run", "containerd", "cni", "pki", "pod-logs"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.ports = {"kubelet": free_port(), "kubelet-healthz": free_port()}
        self._write_pki()
        self._spawn("containerd", ["--config", str(self._write_containerd_config())])
        self._wait("containerd's socket", self.socket.exists, 30, "containerd")
        self._wait("containerd's CRI plugin", self._cri_ready, 30, "containerd")
        self.timings["containerd"] = time.monotonic() - t0
        for archive in self.images:
            self.import_image(archive)
        self.timings["images"] = time.monotonic() - t0
        self._spawn("kubelet", self._kubelet_args())
        self._write_state()
        self._wait(f"node {NODE_NAME} Ready", self._node_ready, self.startup_timeout, "kubelet")
        self.timings["ready"] = time.monotonic() - t0
        self.progress(f"real node {NODE_NAME} ready in {self.timings['ready']:.1f} s")

    def import_image(self, archive: Path) -> None:
        """Hand an OCI archive to the CRI (``ctr -n k8s.io images import``)."""
        start = time.monotonic()
        self.ctr("images", "import", str(archive), timeout=300)
        self.progress(f"  imported {archive.name} in {time.monotonic() - start:.1f} s")

    def restart_kubelet(self) -> None:
        """Stop the kubelet (containers keep running under containerd) and start it again."""
        proc = self._procs.pop("kubelet", None)
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        self._spawn("kubelet", self._kubelet_args())
        self._write_state()

    def stop(self) -> None:
        """Stop the kubelet, kill every container, stop containerd, undo mounts."""
        for name in ("kubelet",):
            proc = self._procs.pop(name, None)
            if proc is not None:
                stop_pids([(name, proc.pid, _exe_of(name))])
                with contextlib.suppress(Exception):
                    proc.wait(timeout=5)  # reaped already; Popen learns its exit status
        stop_root(self.root)
        for proc in self._procs.values():
            with contextlib.suppress(Exception):
                proc.wait(timeout=1)
        self._procs.clear()

    # -- clients -----------------------------------------------------------------------

    def ctr(
        self, *args: str, timeout: float = 60.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """containerd's own CLI on this node's socket, in the CRI's ``k8s.io`` namespace."""
        result = subprocess.run(
            ["ctr", "--address", str(self.socket), "--namespace", "k8s.io", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise RealNodeError(f"ctr {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    def container_pids(self) -> list[int]:
        """Host pids of every process inside a running container of this node."""
        pids: list[int] = []
        listed = self.ctr("tasks", "ls", check=False).stdout.splitlines()[1:]
        for line in listed:
            fields = line.split()
            if len(fields) >= 3 and fields[2] == "RUNNING":
                ps = self.ctr("tasks", "ps", fields[0], check=False).stdout.splitlines()[1:]
                pids += [int(row.split()[0]) for row in ps if row.split()]
        return pids

    # -- internals -----------------------------------------------------------------------

    def _spawn(self, name: str, args: list[str]) -> None:
        env = {**os.environ, "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")}
        proc = spawn([_exe_of(name), *args], self.log_path(name), self.root, env, self.detach)
        self._procs[name] = proc
        self.progress(f"  started {name} (pid {proc.pid})")

    def _wait(
        self, what: str, predicate: Callable[[], bool], timeout: float, component: str
    ) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            for name, proc in self._procs.items():
                if proc.poll() is not None:
                    raise RealNodeError(
                        f"{name} exited with code {proc.returncode} while waiting for {what}; "
                        f"last lines of {self.log_path(name)}:\n{tail(self.log_path(name))}"
                    )
            try:
                if predicate():
                    return
            except Exception as err:  # remembered for the error message
                last = err
            time.sleep(0.25)
        raise RealNodeError(
            f"timed out after {timeout:.0f} s waiting for {what}"
            + (f" (last error: {last})" if last else "")
            + f"; last lines of {self.log_path(component)}:\n{tail(self.log_path(component))}"
        )

    def _cri_ready(self) -> bool:
        out = self.ctr("plugins", "ls", check=False).stdout
        return any(
            " cri " in f" {line} " and line.rstrip().endswith("ok") for line in out.splitlines()
        )

    def _node_ready(self) -> bool:
        node = self.cluster.api("GET", f"/api/v1/nodes/{NODE_NAME}")
        return any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in (node.get("status") or {}).get("conditions") or []
        )

    def _write_containerd_config(self) -> Path:
        cni_bin = self.root / "cni-bin"
        cni_bin.mkdir(exist_ok=True)
        shutil.copy2(CNI_PLUGIN, cni_bin / CNI_PLUGIN.name)
        # containerd's CRI always adds the loopback network of its own, by this plugin.
        with contextlib.suppress(FileExistsError):
            (cni_bin / "loopback").symlink_to(LOOPBACK_PLUGIN)
        cni_conf = self.root / "cni" / "10-barbeque.conflist"
        cni_conf.write_text(
            json.dumps(
                {
                    "cniVersion": "1.0.0",
                    "name": "barbeque-loopback",
                    "plugins": [{"type": CNI_PLUGIN.name}],
                }
            )
            + "\n"
        )
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        # TOML by hand: the layout is fixed and small, and no TOML writer is a dependency.
        config = f"""\
version = 2
root = "{self.root / "containerd"}"
state = "{self.root / "run" / "state"}"
# The snapshotters and plugins a node does not use here; aufs, btrfs, zfs and devmapper
# only log errors on this machine's ext4.
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
]

[grpc]
  address = "{self.socket}"

[ttrpc]
  address = "{self.socket}.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{self.root / "opt"}"

[{cri}]
  # No registry serves registry.k8s.io/pause here: the sandbox is a local image.
  sandbox_image = "{self.sandbox_image}"
  # These VMs lack CAP_SYS_RESOURCE: runc cannot lower oom_score_adj below its own.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  max_container_log_line_size = 16384

[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri}.containerd.runtimes.runc.options]
  # The kubelet is told cgroupDriver: cgroupfs; the two must agree (containerd 1.6 does
  # not report its driver to the kubelet).
  SystemdCgroup = false

[{cri}.cni]
  bin_dir = "{cni_bin}"
  conf_dir = "{self.root / "cni"}"
  max_conf_num = 1
"""
        path = self.root / "containerd.toml"
        path.write_text(config)
        return path

    def _write_pki(self) -> None:
        """Kubelet client cert (system:node:NAME), serving cert, kubeconfig; CA = the cluster's."""
        pki = self.root / "pki"
        ca = self.cluster.pki_dir
        kubelet_cert_request(
            pki,
            ca,
            "kubelet-client",
            f"/O=system:nodes/CN=system:node:{NODE_NAME}",
            "clientAuth",
            sans=None,
        )
        kubelet_cert_request(
            pki,
            ca,
            "kubelet-serving",
            f"/CN={NODE_NAME}",
            "serverAuth",
            sans=f"IP:{NODE_NAME},DNS:localhost",
        )
        kubeconfig = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "barbeque",
                    "cluster": {
                        "server": self.cluster.server,
                        "certificate-authority": str(ca / "ca.crt"),
                    },
                }
            ],
            "users": [
                {
                    "name": "kubelet",
                    "user": {
                        "client-certificate": str(pki / "kubelet-client.crt"),
                        "client-key": str(pki / "kubelet-client.key"),
                    },
                }
            ],
            "contexts": [
                {"name": "kubelet", "context": {"cluster": "barbeque", "user": "kubelet"}}
            ],
            "current-context": "kubelet",
        }
        (self.root / "kubelet.kubeconfig").write_text(json.dumps(kubeconfig, indent=2) + "\n")

    def _kubelet_args(self) -> list[str]:
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            # Everything the kubelet serves, on loopback only.
            "address": "127.0.0.1",
            "port": self.ports["kubelet"],
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": self.ports["kubelet-healthz"],
            "tlsCertFile": str(self.root / "pki" / "kubelet-serving.crt"),
            "tlsPrivateKeyFile": str(self.root / "pki" / "kubelet-serving.key"),
            # The apiserver's pods/log requests carry its kubelet client certificate.
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(self.cluster.ca_file)},
            },
            "authorization": {"mode": "Webhook"},
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            # containerd runs runc with SystemdCgroup = false; the drivers must match.
            "cgroupDriver": "cgroupfs",
            # These machines are cgroup v1 (hybrid); 1.34 still runs there when told so.
            "failCgroupV1": False,
            "failSwapOn": False,
            "registerWithTaints": [NODE_TAINT],
            # The VM's disk is shared with everything else: never evict for it.
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "1%",
                "nodefs.inodesFree": "1%",
                "imagefs.available": "1%",
            },
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            # Local images only; a pull that cannot succeed should not hold others back.
            "serializeImagePulls": False,
            # Big job outputs stay in one file until the job ends (the operator ships them).
            "containerLogMaxSize": "100Mi",
            "containerLogMaxFiles": 2,
            # No cluster DNS and no resolv.conf from the host: pods talk to loopback only.
            "resolvConf": "",
            "clusterDomain": "cluster.local",
            "podLogsDir": str(self.pod_logs_dir),
            "shutdownGracePeriod": "0s",
            "maxPods": 110,
        }
        path = self.root / "kubelet-config.json"
        path.write_text(json.dumps(config, indent=2) + "\n")
        return [
            f"--config={path}",
            f"--kubeconfig={self.root / 'kubelet.kubeconfig'}",
            f"--hostname-override={NODE_NAME}",
            f"--root-dir={self.kubelet_dir}",
            f"--cert-dir={self.root / 'pki'}",
            f"--node-labels={NODE_LABEL[0]}={NODE_LABEL[1]}",
            "--v=1",
        ]

    def _write_state(self) -> None:
        state = {
            "socket": str(self.socket),
            "ports": self.ports,
            "processes": [
                {"name": name, "pid": p.pid, "exe": _exe_of(name)}
                for name, p in self._procs.items()
            ],
        }
        (self.root / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")


def kubelet_cert_request(
    pki: Path, ca_dir: Path, name: str, subject: str, usage: str, sans: str | None
) -> None:
    """An EC key and a certificate signed by the cluster CA (reused when present)."""
    crt = pki / f"{name}.crt"
    if crt.exists():
        return

    def openssl(*args: str) -> None:
        result = subprocess.run(["openssl", *args], cwd=pki, capture_output=True, text=True)
        if result.returncode != 0:
            raise RealNodeError(f"openssl {' '.join(args)} failed: {result.stderr.strip()}")

    openssl(
        "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", f"{name}.key"
    )
    openssl("req", "-new", "-key", f"{name}.key", "-subj", subject, "-out", f"{name}.csr")
    ext = [
        "basicConstraints=CA:FALSE",
        "keyUsage=critical,digitalSignature,keyEncipherment",
        f"extendedKeyUsage={usage}",
    ]
    if sans:
        ext.append(f"subjectAltName={sans}")
    (pki / f"{name}.ext").write_text("\n".join(ext) + "\n")
    openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", str(ca_dir / "ca.crt"), "-CAkey",
        str(ca_dir / "ca.key"), "-CAcreateserial", "-days", "3650", "-extfile", f"{name}.ext",
        "-out", crt.name,
    )  # fmt: skip
    (pki / f"{name}.key").chmod(0o600)


def _exe_of(name: str) -> str:
    if name == "containerd":
        return shutil.which("containerd") or ""
    return str(binaries.binary_path(name))


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _shims_of(socket: Path) -> list[int]:
    """containerd-shim-runc-v2 processes serving this node's containerd (by its address)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        argv = _cmdline(int(entry.name))
        if argv and argv[0].endswith("containerd-shim-runc-v2") and str(socket) in argv:
            found.append(int(entry.name))
    return found


def _descendants(pids: Iterable[int]) -> list[int]:
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[-1].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    out: list[int] = []
    todo = list(pids)
    while todo:
        pid = todo.pop()
        for child in parents.get(pid, []):
            out.append(child)
            todo.append(child)
    return out


def _unmount_under(root: Path) -> None:
    """Lazily unmount everything mounted below ``root``, deepest first."""
    prefix = str(root.resolve()) + "/"
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return
    points = [line.split()[1].encode().decode("unicode_escape") for line in lines]
    for point in sorted({p for p in points if p.startswith(prefix)}, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)


def stop_root(root: Path) -> list[str]:
    """Stop what a real node left under ``root``: kubelet, containers, shims, containerd.

    Works from the state file alone, so ``python -m tests.cluster down`` and a crashed
    test run clean up the same way. Returns the names of the processes it stopped.
    """
    stopped: list[str] = []
    try:
        state = json.loads((root / STATE_FILE).read_text())
    except (OSError, ValueError):
        state = {}
    procs = {p["name"]: (p["name"], int(p["pid"]), p["exe"]) for p in state.get("processes", [])}
    socket = Path(state.get("socket") or root / "run" / "containerd.sock")

    def stop(name: str) -> None:
        # stop_pids signals a pid only while it still runs the recorded program.
        if name in procs and pid_alive(procs[name][1]):
            stop_pids([procs[name]])
            stopped.append(name)

    stop("kubelet")
    netns = _sandbox_netns(root)
    # Containers first: their shims outlive containerd, and their processes outlive the shims.
    shims = _shims_of(socket)
    for pid in _descendants(shims):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    stop("containerd")
    for pid in _shims_of(socket):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if shims:
        stopped.append(f"{len(shims)} container shim(s)")
    _unmount_under(root)
    for path in netns:
        # containerd 1.6 pins pod network namespaces at /var/run/netns/cni-*, outside our root.
        subprocess.run(["umount", str(path)], capture_output=True)
        with contextlib.suppress(OSError):
            path.unlink()
    _remove_kubepods_cgroups()
    with contextlib.suppress(OSError):
        (root / STATE_FILE).unlink()
    return stopped


def _sandbox_netns(root: Path) -> list[Path]:
    """Network namespace files of this node's pod sandboxes, read from their OCI bundles."""
    found: set[Path] = set()
    for config in (root / "run" / "state").glob("io.containerd.runtime.v2.task/*/*/config.json"):
        try:
            namespaces = json.loads(config.read_text())["linux"]["namespaces"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        for namespace in namespaces:
            path = str(namespace.get("path") or "")
            if namespace.get("type") == "network" and "/netns/cni-" in path:
                found.add(Path(path))
    return sorted(found)


def _remove_kubepods_cgroups() -> None:
    """Empty ``kubepods`` cgroups the kubelet made (cgroupfs driver), so the next starts clean."""
    base = Path("/sys/fs/cgroup")
    for controller in base.iterdir() if base.is_dir() else []:
        top = controller / "kubepods"
        if not top.is_dir():
            continue
        dirs = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts))
        for d in reversed([top, *dirs]):
            with contextlib.suppress(OSError):
                d.rmdir()
