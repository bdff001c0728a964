"""Helpers of the reliability and security tests: the chart's RBAC, bulk reads and sends.

- ``install_chart``: the chart's RBAC without its pods, and a kubeconfig of its operator.
- Counting and listing through the API server, bulk sends, and ``record_figures`` to print
  the figures of a run and keep them under ``artifacts/reliability/``.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.parse
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tests.cluster.harness import ApiError, Cluster
from tests.support.kube import service_account_kubeconfig
from tests.support.operator import GROUP, VERSION

ROOT = Path(__file__).resolve().parents[2]
FIGURES_DIR = ROOT / "artifacts" / "reliability"
EXECUTIONS = f"/apis/{GROUP}/{VERSION}"
LABEL_EXECUTION = "barbeque.dev/execution"
FINISHED = ("Succeeded", "Failed", "Error")


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
    return account, service_account_kubeconfig(cluster, token, path)


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
