"""moto's server over real HTTP, for SQS and S3: boto3 talks to it by endpoint_url.

``aws``: one in-process server for the session. ``MotoProcess``: the server as its own
process, so SQS and S3 can be separate servers and one of them stopped and started again.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import boto3
import pytest
from moto.server import ThreadedMotoServer

from tests.support.waiting import wait_until

REGION = "us-east-1"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Aws:
    endpoint_url: str
    server: ThreadedMotoServer

    def sqs(self):  # type: ignore[no-untyped-def]
        return boto3.client("sqs", region_name=REGION, endpoint_url=self.endpoint_url)

    def s3(self):  # type: ignore[no-untyped-def]
        return boto3.client("s3", region_name=REGION, endpoint_url=self.endpoint_url)

    def sns(self):  # type: ignore[no-untyped-def]
        return boto3.client("sns", region_name=REGION, endpoint_url=self.endpoint_url)


@pytest.fixture(scope="session")
def aws() -> Iterator[Aws]:
    """One moto server for the session; tests use their own queue and bucket names."""
    for key, value in CREDENTIALS.items():
        os.environ.setdefault(key, value)
    port = free_port()
    # Every request would otherwise be logged into the captured output of each test.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield Aws(f"http://127.0.0.1:{port}", server)
    finally:
        server.stop()


class MotoProcess:
    """``moto_server`` on a fixed 127.0.0.1 port; stop and start it again on the same port.

    moto keeps its state in memory, so a restart forgets queues, messages and buckets: a
    test that restarts one recreates what the real service would have kept.
    """

    def __init__(
        self,
        log: Path,
        port: int | None = None,
        *,
        module: str | None = None,
        cwd: Path | None = None,
        preexec_fn: Callable[[], None] | None = None,
    ) -> None:
        """``module``: ``python -m module --port P`` instead of moto's own ``moto_server``
        (the benchmarks' counting server)."""
        self.port = port or free_port()
        self.log = log
        self.module = module
        self.cwd = cwd
        self.preexec_fn = preexec_fn
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def aws(self) -> Aws:
        """What ``tests.support.operator.make_app`` needs: the endpoint (no in-process server)."""
        return Aws(self.url, cast(Any, None))

    def start(self) -> MotoProcess:
        for key, value in CREDENTIALS.items():
            os.environ.setdefault(key, value)
        if self.module:
            args = [sys.executable, "-m", self.module, "--port", str(self.port)]
        else:
            moto_server = str(Path(sys.executable).with_name("moto_server"))
            args = [moto_server, "-H", "127.0.0.1", "-p", str(self.port)]
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                args,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **CREDENTIALS},
                cwd=self.cwd,
                preexec_fn=self.preexec_fn,
            )
        wait_until(f"moto on port {self.port}", self._answers, 30)
        return self

    def _answers(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"moto exited: {self.log.read_text()[-2000:]}")
        with socket.socket() as sock:
            sock.settimeout(1)
            return sock.connect_ex(("127.0.0.1", self.port)) == 0

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> MotoProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoProcess]:
    """moto's server as its own process, for one test module."""
    with MotoProcess(tmp_path_factory.mktemp("moto") / "moto.log") as server:
        yield server
