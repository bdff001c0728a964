"""The operator's check of the API server's version, on real servers: the local control
plane passes it; the operator process, pointed at a server that says it is 1.30, stops at
start with a message naming the version, instead of running and never seeing an execution.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from barbeque.adapters.kube import Connection, Kube, load_api_client
from barbeque.services import compat
from tests.cluster.harness import Cluster

pytestmark = pytest.mark.integration


def test_the_local_api_server_passes_the_version_check(cluster: Cluster) -> None:
    async def ask() -> dict[str, object]:
        kube = Kube(Connection.from_api_client(load_api_client(str(cluster.kubeconfig))))
        try:
            return await kube.server_version()
        finally:
            await kube.close()

    info = asyncio.run(ask())
    found = compat.server_version(info)
    assert found is not None, info
    assert found >= compat.MIN_KUBERNETES, info
    compat.require_supported(info)


class _OldApiServer(http.server.BaseHTTPRequestHandler):
    """Kubernetes 1.30 as far as /version goes; 404 for anything else."""

    def do_GET(self) -> None:
        if self.path == "/version":
            code, body = 200, {"major": "1", "minor": "30", "gitVersion": "v1.30.4"}
        else:
            code, body = 404, {"kind": "Status", "code": 404, "reason": "NotFound"}
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def old_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _OldApiServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_the_operator_refuses_an_api_server_older_than_1_31_at_start(
    old_server: str, tmp_path: Path
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "old", "cluster": {"server": old_server}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "old", "context": {"cluster": "old", "user": "u"}}],
                "current-context": "old",
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("BARBEQUE_")}
    env.update(
        {
            "KUBECONFIG": str(kubeconfig),
            "BARBEQUE_NAMESPACE": "barbeque-system",
            "BARBEQUE_METRICS_PORT": "0",
        }
    )
    result = subprocess.run(
        [sys.executable, "-m", "barbeque", "operator"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]
    assert "failed permanently: the API server is Kubernetes v1.30.4" in output, output[-3000:]
    assert "Barbeque needs 1.31 or later" in output
