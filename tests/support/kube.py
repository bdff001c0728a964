"""Kubeconfigs of the local cluster for a process the tests start: the admin's, pointed
at another server (a fault proxy), or a ServiceAccount's token (so RBAC decides)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.cluster.harness import Cluster


def kubeconfig_for(cluster: Cluster, path: Path, server: str | None = None) -> Path:
    """The admin kubeconfig, pointed at ``server`` (a fault proxy) when given."""
    config = json.loads(cluster.kubeconfig.read_text())
    if server is not None:
        config["clusters"][0]["cluster"]["server"] = server
    path.write_text(json.dumps(config))
    return path


def service_account_kubeconfig(cluster: Cluster, token: str, path: Path) -> Path:
    """A kubeconfig that logs in with ``token`` (``kubectl create token``)."""
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
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "local", "user": "sa"}}],
        "current-context": "sa",
    }
    path.write_text(yaml.safe_dump(config))
    return path
