"""The one ``wait_until`` of the tests and the benchmarks: poll until something is there."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def wait_until(
    what: str, predicate: Callable[[], T | None], timeout: float = 30.0, interval: float = 0.1
) -> T:
    """``predicate()``'s first truthy value; an AssertionError it raises counts as "not yet"
    and is shown if time runs out."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            value = predicate()
        except AssertionError as exc:
            value, last = None, exc
        else:
            last = value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})"
            )
        time.sleep(interval)
