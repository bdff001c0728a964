"""Slack's Web API, for execution outcome notifications."""

from __future__ import annotations

import asyncio
import functools

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError


class SlackError(Exception):
    """Slack did not accept the message."""


class Slack:
    def __init__(self, token: str, base_url: str, timeout: float) -> None:
        self._client = WebClient(token=token, base_url=base_url, timeout=int(max(1, timeout)))

    async def post(self, channel: str, text: str, color: str) -> None:
        """One attachment with a colour bar, as cookpad/barbeque posted."""
        loop = asyncio.get_running_loop()
        call = functools.partial(
            self._client.chat_postMessage,
            channel=channel,
            text=text,
            attachments=[{"color": color, "text": text, "mrkdwn_in": ["text"]}],
        )
        try:
            await loop.run_in_executor(None, call)
        except (SlackApiError, SlackClientError, OSError) as exc:
            raise SlackError(str(exc)) from exc
