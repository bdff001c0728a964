"""Schemathesis over the published OpenAPI document: no input makes the service answer 5xx.

Runs schemathesis's own CLI against the running service (real HTTP, real apiserver, moto),
authenticated with a static token so write endpoints are exercised past the auth check.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import webapi_servers
from tests.support.webapi import TOKEN
from tests.support.webapi_servers import ROOT, App, Service

pytestmark = pytest.mark.integration

service = webapi_servers.service
webapp = webapi_servers.webapp


def schemathesis_cli() -> str:
    found = shutil.which("st", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip("schemathesis is not installed (pip install schemathesis)")
    return found


@pytest.mark.timeout(900)
def test_no_generated_request_gets_a_server_error(
    service: Service, webapp: App, tmp_path: Path
) -> None:
    cli = schemathesis_cli()
    report = ROOT / "artifacts" / "schemathesis"
    report.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [
            cli,
            "run",
            f"{service.url}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--header",
            f"Authorization: Bearer {TOKEN}",
            "--max-examples",
            os.environ.get("BARBEQUE_SCHEMATHESIS_EXAMPLES", "25"),
            "--phases",
            "examples,coverage,fuzzing",
            "--seed",
            "20240601",
            "--workers",
            "1",
            "--report",
            "junit",
            "--report-dir",
            str(report),
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=840,
        cwd=tmp_path,
        env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
    )
    output = result.stdout + result.stderr
    (report / "output.txt").write_text(output)
    assert result.returncode == 0, output[-6000:] + "\n--- service log ---\n" + service.tail()
