"""Reads a cookpad/barbeque MySQL database for ``barbeque import``: the only PyMySQL user.

PyMySQL is the optional extra ``barbeque-k8s[import]``; nothing else of ours needs it, so
it is imported here only, when the command runs. The tables and columns are those of
barbeque's ``db/schema.rb``; rows come back as plain dicts, ordered by id.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

# What the import reads, table by table (barbeque's names without the prefix).
TABLES = (
    "apps",
    "job_definitions",
    "retry_configs",
    "slack_notifications",
    "job_queues",
    "sns_subscriptions",
)
PREFIX = "barbeque_"


class SourceError(Exception):
    """The barbeque database cannot be read: the message says why, in words."""


@dataclass(frozen=True)
class Dsn:
    """Where the database is: ``mysql://user:password@host:port/database``."""

    host: str
    port: int
    user: str
    password: str
    database: str

    @classmethod
    def parse(cls, url: str) -> Dsn:
        parts = urlsplit(url)
        if parts.scheme not in ("mysql", "mariadb", "mysql+pymysql"):
            raise SourceError(
                f"the database URL must look like mysql://user:password@host:3306/barbeque, "
                f"not {parts.scheme or 'a scheme-less'!s} URL"
            )
        database = parts.path.lstrip("/")
        if not database or not parts.hostname:
            raise SourceError("the database URL must name a host and a database: mysql://…/db")
        try:
            port = parts.port or 3306
        except ValueError as exc:
            raise SourceError(f"the database URL has a bad port: {exc}") from None
        return cls(
            host=parts.hostname,
            port=port,
            user=unquote(parts.username or "root"),
            password=unquote(parts.password or ""),
            database=unquote(database),
        )


def read_tables(dsn: Dsn, timeout: float = 10.0) -> dict[str, list[dict[str, Any]]]:
    """Every row of the tables the import needs, keyed by table name (without prefix)."""
    try:
        import pymysql
        import pymysql.cursors
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise SourceError(
            "barbeque import needs PyMySQL: pip install 'barbeque-k8s[import]'"
        ) from exc
    try:
        connection = pymysql.connect(
            **dataclasses.asdict(dsn),  # its fields are named as connect's arguments
            charset="utf8mb4",
            connect_timeout=timeout,
            read_timeout=timeout * 6,
            cursorclass=pymysql.cursors.DictCursor,
        )
    except pymysql.Error as exc:
        raise SourceError(
            f"cannot connect to {dsn.user}@{dsn.host}:{dsn.port}/{dsn.database}: {exc}"
        ) from exc
    tables: dict[str, list[dict[str, Any]]] = {}
    try:
        with connection.cursor() as cursor:
            for table in TABLES:
                try:
                    # The names are ours (TABLES), never input: nothing to inject.
                    cursor.execute(f"SELECT * FROM `{PREFIX}{table}` ORDER BY id")
                except pymysql.Error as exc:
                    raise SourceError(f"cannot read table {PREFIX}{table}: {exc}") from exc
                tables[table] = list(cursor.fetchall())
    finally:
        connection.close()
    return tables
