"""Real services for tests, started from Debian's packages on loopback: a PostgreSQL
server (`postgresql`: initdb + pg_ctl in a temporary data directory, a free port).

Nothing is mocked and nothing is skipped: a missing binary is a failure that says what to
install (`.ci/run` installs it). initdb refuses to run as root, so as root the server runs
as the `postgres` user the package creates, in a directory it owns.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

POSTGRES_ROOT = Path("/usr/lib/postgresql")


def postgres_bin() -> Path:
    """The bin folder of the newest PostgreSQL server installed by Debian's packages."""
    found = sorted(
        POSTGRES_ROOT.glob("*/bin/initdb"),
        key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0,
    )
    if not found:
        raise RuntimeError(
            f"no PostgreSQL server under {POSTGRES_ROOT}/*/bin: "
            "apt-get install -y postgresql (.ci/run installs it)"
        )
    return found[-1].parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Postgres:
    """A running server: `url(database)` for a client, `create_database(name)`."""

    def __init__(self, bin_dir: Path, port: int, user: str, password: str) -> None:
        self.bin_dir, self.port, self.user, self.password = bin_dir, port, user, password

    def url(self, database: str = "postgres", driver: str = "") -> str:
        """libpq's URL of a database; with `driver`, SQLAlchemy's (postgresql+psycopg2)."""
        scheme = f"postgresql+{driver}" if driver else "postgresql"
        return f"{scheme}://{self.user}:{self.password}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new, empty database; its URL for dagster-postgres (SQLAlchemy, psycopg2)."""
        command = [str(self.bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port)]
        subprocess.run(
            [*command, "-U", self.user, name],
            env={**os.environ, "PGPASSWORD": self.password},
            check=True,
            capture_output=True,
            text=True,
        )
        return self.url(name, driver="psycopg2")

    def query(self, database: str, sql: str) -> list[tuple[Any, ...]]:
        """Rows of one statement, through psycopg2 (what dagster-postgres uses)."""
        import psycopg2

        connection = psycopg2.connect(self.url(database))
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql)
                return list(cursor.fetchall())
        finally:
            connection.close()


@contextmanager
def postgres_server() -> Iterator[Postgres]:
    """A PostgreSQL server on 127.0.0.1 with password authentication (scram-sha-256),
    stopped and its data directory removed at exit."""
    bin_dir = postgres_bin()
    as_root = os.geteuid() == 0
    run_as: dict[str, Any] = {"user": "postgres", "group": "postgres"} if as_root else {}
    # Not under pytest's tmp_path: its parents are private to root, so `postgres` could
    # not reach the data directory.
    base = Path(tempfile.mkdtemp(prefix="openledger-pg-"))
    password = secrets.token_hex(12)
    (base / "pwfile").write_text(password + "\n")
    if as_root:
        shutil.chown(base, "postgres", "postgres")
        shutil.chown(base / "pwfile", "postgres", "postgres")

    def run(*command: str) -> None:
        done = subprocess.run(
            command, cwd=base, capture_output=True, text=True, timeout=120, **run_as
        )
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} exited {done.returncode}:\n{done.stderr}")

    data, log = base / "data", base / "server.log"
    user = "openledger"
    run(
        str(bin_dir / "initdb"), "-D", str(data), "-U", user, "--auth=scram-sha-256",
        f"--pwfile={base / 'pwfile'}", "--encoding=UTF8", "--no-instructions",
    )  # fmt: skip
    port, failures = 0, []
    try:
        for _attempt in range(3):  # a port found free may be taken before the server binds
            port = free_port()
            options = f"-p {port} -c listen_addresses=127.0.0.1 -k {base} -c fsync=off"
            try:
                run(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options,
                    "-w", "-t", "60", "start")  # fmt: skip
                break
            except RuntimeError as error:
                failures.append(f"{error}\n{log.read_text() if log.exists() else ''}")
        else:
            raise RuntimeError("PostgreSQL did not start:\n" + "\n".join(failures))
        yield Postgres(bin_dir, port, user, password)
    finally:
        subprocess.run(
            [str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
            cwd=base, capture_output=True, timeout=120, **run_as,
        )  # fmt: skip
        shutil.rmtree(base, ignore_errors=True)
