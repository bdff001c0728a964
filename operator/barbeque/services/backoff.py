"""Retry delays, as cookpad/barbeque's RetryConfig computed them (without its 900 s trap)."""

from __future__ import annotations

import random
from collections.abc import Callable

from barbeque.api.models import RetryPolicy


def retry_delay(
    policy: RetryPolicy, retries_so_far: int, rand: Callable[[], float] = random.random
) -> float:
    """Seconds to wait before retry number ``retries_so_far + 1``.

    delay = min(2^n * base, max); with jitter, uniform in [0, delay] ("full jitter"),
    which spreads a burst of failures instead of retrying them in lockstep.
    """
    exponent = min(retries_so_far, 62)
    delay: float = float(2**exponent) * policy.base_delay_seconds
    if policy.max_delay_seconds is not None:
        delay = min(delay, policy.max_delay_seconds)
    if policy.jitter:
        delay = rand() * delay
    return delay
