"""All configuration of the operator and the dashboard, from environment variables.

One ``Settings`` object, env prefix ``BARBEQUE_``, built once at startup so that a bad
value stops the process with a clear message instead of failing on the first message.
"""

from __future__ import annotations

import os
import socket
from functools import lru_cache
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Settings of Barbeque on Kubernetes (environment variables BARBEQUE_<NAME>)."""

    model_config = SettingsConfigDict(env_prefix="BARBEQUE_", extra="ignore")

    # Where the operator itself runs; Error records of messages naming no valid
    # application are kept here.
    namespace: str = Field(default="barbeque-system", min_length=1)

    # Logs of both processes: readable lines, or one JSON object per line (barbeque.logs).
    log_format: Literal["text", "json"] = "text"

    # AWS. The endpoints let tests and the local demo point boto3 at moto's server.
    aws_region: str = "us-east-1"
    sqs_endpoint_url: str | None = None
    sns_endpoint_url: str | None = None
    s3_endpoint_url: str | None = None
    s3_bucket: str = Field(default="barbeque", min_length=3)
    s3_create_bucket: bool = False

    # Slack: a bot token (Web API), or else an incoming webhook URL as cookpad/barbeque's
    # SLACK_WEBHOOK_URL. With neither, notifications are logged and skipped.
    slack_token: str | None = Field(default=None, repr=False)
    slack_webhook_url: str | None = Field(default=None, repr=False)
    slack_api_url: str = "https://slack.com/api/"
    slack_timeout_seconds: float = Field(default=10.0, gt=0)
    slack_attempts: int = Field(default=3, ge=1, le=10)
    console_url: str | None = Field(
        default=None, description="Base URL of the console, for links in Slack messages."
    )

    # The operator.
    # Reconcile workers; the threads that run their blocking SDK calls (SQS, S3, Slack) and
    # intake's, also the Kubernetes connection limit: one draining queue alone has up to 40
    # creates in flight, and a worker uploading logs holds three threads.
    workers: int = Field(default=32, ge=1, le=256)
    kube_qps_threads: int = Field(default=64, ge=4, le=512)
    metrics_port: int = Field(default=8080, ge=0, le=65535)
    metrics_address: str = Field(default="0.0.0.0", min_length=1)
    health_port: int = Field(default=8081, ge=0, le=65535)
    resync_seconds: float = Field(default=300.0, gt=0)
    log_tail_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    sqs_error_backoff_max_seconds: float = Field(default=60.0, gt=0)
    standalone: bool = True

    # High availability: replicas elect one active operator through a Lease in
    # ``namespace``; the others keep their caches warm and take over when it stops.
    leader_election: bool = False
    lease_name: str = "barbeque-operator"
    lease_seconds: float = Field(default=15.0, ge=2)
    identity: str = Field(
        default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}",
        description="This replica's name in the Lease.",
    )
    shutdown_grace_seconds: float = Field(default=20.0, ge=0)

    # History: finished executions are deleted from the cluster after this age or beyond
    # this count per definition (their record stays in S3); a definition's history
    # field overrides both.
    history_ttl_seconds: int = Field(default=7 * 24 * 3600, ge=60)
    history_keep: int = Field(default=1000, ge=0)
    history_interval_seconds: float = Field(default=60.0, gt=0)

    @field_validator("slack_api_url")
    @classmethod
    def _slash(cls, value: str) -> str:
        # slack_sdk joins base_url and method names by plain concatenation.
        return value if value.endswith("/") else value + "/"


def secret_values(settings: Settings) -> list[str | None]:
    """What no log line may show: the Slack token and webhook, and the AWS keys of the
    environment."""
    return [
        settings.slack_token,
        settings.slack_webhook_url,
        os.environ.get("AWS_SECRET_ACCESS_KEY"),
        os.environ.get("AWS_SESSION_TOKEN"),
    ]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
