"""Reading the SQS message envelope: every input gives a request or a reason, never a crash."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from barbeque.api import envelope

pytestmark = pytest.mark.unit


def test_a_barbeque_client_message_is_an_execution_request() -> None:
    body = '{"Type":"JobExecution","Application":"blog","Job":"NotifyAuthor","Message":{"id":1}}'
    assert envelope.parse(body) == envelope.ExecutionRequest("blog", "NotifyAuthor", {"id": 1})


def test_encode_then_parse_round_trips_with_not_before() -> None:
    when = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    parsed = envelope.parse(envelope.encode_execution("blog", "job", [1, "two"], when))
    assert parsed == envelope.ExecutionRequest("blog", "job", [1, "two"], when)


def test_a_retry_message_names_the_original() -> None:
    assert envelope.parse(envelope.encode_retry("abc")) == envelope.RetryRequest("abc")


EXECUTION = {"Type": "JobExecution", "Application": "a", "Job": "j", "Message": 1}


def execution(without: str = "", **changed: object) -> str:
    """A JobExecution envelope with one field left out or some changed, as JSON."""
    body = {key: value for key, value in EXECUTION.items() if key != without}
    return json.dumps(body | changed)


@pytest.mark.parametrize(
    ("body", "reason", "words"),
    [
        ("not json", "InvalidJSON", "not JSON"),
        ("[1, 2]", "InvalidEnvelope", "JSON list, not an object"),
        (execution(without="Application"), "InvalidEnvelope", "Application"),
        (execution(without="Job"), "InvalidEnvelope", "Job is"),
        (execution(without="Message"), "InvalidEnvelope", "Message"),
        (execution(Application=7), "InvalidEnvelope", "Application"),
        (execution(NotBefore="soon"), "InvalidEnvelope", "ISO 8601"),
        ('{"Type":"Bogus","Application":"a"}', "UnknownType", '"Bogus"'),
        ('{"Application":"a"}', "UnknownType", "missing"),
        ('{"Type":"JobRetry"}', "InvalidEnvelope", "RetryMessageId"),
        ('{"Type":"Notification","Message":"{}"}', "InvalidEnvelope", "TopicArn"),
        ('{"Type":"Notification","TopicArn":"t","Message":{}}', "InvalidEnvelope", "not a string"),
    ],
)
def test_bad_messages_say_why(body: str, reason: str, words: str) -> None:
    result = envelope.parse(body)
    assert isinstance(result, envelope.InvalidMessage)
    assert result.reason == reason
    assert words in result.detail
    assert result.raw == body


TOPIC = "arn:aws:sns:us-east-1:123456789012:orders"


def test_an_sns_notification_carries_its_topic_and_its_message_parsed_as_json() -> None:
    body = json.dumps(
        {
            "Type": "Notification",
            "MessageId": "5b2e",
            "TopicArn": TOPIC,
            "Message": json.dumps({"order": 7}),
            "Timestamp": "2026-11-29T22:00:00.000Z",
        }
    )
    assert envelope.parse(body) == envelope.NotificationRequest(TOPIC, {"order": 7})


def test_a_plain_text_sns_message_reaches_the_job_as_that_string() -> None:
    body = json.dumps({"Type": "Notification", "TopicArn": TOPIC, "Message": "order 7 shipped"})
    assert envelope.parse(body) == envelope.NotificationRequest(TOPIC, "order 7 shipped")


def test_an_invalid_message_keeps_the_application_it_named() -> None:
    result = envelope.parse('{"Type":"JobExecution","Application":"blog","Message":1}')
    assert isinstance(result, envelope.InvalidMessage)
    assert result.application == "blog"


@pytest.mark.parametrize(("kind", "named"), [("JobRetry", None), ("Unknown", "blog")])
def test_a_retry_names_no_application_even_when_invalid(kind: str, named: str | None) -> None:
    """A bad NotBefore on a retry names no application, so a queue with a dead-letter
    queue leaves it there (found by tests/e2e/test_reliability_fuzz); a body of another
    Type keeps the application it names, for its owners to see the Error record."""
    body = {"Type": kind, "Application": "blog", "Job": "x", "NotBefore": "soon"}
    result = envelope.parse(json.dumps(body))
    assert isinstance(result, envelope.InvalidMessage)
    assert result.application == named


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)


@given(st.one_of(st.text(), json_values.map(json.dumps)))
def test_any_body_parses_without_raising(body: str) -> None:
    result = envelope.parse(body)
    assert isinstance(
        result,
        envelope.ExecutionRequest
        | envelope.RetryRequest
        | envelope.NotificationRequest
        | envelope.InvalidMessage,
    )


@given(
    st.fixed_dictionaries(
        {"Type": st.sampled_from(["JobExecution", "JobRetry", "Notification", None, 3])},
        optional={
            "Application": json_values,
            "Job": json_values,
            "Message": json_values,
            "RetryMessageId": json_values,
            "NotBefore": json_values,
        },
    )
)
def test_structured_fuzz_never_raises_and_invalid_ones_have_reasons(
    body: dict[str, object],
) -> None:
    result = envelope.parse(json.dumps(body))
    if isinstance(result, envelope.InvalidMessage):
        assert result.reason
        assert result.detail


def test_a_message_nested_too_deep_is_refused_in_words() -> None:
    deep: object = 1
    for _ in range(700):
        deep = [deep]
    body = json.dumps({"Type": "JobExecution", "Application": "a", "Job": "j", "Message": deep})
    result = envelope.parse(body)
    assert isinstance(result, envelope.InvalidMessage)
    assert result.detail == "Message nests 700 levels deep; at most 64 are accepted"
    assert result.application == "a"
    ok: object = 1
    for _ in range(64):
        ok = {"k": ok}
    assert isinstance(
        envelope.parse(envelope.encode_execution("a", "j", ok)), envelope.ExecutionRequest
    )


@pytest.mark.parametrize(
    ("message", "words"),
    [
        ('{"n": 9223372036854775808}', "9223372036854775808, beyond the 64-bit integers"),
        ("[1, -9223372036854775809]", "-9223372036854775809, beyond the 64-bit integers"),
        ('{"x": NaN}', "Message holds nan"),
        ('{"x": [Infinity]}', "Message holds inf"),
        ("1" * 60, "a 60-digit integer"),
    ],
)
def test_numbers_kubernetes_would_refuse_or_round_are_refused_in_words(
    message: str, words: str
) -> None:
    body = f'{{"Type": "JobExecution", "Application": "a", "Job": "j", "Message": {message}}}'
    result = envelope.parse(body)
    assert isinstance(result, envelope.InvalidMessage)
    assert words in result.detail
    assert result.application == "a"


def test_the_int64_edges_and_big_floats_are_kept() -> None:
    message = {"max": 2**63 - 1, "min": -(2**63), "big": 1e300, "flag": True}
    result = envelope.parse(envelope.encode_execution("a", "j", message))
    assert isinstance(result, envelope.ExecutionRequest)
    assert result.message == message
