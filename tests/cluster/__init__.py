"""A local Kubernetes control plane for the project's tests (see docs/cluster.md).

``Cluster`` runs etcd, kube-apiserver, kube-controller-manager, kube-scheduler
and kwok as plain processes on 127.0.0.1; ``ensure_binaries`` builds them once
per machine into ``~/.cache/barbeque/k8s-<version>/bin``.
"""

from tests.cluster.binaries import (
    KUBERNETES_VERSION,
    BuildError,
    bin_dir,
    ensure_binaries,
    missing_binaries,
)
from tests.cluster.harness import (
    DURATION_ANNOTATION,
    EXIT_CODE_ANNOTATION,
    ApiError,
    Cluster,
    ClusterError,
    default_workdir,
    read_state,
    stop_workdir,
)

__all__ = [
    "DURATION_ANNOTATION",
    "EXIT_CODE_ANNOTATION",
    "KUBERNETES_VERSION",
    "ApiError",
    "BuildError",
    "Cluster",
    "ClusterError",
    "bin_dir",
    "default_workdir",
    "ensure_binaries",
    "missing_binaries",
    "read_state",
    "stop_workdir",
]
