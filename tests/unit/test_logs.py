"""Log lines: readable text by default, JSON on request, the execution named, no secrets."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from barbeque import logs

pytestmark = pytest.mark.unit

TOKEN = "xoxb-123456-abcdef-slack"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    out = io.StringIO()
    yield out
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved[0]:
        root.addHandler(handler)
    root.setLevel(saved[1])


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_json_lines_carry_time_level_logger_message_and_the_execution(
    stream: io.StringIO,
) -> None:
    logs.configure("json", stream=stream)
    log = logging.getLogger("barbeque.services.reconciler")
    log.info("outside")
    with logs.context("shop", "exec-abc", "msg-123"):
        log.warning("Job %s created", "exec-abc")
    first, second = (json.loads(line) for line in lines(stream))
    assert set(first) == {"time", "level", "logger", "message"}
    assert first["time"].endswith("+00:00")
    assert second == {
        "time": second["time"],
        "level": "WARNING",
        "logger": "barbeque.services.reconciler",
        "message": "Job exec-abc created",
        "namespace": "shop",
        "name": "exec-abc",
        "message_id": "msg-123",
    }


def test_an_exception_stays_inside_its_one_json_line(stream: io.StringIO) -> None:
    logs.configure("json", stream=stream)
    try:
        raise RuntimeError("boom\nsecond line")
    except RuntimeError:
        logging.getLogger("x").exception("failed")
    (line,) = lines(stream)
    entry = json.loads(line)
    assert "RuntimeError: boom" in entry["exception"]


def test_kopf_object_loggers_name_their_object(stream: io.StringIO) -> None:
    logs.configure("json", stream=stream)
    ref = {"namespace": "shop", "name": "SendMail"}
    logging.getLogger("kopf.objects").warning("Handler failed", extra={"k8s_ref": ref})
    entry = json.loads(lines(stream)[0])
    assert (entry["namespace"], entry["name"]) == ("shop", "SendMail")


def test_the_default_is_a_readable_line_naming_the_execution(stream: io.StringIO) -> None:
    logs.configure(stream=stream)
    with logs.context("shop", "exec-abc", "msg-123"):
        logging.getLogger("barbeque.x").info("Job created")
    (line,) = lines(stream)
    assert line.endswith(" INFO barbeque.x: Job created [shop/exec-abc message_id=msg-123]")
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_no_secret_value_reaches_a_log_line(stream: io.StringIO, log_format: str) -> None:
    logs.configure(log_format, secrets=[TOKEN, AWS_SECRET, None, ""], stream=stream)
    log = logging.getLogger("barbeque.test")
    log.info("token is %s", TOKEN)
    log.info("another Slack token xoxp-99999-88888-zzz leaked")
    log.info("headers: {'Authorization': 'Bearer abc.def.ghi'}")
    log.info("env AWS_SECRET_ACCESS_KEY=%s", AWS_SECRET)
    log.info("url https://s3/x?X-Amz-Signature=deadbeef&X-Amz-Date=1")
    try:
        raise ValueError(f"bad token {TOKEN}")
    except ValueError:
        log.exception("call failed")
    text = stream.getvalue()
    for secret in (TOKEN, "xoxp-99999", "abc.def.ghi", AWS_SECRET, "deadbeef"):
        assert secret not in text
    assert text.count(logs.REDACTED) >= 6
    assert "X-Amz-Date=1" in text  # what is not a secret stays


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="xml"):
        logs.configure("xml")
