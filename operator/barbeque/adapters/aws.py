"""The one way the adapters make a boto3 client.

Standard retries (three attempts), a short connect timeout, a read timeout that outlasts
SQS's 20 s long poll, and a connection pool as large as the workers that share the
client (botocore keeps 10 by default; every reconcile worker may upload at once).
"""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config


def client(
    service: str, region: str, endpoint_url: str | None, max_pool: int, **config: Any
) -> Any:
    """A boto3 client of ``service``; ``config`` adds to the botocore Config."""
    return boto3.client(
        service,
        region_name=region,
        endpoint_url=endpoint_url,
        config=Config(
            max_pool_connections=max_pool,
            retries={"mode": "standard", "max_attempts": 3},
            connect_timeout=5,
            read_timeout=30,
            **config,
        ),
    )
