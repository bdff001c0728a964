"""Settings of the dashboard (environment variables BARBEQUE_<NAME>).

AWS, S3, namespace and console URL come from the operator's ``barbeque.config.Settings``;
only what the web service alone needs lives here.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class DashboardSettings(BaseSettings):
    """Settings of the web console and Web API."""

    model_config = SettingsConfigDict(env_prefix="BARBEQUE_", extra="ignore")

    dashboard_host: str = "127.0.0.1"
    dashboard_port: int = Field(default=8000, ge=0, le=65535)
    # Static bearer tokens, comma separated, for local use and tests.
    api_tokens: str = Field(default="", repr=False)
    # A Secret in BARBEQUE_NAMESPACE whose every data value is an accepted token
    # (the key names the token's owner). Re-read every api_token_secret_refresh_seconds.
    api_token_secret: str | None = None
    api_token_secret_refresh_seconds: float = Field(default=30.0, gt=0)
    # Ask the API server (TokenReview, then SubjectAccessReview) about other tokens.
    token_review: bool = True
    token_cache_seconds: float = Field(default=30.0, ge=0)
    # Let anyone read the API and the console; writes always need a token.
    public_reads: bool = False
    # Executions per console page (cookpad/barbeque shows 15).
    dashboard_page_size: int = Field(default=15, ge=1, le=500)
    # Seconds between live refreshes of console pages (0 turns it off).
    dashboard_refresh_seconds: int = Field(default=5, ge=0)

    # Seconds between samples of each queue's SQS counters for the queue page's 24-hour
    # charts (0 turns sampling off).
    dashboard_queue_sample_seconds: float = Field(default=60.0, ge=0)
    # A link to the Kubernetes Job in your cluster UI, e.g.
    # https://k8s.example.com/#/job/{namespace}/{name}; unset shows the name only.
    dashboard_job_url: str | None = None

    def static_tokens(self) -> dict[str, str]:
        """token -> owner name, from BARBEQUE_API_TOKENS."""
        tokens = [t.strip() for t in self.api_tokens.split(",") if t.strip()]
        return {token: f"api-token-{i}" for i, token in enumerate(tokens)}
