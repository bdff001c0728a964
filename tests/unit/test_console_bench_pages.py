"""The console benchmark's pages (``bench.console_pages``) render from its cache.

Timing them is the benchmark's business (``python -m bench.console_pages``), not this
tier's: a wall-clock budget here would fail on a busy machine, not on slow code.
"""

from __future__ import annotations

import pytest
from bench import console_pages
from fastapi.testclient import TestClient

from barbeque_dashboard.services import Backend
from tests.support.fakes import FakeS3, FakeSqs
from tests.support.webapi import web_app

pytestmark = pytest.mark.unit


def test_every_page_the_benchmark_times_renders_from_its_cache() -> None:
    cache = console_pages.build_cache(600)
    app = web_app(
        Backend(cache, FakeSqs(), FakeS3(), None), public_reads=True, dashboard_refresh_seconds=0
    )
    with TestClient(app) as client:
        for path in console_pages.PAGES.values():
            assert client.get(path).status_code == 200, path
