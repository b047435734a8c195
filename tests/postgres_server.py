"""A throwaway PostgreSQL cluster for the tests: Debian's server binaries, a data folder in a
temp dir, listening on a free loopback port, stopped and deleted afterwards.

PostgreSQL refuses to run as root; as root (CI, this machine) the cluster belongs to the
``postgres`` user the Debian package creates.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg

from composer.llm.vllm_server import free_port

USER = "composer"


class PostgresUnavailable(RuntimeError):
    pass


def _bin_dir() -> Path:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if not versions:
        raise PostgresUnavailable(
            "no PostgreSQL server binaries (pg_ctl); `bash scripts/system_deps.sh` installs "
            "Debian's postgresql"
        )
    return versions[-1].parent


def _run(argv: list[str], as_postgres: bool) -> None:
    if as_postgres:
        argv = ["runuser", "-u", "postgres", "--", *argv]
    subprocess.run(argv, check=True, capture_output=True, text=True)


@contextlib.contextmanager
def postgres_cluster(durable: bool = False) -> Iterator[str]:
    """Yield the admin URL of a fresh cluster (``postgresql+psycopg://composer@…/postgres``).
    ``durable``: PostgreSQL's own fsync settings (for figures); else off (for tests)."""
    bin_dir = _bin_dir()
    as_postgres = os.geteuid() == 0
    root = Path(tempfile.mkdtemp(prefix="composer-pg-"))
    data, sockets = root / "data", root / "sockets"
    sockets.mkdir()
    if as_postgres:
        shutil.chown(root, "postgres")
        shutil.chown(sockets, "postgres")
    port = free_port()
    try:
        _run(
            [str(bin_dir / "initdb"), "-D", str(data), "-U", USER, "-A", "trust", "--no-sync"],
            as_postgres,
        )
        options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1"
        if not durable:  # a test cluster is thrown away, and fsync costs seconds
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        _run(
            [str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"),
             "-w", "start"],
            as_postgres,
        )  # fmt: skip
        try:
            yield f"postgresql+psycopg://{USER}@127.0.0.1:{port}/postgres"
        finally:
            _run([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], as_postgres)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def create_database(admin_url: str, name: str) -> str:
    """A new empty database on the cluster; its URL."""
    dsn = admin_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return admin_url.rsplit("/", 1)[0] + f"/{name}"
