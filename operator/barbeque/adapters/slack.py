"""Slack, for execution outcome notifications: a bot token (Web API) or an incoming webhook.

Both post what cookpad/barbeque posted: one attachment with a colour bar, and
``link_names`` so that ``@name`` in a definition's failure text pings that person.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.webhook import WebhookClient


class SlackError(Exception):
    """Slack did not accept the message."""


def _attachments(text: str, color: str) -> list[dict[str, Any]]:
    return [{"color": color, "text": text, "mrkdwn_in": ["text"]}]


class Slack:
    """Slack's Web API (``chat.postMessage``) with a bot token."""

    def __init__(self, token: str, base_url: str, timeout: float) -> None:
        self._client = WebClient(token=token, base_url=base_url, timeout=int(max(1, timeout)))

    async def post(self, channel: str, text: str, color: str) -> None:
        loop = asyncio.get_running_loop()
        call = functools.partial(
            self._client.chat_postMessage,
            channel=channel,
            text=text,
            link_names=True,
            attachments=_attachments(text, color),
        )
        try:
            await loop.run_in_executor(None, call)
        except (SlackApiError, SlackClientError, OSError) as exc:
            raise SlackError(str(exc)) from exc


class SlackWebhook:
    """An incoming webhook, as cookpad/barbeque's ``SLACK_WEBHOOK_URL``.

    The definition's channel is sent along, as barbeque did; a webhook of a Slack app
    posts to the channel it was made for whatever the payload says.
    """

    def __init__(self, url: str, timeout: float) -> None:
        self._client = WebhookClient(url, timeout=int(max(1, timeout)))

    async def post(self, channel: str, text: str, color: str) -> None:
        loop = asyncio.get_running_loop()
        call = functools.partial(
            self._client.send_dict,
            {
                "channel": channel,
                "text": text,
                "link_names": True,
                "attachments": _attachments(text, color),
            },
        )
        try:
            response = await loop.run_in_executor(None, call)
        except (SlackClientError, OSError) as exc:
            raise SlackError(str(exc)) from exc
        if response.status_code != 200:
            raise SlackError(f"the webhook answered {response.status_code}: {response.body[:200]}")
