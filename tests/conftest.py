"""Fixtures shared by every tier; each tier starts only the servers its tests ask for."""

from __future__ import annotations

from tests.cluster.fixture import cluster
from tests.support.aws import aws
from tests.support.operator import app, crds, operator
from tests.support.slack import slack

__all__ = ["app", "aws", "cluster", "crds", "operator", "slack"]
