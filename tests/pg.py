"""A real, throwaway PostgreSQL cluster for tests: ``initdb`` into a fresh folder under /tmp,
``pg_ctl start`` on a random loopback port, one database, torn down (stopped and deleted) after.

PostgreSQL refuses to run as root: as root the cluster belongs to the ``postgres`` user (Debian's
package creates it) and every server command runs through ``runuser -u postgres --``; as any
other user it runs as that user. Only loopback TCP and a socket inside the cluster's own folder
are used, so it never touches the machine's own cluster (if any)."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sysdeps import missing_system_dep, need_postgres_bindir, need_program


@dataclass(frozen=True)
class PgCluster:
    host: str
    port: int
    user: str
    database: str
    folder: Path

    @property
    def url(self) -> str:
        """An SQLAlchemy URL (psycopg 3 driver)."""
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{self.database}"

    @property
    def dsn(self) -> str:
        """A libpq connection string, for psycopg directly."""
        return f"host={self.host} port={self.port} user={self.user} dbname={self.database}"

    def new_database(self, name: str) -> str:
        """Create the empty database ``name`` (letters, digits, _) in this cluster; its SQLAlchemy URL."""
        if not name.replace("_", "").isalnum():
            raise ValueError(f"database name {name!r}: letters, digits and _ only")
        _create_database(self.host, self.port, self.user, name)
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{name}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _runner() -> tuple[list[str], str]:
    """The command prefix that runs a server program, and the database superuser's name."""
    if os.geteuid() != 0:
        return [], pwd.getpwuid(os.geteuid()).pw_name
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        missing_system_dep("the `postgres` user (created by Debian's postgresql package)", "postgresql")
    return [need_program("runuser", "util-linux"), "-u", "postgres", "--"], "postgres"


def _run(cmd: list[str], what: str, timeout: float = 120) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}")


def _create_database(host: str, port: int, user: str, name: str) -> None:
    import psycopg

    with psycopg.connect(f"host={host} port={port} user={user} dbname=postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')


@contextlib.contextmanager
def postgres_cluster(database: str = "curate") -> Iterator[PgCluster]:
    bindir = need_postgres_bindir()
    prefix, superuser = _runner()
    folder = Path(tempfile.mkdtemp(prefix="curate-pg-", dir="/tmp"))
    data = folder / "data"
    if prefix:
        pw = pwd.getpwnam("postgres")
        os.chown(folder, pw.pw_uid, pw.pw_gid)
    started = False
    try:
        # --no-sync: the cluster is thrown away; the server itself keeps its default fsync settings
        _run([*prefix, str(bindir / "initdb"), "-D", str(data), "-U", superuser, "-A", "trust",
              "-E", "UTF8", "--locale=C", "--no-sync"], "initdb")
        for attempt in range(3):  # a port picked free can be taken before the server binds it
            port = _free_port()
            opts = f"-h 127.0.0.1 -p {port} -k {folder}"
            proc = subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(folder / "server.log"),
                                   "-o", opts, "-w", "-t", "60", "start"], capture_output=True, text=True, timeout=90)
            if proc.returncode == 0:
                started = True
                break
            log = (folder / "server.log").read_text(errors="replace") if (folder / "server.log").exists() else ""
            if "could not bind" not in log or attempt == 2:
                raise RuntimeError(f"pg_ctl start failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}\n{log}")
        _create_database("127.0.0.1", port, superuser, database)
        yield PgCluster("127.0.0.1", port, superuser, database, folder)
    finally:
        if started:
            subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                           capture_output=True, timeout=60)
        shutil.rmtree(folder, ignore_errors=True)


# ---- pytest fixtures (a test module imports them by name) --------------------------------------

@pytest.fixture(scope="module")
def pg() -> Iterator[PgCluster]:
    """One throwaway cluster for the module's tests."""
    with postgres_cluster() as cluster:
        yield cluster


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database of each kind: a SQLite file, or a new database in the cluster."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'annotations.db'}"
    cluster: PgCluster = request.getfixturevalue("pg")
    return cluster.new_database("t_" + uuid.uuid4().hex[:12])
