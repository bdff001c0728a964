"""The rules every watch-fed view of the cluster follows, whatever it keeps.

Objects are keyed by (namespace, name) and only ever replaced by a newer
resourceVersion, so an old watch event cannot undo the answer of a fresh write. The
operator's and the console's views (``services.store.Store`` and the console's cache)
both build on these.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

Key = tuple[str, str]  # (namespace, name)


def newer(old: str | None, new: str | None) -> bool:
    """Whether resourceVersion ``new`` is not older than ``old``.

    resourceVersions are opaque by contract but are etcd revisions in practice; when they
    do not parse, the newest event wins.
    """
    if not old or not new:
        return True
    try:
        return int(new) >= int(old)
    except ValueError:
        return True


def key_of(body: dict[str, Any]) -> Key:
    meta = body.get("metadata") or {}
    return (meta.get("namespace") or "", meta.get("name") or "")


def parse_time(value: Any) -> datetime | None:
    """A Kubernetes timestamp (RFC 3339, maybe with Z) as an aware datetime."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    return None
