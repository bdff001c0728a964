"""moto's server over real HTTP, for SQS and S3: boto3 talks to it by endpoint_url."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass

import boto3
import pytest
from moto.server import ThreadedMotoServer

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
