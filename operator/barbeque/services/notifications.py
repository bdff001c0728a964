"""Slack texts and when to send them, as cookpad/barbeque did."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote

from barbeque import metrics
from barbeque.api.models import JobDefinition, JobExecution, Phase

logger = logging.getLogger(__name__)


class SlackPoster(Protocol):
    async def post(self, channel: str, text: str, color: str) -> None: ...


@dataclass(frozen=True)
class Notification:
    kind: str  # success, failure, error
    channel: str
    text: str
    color: str


def execution_url(console_url: str | None, execution: JobExecution) -> str | None:
    """The console's page of the execution: ``/job_executions/<message id>``, as barbeque's."""
    if not console_url:
        return None
    return f"{console_url.rstrip('/')}/job_executions/{quote(execution.spec.message_id, safe='')}"


def compose(
    execution: JobExecution,
    definition: JobDefinition | None,
    phase: Phase,
    will_retry: bool,
    console_url: str | None,
) -> Notification | None:
    """The Slack message for an outcome, or None when the definition asks for silence."""
    if definition is None or definition.spec.slack is None:
        return None
    slack = definition.spec.slack
    spec = execution.spec
    verb = "retry" if spec.attempt > 0 else "execute"
    label = f"{spec.application}/{spec.job} #{spec.message_id}"
    url = execution_url(console_url, execution)
    link = f"<{url}|{label}>" if url else f"`{label}`"
    suffix = f" {slack.failure_text}" if slack.failure_text else ""
    if phase is Phase.SUCCEEDED:
        if not slack.notify_success:
            return None
        return Notification(
            "success", slack.channel, f"*[SUCCESS]* Succeeded to {verb} {link}", "good"
        )
    if phase is Phase.FAILED:
        if will_retry and slack.notify_failure_only_if_retry_limit_reached:
            return None
        return Notification(
            "failure", slack.channel, f"*[FAILURE]* Failed to {verb} {link}{suffix}", "danger"
        )
    if phase is Phase.ERROR:
        return Notification(
            "error", slack.channel, f"*[ERROR]* Failed to {verb} {link}{suffix}", "danger"
        )
    return None


class Notifier:
    """Posts with bounded retries; a Slack outage never holds up an execution."""

    def __init__(self, slack: SlackPoster | None, attempts: int, base_delay: float = 1.0) -> None:
        self._slack = slack
        self._attempts = attempts
        self._base_delay = base_delay

    async def send(self, notification: Notification) -> bool:
        if self._slack is None:
            logger.info(
                "Slack is not configured; not posting to %s: %s",
                notification.channel,
                notification.text,
            )
            return False
        for attempt in range(self._attempts):
            try:
                await self._slack.post(notification.channel, notification.text, notification.color)
            except Exception as exc:
                final = attempt + 1 == self._attempts
                metrics.SLACK_FAILURES.labels(final=str(final).lower()).inc()
                logger.warning(
                    "Slack post to %s failed (attempt %d of %d): %s",
                    notification.channel,
                    attempt + 1,
                    self._attempts,
                    exc,
                )
                if final:
                    return False
                await asyncio.sleep(self._base_delay * (2**attempt))
            else:
                metrics.SLACK_NOTIFICATIONS.labels(kind=notification.kind).inc()
                return True
        return False
