"""A real MariaDB server (Debian's mariadb-server) for ``barbeque import``'s tests.

Each ``MariaDB`` gets a fresh data directory (``mariadb-install-db``), listens on a free
loopback port and on a socket in that directory, and is stopped by its pid. The schema
is barbeque's ``db/schema.rb`` as DDL (tests/data/barbeque/schema.sql); the importer logs
in over TCP as a user with a password, as it would in production.
"""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pymysql
import pytest

from tests.cluster.processes import free_port, set_pdeathsig, tail, terminate
from tests.support.samples import DATA
from tests.support.waiting import wait_until

MARIADBD = Path("/usr/sbin/mariadbd")
USER, PASSWORD, DATABASE = "barbeque", "s3cret/pw", "barbeque"


@dataclass
class MariaDB:
    process: subprocess.Popen[bytes]
    datadir: Path
    port: int

    @property
    def socket(self) -> str:
        return str(self.datadir / "mysqld.sock")

    @property
    def url(self) -> str:
        # The password's "/" is written %2F, as in any URL.
        return f"mysql://{USER}:s3cret%2Fpw@127.0.0.1:{self.port}/{DATABASE}"

    def root(self) -> pymysql.connections.Connection:  # type: ignore[type-arg]
        return pymysql.connect(unix_socket=self.socket, user="root", autocommit=True)

    def run_sql(self, text: str) -> None:
        """Run ``;``-separated statements in the barbeque database, as root."""
        connection = self.root()
        try:
            with connection.cursor() as cursor:
                cursor.execute(f"USE {DATABASE}")
                for statement in text.split(";\n"):
                    lines = [ln for ln in statement.splitlines() if not ln.startswith("--")]
                    if "".join(lines).strip():
                        cursor.execute("\n".join(lines))
        finally:
            connection.close()

    def load(self, name: str, **values: str) -> None:
        """A file of tests/data/barbeque/ with its @NAME@ placeholders filled in."""
        text = (DATA / "barbeque" / name).read_text()
        for key, value in values.items():
            text = text.replace(f"@{key}@", value)
        self.run_sql(text)

    def stop(self) -> None:
        terminate(self.process, grace=30)


def start(workdir: Path) -> MariaDB:
    datadir = workdir / "data"
    log = workdir / "mariadb.log"
    subprocess.run(
        [
            "mariadb-install-db",
            "--no-defaults",
            f"--datadir={datadir}",
            f"--user={getpass.getuser()}",
            # root logs in through the socket as whoever runs the tests (no password).
            "--auth-root-authentication-method=socket",
            f"--auth-root-socket-user={getpass.getuser()}",
            "--skip-test-db",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                str(MARIADBD),
                "--no-defaults",
                f"--datadir={datadir}",
                f"--socket={datadir / 'mysqld.sock'}",
                f"--port={port}",
                "--bind-address=127.0.0.1",
                f"--user={getpass.getuser()}",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=16M",
                f"--log-error={log}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=set_pdeathsig,
        )
    server = MariaDB(process, datadir, port)

    def up() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"mariadbd exited {process.returncode}:\n{tail(log)}")
        # The socket file appears once the server accepts connections (a failed PyMySQL
        # connect would leave its socket open, an error under warnings-as-errors).
        if not Path(server.socket).exists():
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2):
                return True
        except OSError:
            return False

    wait_until("mariadbd to accept connections", up, timeout=60)
    connection = server.root()
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {DATABASE} CHARACTER SET utf8mb4")
            cursor.execute(f"CREATE USER '{USER}'@'127.0.0.1' IDENTIFIED BY %s", (PASSWORD,))
            cursor.execute(f"GRANT SELECT ON {DATABASE}.* TO '{USER}'@'127.0.0.1'")
    finally:
        connection.close()
    server.load("schema.sql")
    return server


@pytest.fixture(scope="module")
def mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDB]:
    """A MariaDB server with barbeque's schema and no rows, for one test module."""
    if not MARIADBD.exists() or shutil.which("mariadb-install-db") is None:
        pytest.skip("Debian's mariadb-server is not installed (scripts/bootstrap installs it)")
    server = start(tmp_path_factory.mktemp("mariadb"))
    try:
        yield server
    finally:
        server.stop()
