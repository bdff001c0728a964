"""Logging of both processes: readable lines by default, one JSON object per line on request.

``configure`` installs one handler on the root logger, so every library's records (kopf,
uvicorn, botocore) come out in the same format. Each record carries the execution it
concerns where there is one: ``context(namespace=..., name=..., message_id=...)`` binds
them for the code running inside it (a reconcile, the recording of one message), and
kopf's own object loggers name theirs in ``k8s_ref``. On the record the execution's name is
the attribute ``execution`` (``name`` is the logger's); in JSON it is the key ``name``.

No secret reaches a log line: the values handed to ``configure`` (the Slack token, API
tokens, AWS keys) and anything shaped like a Slack token or a bearer credential are
replaced by ``[REDACTED]`` before formatting.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sys
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal

LogFormat = Literal["text", "json"]
FORMATS: tuple[LogFormat, ...] = ("text", "json")
# Record attribute -> JSON key.
CONTEXT_FIELDS = {"namespace": "namespace", "execution": "name", "message_id": "message_id"}
REDACTED = "[REDACTED]"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_context: ContextVar[dict[str, str]] = ContextVar("barbeque_log_context", default={})  # noqa: B039  (never mutated)

# Credentials recognisable by their shape, wherever they come from (a library's debug line,
# an exception text): Slack tokens, HTTP bearer/basic credentials, AWS request signatures.
_PATTERNS = (
    re.compile(r"xox[abposre]-[A-Za-z0-9-]+"),
    re.compile(r"(?i)(\b(?:bearer|basic)\s+)[A-Za-z0-9._~+/=-]+"),
    re.compile(r"(?i)((?:x-amz-signature|x-amz-security-token|signature)=)[^&\s\"']+"),
    re.compile(r"(?i)((?:aws_secret_access_key|aws_session_token)\s*[=:]\s*)\S+"),
)


@contextlib.contextmanager
def context(
    namespace: str | None = None, execution: str | None = None, message_id: str | None = None
) -> Iterator[None]:
    """Name the execution (or message) that the records logged inside concern."""
    fields = {"namespace": namespace, "execution": execution, "message_id": message_id}
    token = _context.set({**_context.get(), **{k: v for k, v in fields.items() if v}})
    try:
        yield
    finally:
        _context.reset(token)


class ContextFilter(logging.Filter):
    """Copies the bound execution fields onto each record (``extra=`` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        bound = _context.get()
        ref = getattr(record, "k8s_ref", None)
        if isinstance(ref, dict):
            bound = {"namespace": ref.get("namespace") or "", "execution": ref.get("name") or ""}
            bound = {**bound, **_context.get()}
        for field in CONTEXT_FIELDS:
            if getattr(record, field, None) is None and bound.get(field):
                setattr(record, field, bound[field])
        return True


class Redactor(logging.Filter):
    """Replaces secret values and secret-shaped strings in the message and the traceback."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        super().__init__()
        # Longest first, so a secret containing another is replaced whole; short values
        # ("", "x") would redact ordinary words and are not secrets anyone uses.
        self.secrets = sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        for pattern in _PATTERNS:
            text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + REDACTED, text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = self.redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the execution's fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field, key in CONTEXT_FIELDS.items():
            value = getattr(record, field, None)
            if value:
                entry[key] = str(value)
        if record.exc_text or record.exc_info:
            entry["exception"] = record.exc_text or self.formatException(record.exc_info)  # type: ignore[arg-type]
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """The readable line, with ``[namespace/name message_id]`` when a record has them."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        parts = []
        namespace, execution = (
            getattr(record, "namespace", None),
            getattr(record, "execution", None),
        )
        if namespace and execution:
            parts.append(f"{namespace}/{execution}")
        message_id = getattr(record, "message_id", None)
        if message_id:
            parts.append(f"message_id={message_id}")
        if not parts:
            return line
        first, newline, rest = line.partition("\n")
        return f"{first} [{' '.join(parts)}]{newline}{rest}"


def configure(
    log_format: str = "text",
    level: int = logging.INFO,
    secrets: Iterable[str | None] = (),
    stream: Any = None,
) -> logging.Handler:
    """Send every record to ``stream`` (stderr) in ``log_format``; returns the handler."""
    if log_format not in FORMATS:
        raise ValueError(f"log format {log_format!r} is not one of {', '.join(FORMATS)}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(ContextFilter())
    handler.addFilter(Redactor(secrets))
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # botocore and urllib3 are chatty at INFO about connection pools and credentials.
    for noisy in ("botocore", "urllib3", "kubernetes"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return handler
