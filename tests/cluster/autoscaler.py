"""The real cluster-autoscaler beside the local control plane, with a kwok node group.

Capacity is part of what the project promises ("a Job per message, with cluster
autoscaler handling capacity"), so the e2e tier runs the upstream cluster-autoscaler
(built from the vendored source by ``binaries.py``) as its own process. Its kwok cloud
provider (``KWOK_PROVIDER_MODE=local``) reads a node template from the ConfigMaps
``kwok-provider-config`` / ``kwok-provider-templates`` and creates and deletes Node
objects itself; the template carries ``kwok.x-k8s.io/node: fake``, so the cluster's kwok
plays their kubelet like for any other fake node.

The group's nodes carry the label ``barbeque.dev/node-group: <group>`` and the provider's
taint ``kwok-provider=true:NoSchedule``: only pods that ask (:meth:`Autoscaler.placement`)
land there, so the other tests of a session never trigger a scale-up.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.cluster import binaries
from tests.cluster.harness import NODE_ANNOTATION, ApiError, Cluster, ClusterError
from tests.cluster.processes import free_port, set_pdeathsig, stop_pids, tail

GROUP_LABEL = "barbeque.dev/node-group"
PROVIDER_TAINT = {"key": "kwok-provider", "value": "true", "effect": "NoSchedule"}
NAMESPACE = "barbeque-autoscaler"

# Short windows so a test sees a whole scale-up / scale-down cycle in about a minute.
# Upstream defaults in brackets.
TEST_FLAGS: dict[str, str] = {
    "scan-interval": "2s",  # [10s]
    "scale-down-unneeded-time": "10s",  # [10m] how long a node stays unneeded before removal
    "scale-down-delay-after-add": "10s",  # [10m] no scale-down this soon after a scale-up
    "scale-down-delay-after-delete": "0s",  # [scan-interval]
    "scale-down-delay-after-failure": "5s",  # [3m]
    "unremovable-node-recheck-timeout": "5s",  # [5m] recheck a node once found unremovable
    "node-delete-delay-after-taint": "1s",  # [5s]
    "max-node-provision-time": "2m",  # [15m]
}


def _quiet(_message: str) -> None:
    pass


@dataclass(eq=False)
class Autoscaler:
    """One cluster-autoscaler process managing one kwok node group (min..max nodes).

    Each node offers ``pods_per_node`` pods, ``cpu`` and ``memory``. ``flags`` override
    :data:`TEST_FLAGS`. ``start()`` returns once its ``/health-check`` answers; ``stop()``
    signals it by pid, and the kwok provider deletes the group's nodes on the way out
    (they are deleted here too, in case it was killed).
    """

    cluster: Cluster
    _: KW_ONLY
    group: str = "barbeque-cap"
    min_nodes: int = 0
    max_nodes: int = 5
    pods_per_node: int = 10
    cpu: str = "4"
    memory: str = "16Gi"
    flags: dict[str, str] = field(default_factory=dict)
    progress: Callable[[str], None] = _quiet
    port: int = field(default=0, init=False)
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.flags = {**TEST_FLAGS, **self.flags}

    @property
    def log_path(self) -> Path:
        return self.cluster.log_path(f"cluster-autoscaler-{self.group}")

    def placement(self) -> dict[str, Any]:
        """The ``nodeSelector`` and ``tolerations`` that put a pod on this group's nodes."""
        return {
            "nodeSelector": {GROUP_LABEL: self.group},
            "tolerations": [{**PROVIDER_TAINT, "operator": "Equal"}],
        }

    def template(self) -> dict[str, Any]:
        """The node the provider copies for each new node of the group."""
        resources = {"cpu": self.cpu, "memory": self.memory, "pods": str(self.pods_per_node)}
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.group,
                "annotations": {
                    NODE_ANNOTATION[0]: NODE_ANNOTATION[1],
                    "node.alpha.kubernetes.io/ttl": "0",
                    "cluster-autoscaler.kwok.nodegroup/min-count": str(self.min_nodes),
                    "cluster-autoscaler.kwok.nodegroup/max-count": str(self.max_nodes),
                    "cluster-autoscaler.kwok.nodegroup/desired-count": str(self.min_nodes),
                },
                "labels": {
                    GROUP_LABEL: self.group,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "type": "kwok",
                },
            },
            "spec": {},
            "status": {
                "allocatable": resources,
                "capacity": resources,
                # No conditions: kwok initialises a node that is not Ready yet (conditions,
                # daemonEndpoints with its own port, which kubectl logs goes to).
                "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            },
        }

    def provider_config(self) -> dict[str, Any]:
        return {
            "apiVersion": "v1alpha1",
            "readNodesFrom": "configmap",
            "nodegroups": {"fromNodeLabelKey": GROUP_LABEL},
            "configmap": {"name": "kwok-provider-templates"},
        }

    def args(self) -> list[str]:
        args = [
            "--cloud-provider=kwok",
            f"--kubeconfig={self.cluster.kubeconfig}",
            f"--namespace={NAMESPACE}",
            f"--address=127.0.0.1:{self.port}",
            "--leader-elect=false",
            "--scale-down-enabled=true",
            "--skip-nodes-with-system-pods=false",
            "--logtostderr=true",
            "--v=2",
        ]
        return args + [f"--{k}={v}" for k, v in self.flags.items()]

    # -- lifecycle -------------------------------------------------------------

    def __enter__(self) -> Autoscaler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 60.0) -> Autoscaler:
        reason = binaries.unavailable_reason("cluster-autoscaler")
        if reason:
            raise ClusterError(reason)
        self.cluster.create_namespace(NAMESPACE)
        self._apply_config_maps()
        self.port = free_port()
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(self.cluster.workdir),
            "KUBECONFIG": str(self.cluster.kubeconfig),
            "KWOK_PROVIDER_MODE": "local",
            "POD_NAMESPACE": NAMESPACE,
        }
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                [str(binaries.bin_dir() / "cluster-autoscaler"), *self.args()],
                cwd=self.cluster.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=set_pdeathsig,
            )
        self.progress(f"  started cluster-autoscaler (pid {self._proc.pid})")
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.port}/health-check"
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise self._fail(f"cluster-autoscaler exited with code {self._proc.returncode}")
            with (
                contextlib.suppress(OSError, urllib.error.URLError),
                urllib.request.urlopen(url, timeout=2) as resp,
            ):
                if resp.status == 200:
                    return self
            time.sleep(0.3)
        self.stop()
        raise self._fail(f"cluster-autoscaler not healthy at {url} after {timeout:.0f} s")

    def stop(self) -> None:
        if self._proc is not None:
            exe = str(binaries.bin_dir() / "cluster-autoscaler")
            stop_pids([("cluster-autoscaler", self._proc.pid, exe)])
            with contextlib.suppress(Exception):
                self._proc.wait(timeout=1)  # reaped already: lets Popen know
            self._proc = None
        for name in self.node_names():
            with contextlib.suppress(ApiError):
                self.cluster.api("DELETE", f"/api/v1/nodes/{name}")

    # -- reading the group -----------------------------------------------------

    def nodes(self) -> list[dict[str, Any]]:
        """The group's Node objects as the apiserver has them."""
        path = f"/api/v1/nodes?labelSelector={GROUP_LABEL}%3D{self.group}"
        items: list[dict[str, Any]] = self.cluster.api("GET", path)["items"]
        return items

    def node_names(self) -> list[str]:
        return sorted(n["metadata"]["name"] for n in self.nodes())

    def logtail(self, lines: int = 40) -> str:
        return tail(self.log_path, lines)

    def _fail(self, what: str) -> ClusterError:
        return ClusterError(f"{what}. Last lines of {self.log_path}:\n{self.logtail()}")

    def _apply_config_maps(self) -> None:
        data = {
            "kwok-provider-config": {"config": yaml.safe_dump(self.provider_config())},
            # A List even for one node: the provider takes a lone document only as a List.
            "kwok-provider-templates": {
                "templates": yaml.safe_dump(
                    {"apiVersion": "v1", "kind": "List", "items": [self.template()]}
                )
            },
        }
        base = f"/api/v1/namespaces/{NAMESPACE}/configmaps"
        for name, content in data.items():
            body = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": name, "namespace": NAMESPACE},
                "data": content,
            }
            try:
                self.cluster.api("POST", base, body)
            except ApiError as err:
                if err.status != 409:
                    raise
                self.cluster.api("PUT", f"{base}/{name}", body)
