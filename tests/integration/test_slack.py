"""Slack notifications as they leave the operator: through slack_sdk to a local recorder
over HTTP (a bot token, or an incoming webhook as barbeque's SLACK_WEBHOOK_URL), and the
execution link they carry opened on the console's own routes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from barbeque.adapters.slack import Slack, SlackError, SlackWebhook
from barbeque.api.models import JobDefinition, JobExecution, Phase
from barbeque.config import Settings
from barbeque.factory import build_slack
from barbeque.services.notifications import Notifier, compose
from barbeque_dashboard.cache import Cache
from barbeque_dashboard.services import Backend
from tests.support.fakes import FakeS3, FakeSqs
from tests.support.slack import SlackRecorder, slack_recorder
from tests.support.webapi import TOKEN, definition_body, execution_body, queue_body, web_app

pytestmark = pytest.mark.integration

CONSOLE = "http://testserver"
LINK = re.compile(r"<(?P<url>[^|>]+)\|")


@pytest.fixture
def recorder() -> Iterator[SlackRecorder]:
    with slack_recorder() as made:
        yield made


def definition() -> JobDefinition:
    return JobDefinition.model_validate(
        definition_body(
            "shop",
            "SendMail",
            slack={"channel": "#mail", "notifySuccess": True, "failureText": "@oncall"},
        )
    )


def webhook_url(recorder: SlackRecorder) -> str:
    return recorder.url.replace("/api/", "/services/T0001/B0001/secret")


async def test_the_link_in_a_notification_opens_the_executions_console_page(
    recorder: SlackRecorder,
) -> None:
    first = execution_body("shop", "SendMail", "msg-1", phase="Failed", retried_by="msg-1-retry-1")
    retry = execution_body(
        "shop", "SendMail", "msg-1-retry-1", phase="Succeeded", retry_of="msg-1", attempt=1
    )
    cache = Cache()
    cache.replace("jobqueues", [queue_body("default")])
    cache.replace("jobdefinitions", [definition_body("shop", "SendMail")])
    cache.replace("jobexecutions", [first, retry])
    console = TestClient(web_app(Backend(cache, FakeSqs(), FakeS3(), None), api_tokens=TOKEN))
    notifier = Notifier(Slack("xoxb-test", recorder.url, 5), attempts=1)

    for body, phase in ((first, Phase.FAILED), (retry, Phase.SUCCEEDED)):
        execution = JobExecution.model_validate(body)
        notification = compose(execution, definition(), phase, False, CONSOLE)
        assert notification is not None
        assert await notifier.send(notification) is True

    posted = [m["text"] for m in recorder.messages("#mail")]
    assert len(posted) == 2
    for text, message_id in zip(posted, ("msg-1", "msg-1-retry-1"), strict=True):
        match = LINK.search(text)
        assert match is not None, text
        page = console.get(match["url"], headers={"Authorization": f"Bearer {TOKEN}"})
        assert page.status_code == 200, (match["url"], page.status_code)
        assert f"Execution {message_id}" in page.text


async def test_mentions_in_the_failure_text_ping_through_link_names(
    recorder: SlackRecorder,
) -> None:
    execution = JobExecution.model_validate(execution_body("shop", "SendMail", "msg-2"))
    notification = compose(execution, definition(), Phase.FAILED, False, CONSOLE)
    assert notification is not None
    assert notification.text.endswith(" @oncall")
    await Slack("xoxb-test", recorder.url, 5).post(
        notification.channel, notification.text, notification.color
    )
    [call] = recorder.messages("#mail")
    assert call["link_names"] in (True, "1", "true")
    assert call["auth"] == "Bearer xoxb-test"


async def test_an_incoming_webhook_posts_barbeques_payload(recorder: SlackRecorder) -> None:
    webhook = build_slack(Settings(slack_webhook_url=webhook_url(recorder)))
    assert isinstance(webhook, SlackWebhook)
    await webhook.post("#mail", "*[ERROR]* Failed to execute x @oncall", "danger")
    [call] = [c for c in recorder.calls if c["method"] == "secret"]
    assert call["status"] == 200
    assert call["auth"] is None  # the URL is the credential
    assert call["channel"] == "#mail"
    assert call["link_names"] is True
    assert call["attachments"] == [
        {"color": "danger", "text": "*[ERROR]* Failed to execute x @oncall", "mrkdwn_in": ["text"]}
    ]


async def test_a_webhook_that_refuses_is_an_error_the_notifier_retries(
    recorder: SlackRecorder,
) -> None:
    webhook = SlackWebhook(webhook_url(recorder), 5)
    recorder.failures.extend([500])
    with pytest.raises(SlackError):
        await webhook.post("#mail", "text", "good")
    notifier = Notifier(webhook, attempts=2, base_delay=0.01)
    execution = JobExecution.model_validate(execution_body("shop", "SendMail", "msg-3"))
    notification = compose(execution, definition(), Phase.ERROR, False, None)
    assert notification is not None
    recorder.failures.extend([503])
    assert await notifier.send(notification) is True
    statuses = [c["status"] for c in recorder.calls if c["method"] == "secret"]
    assert statuses == [500, 503, 200]


def test_a_bot_token_wins_over_a_webhook_and_neither_means_no_slack() -> None:
    both = Settings(slack_token="xoxb-1", slack_webhook_url="http://127.0.0.1:9/hook")
    assert isinstance(build_slack(both), Slack)
    assert build_slack(Settings()) is None
