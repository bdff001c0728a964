"""The console's speed promise: a list of 10,000 executions renders in at most 200 ms."""

from __future__ import annotations

import pytest

from barbeque_dashboard import bench

pytestmark = pytest.mark.unit


def test_an_execution_list_of_10000_executions_renders_within_200_ms() -> None:
    results = bench.run(count=10_000, repeat=5)
    assert results["execution list"]["warm_median"] <= 200.0
    # Even right after a watch event (indexes rebuilt), the list stays within budget.
    assert results["execution list"]["changed_median"] <= 200.0
    assert results["job definition (15/page)"]["warm_median"] <= 200.0
