"""The Web API and console unit tests' app: ``world`` (a module may give its own) and a
``client`` of it, started and stopped around each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.support.webapi import WebWorld


@pytest.fixture
def world() -> WebWorld:
    return WebWorld()


@pytest.fixture
def client(world: WebWorld) -> Iterator[TestClient]:
    with TestClient(world.app) as test_client:
        yield test_client
