"""Kubeconfigs of the local cluster for a process the tests start: the admin's, pointed
at another server (a fault proxy), or a ServiceAccount's token (so RBAC decides); and
ServiceAccount tokens with the ClusterRoles that decide what they may do."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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


def service_account_token(cluster: Cluster, namespace: str, name: str) -> str:
    accounts = f"/api/v1/namespaces/{namespace}/serviceaccounts"
    cluster.api("POST", accounts, {"metadata": {"name": name}})
    token: str = cluster.api(
        "POST",
        f"{accounts}/{name}/token",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}},
    )["status"]["token"]
    return token


def grant(cluster: Cluster, name: str, namespace: str, account: str, rules: list[Any]) -> None:
    """A ClusterRole with ``rules`` bound to the ServiceAccount ``namespace/account``."""
    cluster.api(
        "POST",
        "/apis/rbac.authorization.k8s.io/v1/clusterroles",
        {"metadata": {"name": name}, "rules": rules},
    )
    cluster.api(
        "POST",
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
        {
            "metadata": {"name": name},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": name,
            },
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
        },
    )
