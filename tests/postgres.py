"""A real PostgreSQL 15 server for the storage tests: started once per test session, a fresh database per test.

pytest-postgresql refuses to run as root, and initdb refuses root too: the server runs as the
`postgres` user (runuser), on a Unix socket only, without fsync (a test cluster, thrown away after).
Without PostgreSQL these tests are skipped with the reason, unless GEMMA_CHAT_REQUIRE_POSTGRES=1
(.ci/run sets it): then they fail, so that CI can never pass having tested SQLite alone.
bench/postgres.py starts one too, with fsync on, so that its commits cost what a real server's do.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

PG_BIN = Path(os.environ.get("GEMMA_CHAT_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
TEMPLATE = "gemma_template"
REQUIRE_ENV = "GEMMA_CHAT_REQUIRE_POSTGRES"


def postgres_available() -> bool:
    return (PG_BIN / "initdb").is_file() and (os.geteuid() != 0 or shutil.which("runuser") is not None)


def _as_postgres(args: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


class PostgresServer:
    def __init__(self, root: Path, *, fsync: bool = False, settings: dict[str, str] | None = None):
        self.root = root
        self.fsync = fsync
        self.settings = settings or {}  # more `-c name=value` server settings
        self.data = root / "data"
        self.socket_dir = root / "socket"
        self._names = itertools.count(1)

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
            shutil.chown(self.socket_dir, "postgres")
        subprocess.run(
            _as_postgres([str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                          "--no-sync", "-E", "UTF8", "--locale=C.UTF-8"]),
            check=True, capture_output=True,
        )
        self.resume()
        self.admin_sql(f"CREATE DATABASE {TEMPLATE}")

    def resume(self) -> None:
        """Start the server on its existing data: after stop(), the same databases come back."""
        # fsync on is PostgreSQL's default: left off the command line, where it would outrank ALTER SYSTEM.
        options = f"-c listen_addresses='' -k {self.socket_dir}{'' if self.fsync else ' -c fsync=off'} -c max_connections=200"
        options += "".join(f" -c {name}={value}" for name, value in self.settings.items())
        subprocess.run(
            _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-w", "-l", str(self.root / "server.log"),
                          "-o", options, "start"]),
            check=True, capture_output=True,
        )

    def stop_fast(self) -> None:
        """What an operator's restart does first: every session is ended, each transaction rolled back."""
        self._pg_ctl("-w", "-m", "fast", "stop")

    def restart(self) -> None:
        """`pg_ctl restart -m fast`: sessions ended, the server back with the same options."""
        self._pg_ctl("-w", "-m", "fast", "-l", str(self.root / "server.log"), "restart")

    def _pg_ctl(self, *args: str) -> None:
        subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data), *args]), check=True, capture_output=True)

    def stop(self) -> None:
        subprocess.run(
            _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"]),
            capture_output=True,
        )

    def url(self, database: str) -> str:
        return f"postgresql://postgres@/{database}?host={self.socket_dir}"

    def admin_sql(self, statement: str) -> None:
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as connection:
            connection.execute(statement)

    def fresh_database(self) -> str:
        """A new empty database (from the template: ≈30 ms) and its URL."""
        name = f"test_{os.getpid()}_{next(self._names)}"
        self.admin_sql(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
        return self.url(name)


@pytest.fixture(scope="session")
def postgres_server():
    if not postgres_available():
        reason = f"PostgreSQL 15 is not installed at {PG_BIN} (.ci/run installs it; Debian: apt install postgresql-15)"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    server = PostgresServer(Path(tempfile.mkdtemp(prefix="gemma-pg-")))
    server.start()
    yield server
    server.stop()
    shutil.rmtree(server.root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """A fresh, empty PostgreSQL database for this test."""
    return postgres_server.fresh_database()
