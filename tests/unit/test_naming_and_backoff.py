"""Deterministic names and barbeque's retry delays."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from barbeque.api.models import RetryPolicy
from barbeque.services.backoff import retry_delay
from barbeque.services.naming import execution_name, label_value
from barbeque.services.reconciler import child_retry_name
from tests.unit.test_builders import execution

pytestmark = pytest.mark.unit

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


def test_an_sqs_uuid_is_used_verbatim() -> None:
    assert (
        execution_name("4f1c9f0e-2b1d-4c53-9b7e-1a2b3c4d5e6f")
        == "4f1c9f0e-2b1d-4c53-9b7e-1a2b3c4d5e6f"
    )


def test_odd_ids_hash_to_a_valid_stable_name() -> None:
    name = execution_name("ABC/def")
    assert name == execution_name("ABC/def")
    assert name != execution_name("abc/def")
    assert name.startswith("m-")


@given(st.text(min_size=1, max_size=200))
def test_every_message_id_gives_a_dns_label_short_enough_for_retries(message_id: str) -> None:
    import re

    name = execution_name(message_id)
    assert re.match(DNS_LABEL, name)
    assert len(name + "-retry-100") <= 63


@given(st.text(max_size=100))
def test_label_values_are_always_valid(value: str) -> None:
    import re

    label = label_value(value)
    assert len(label) <= 63
    assert re.match(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$", label)


def test_retry_names_chain_from_the_root() -> None:
    first = execution()
    assert child_retry_name(first) == "0b1c-retry-1"
    second = execution(attempt=1)
    second.metadata.name = "0b1c-retry-1"
    assert child_retry_name(second) == "0b1c-retry-2"


def test_backoff_doubles_from_the_base_without_jitter() -> None:
    policy = RetryPolicy(base_delay_seconds=15, jitter=False)
    assert [retry_delay(policy, n) for n in range(4)] == [15, 30, 60, 120]


def test_backoff_is_capped_by_max_delay() -> None:
    policy = RetryPolicy(base_delay_seconds=15, max_delay_seconds=40, jitter=False)
    assert [retry_delay(policy, n) for n in range(4)] == [15, 30, 40, 40]


def test_backoff_has_no_900_second_ceiling() -> None:
    policy = RetryPolicy(base_delay_seconds=600, jitter=False)
    assert retry_delay(policy, 2) == 2400


def test_full_jitter_draws_from_zero_to_the_delay() -> None:
    policy = RetryPolicy(base_delay_seconds=10)
    assert retry_delay(policy, 1, rand=lambda: 0.0) == 0
    assert retry_delay(policy, 1, rand=lambda: 0.5) == 10
    assert retry_delay(policy, 1, rand=lambda: 0.999) == pytest.approx(19.98)


def test_defaults_are_barbeques() -> None:
    policy = RetryPolicy()
    assert (policy.limit, policy.base_delay_seconds, policy.max_delay_seconds, policy.jitter) == (
        3,
        15.0,
        None,
        True,
    )
