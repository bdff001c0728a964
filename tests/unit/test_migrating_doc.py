"""docs/migrating.md says where every barbeque setting goes: each column of barbeque's
settings tables (the ones `barbeque import` reads; their schema.rb is
tests/data/barbeque/schema.sql) is named in the section of its table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from barbeque.adapters.mysql import TABLES as SETTINGS_TABLES

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
# Bookkeeping, and the link of a definition's own settings rows to it (they live on the
# JobDefinition itself here, so they need no column).
NOT_SETTINGS = {"id", "created_at", "updated_at", "job_definition_id@retry_configs",
                "job_definition_id@slack_notifications"}  # fmt: skip


def columns(table: str) -> list[str]:
    schema = (ROOT / "tests/data/barbeque/schema.sql").read_text()
    body = re.search(rf"CREATE TABLE barbeque_{table} \((.*?)\n\)", schema, re.S)
    assert body, f"barbeque_{table} is not in schema.sql"
    names = re.findall(r"^\s+([a-z_]+) [a-z]", body.group(1), re.M)
    return [n for n in names if n not in NOT_SETTINGS and f"{n}@{table}" not in NOT_SETTINGS]


def section(table: str) -> str:
    doc = (ROOT / "docs/migrating.md").read_text()
    found = re.search(rf"^## [^\n]*\(`barbeque_{table}`\)\n(.*?)(?=^## |\Z)", doc, re.S | re.M)
    assert found, f"docs/migrating.md has no section for barbeque_{table}"
    return found.group(1)


@pytest.mark.parametrize("table", SETTINGS_TABLES)
def test_every_column_of_barbeques_settings_has_its_place_here(table: str) -> None:
    text = section(table)
    missing = [c for c in columns(table) if not re.search(rf"\b{c}\b", text)]
    assert columns(table), table
    assert missing == [], f"barbeque_{table}: {missing} not in docs/migrating.md"
