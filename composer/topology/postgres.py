"""A PostgreSQL cluster of our own: Debian's server binaries, a data folder we choose (kept
between runs, or a temp folder thrown away), listening on a free loopback port.

PostgreSQL refuses to run as root; as root the cluster belongs to the ``postgres`` user the
Debian package creates.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg

from composer.errors import ComposerError
from composer.llm.vllm_server import free_port

USER = "composer"


class PostgresUnavailable(ComposerError):
    """No PostgreSQL server binaries, or the cluster would not start."""


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


class PostgresCluster:
    """``folder`` None: a temp folder, deleted on stop. ``durable``: PostgreSQL's own fsync
    settings (a kept cluster, figures); else off (a throwaway test cluster)."""

    def __init__(self, folder: Path | None = None, durable: bool = True) -> None:
        self.temporary = folder is None
        # Absolute: the server runs in its data folder, and the socket path is passed to it.
        self.folder = (folder or Path(tempfile.mkdtemp(prefix="composer-pg-"))).resolve()
        self.durable = durable
        self.port = 0
        self._bin = _bin_dir()
        self._as_postgres = os.geteuid() == 0

    @property
    def admin_url(self) -> str:
        return f"postgresql+psycopg://{USER}@127.0.0.1:{self.port}/postgres"

    def _run(self, *argv: str) -> None:
        cmd = list(argv)
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            last = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:]
            raise PostgresUnavailable(
                f"{Path(argv[0]).name} failed: {' '.join(last)} (server log: "
                f"{self.folder / 'server.log'})"
            )

    def start(self) -> str:
        """Start (initialising the cluster the first time); the admin URL."""
        data, sockets = self.folder / "data", self.folder / "sockets"
        sockets.mkdir(parents=True, exist_ok=True)
        if self._as_postgres:
            for path in (self.folder, sockets):
                shutil.chown(path, "postgres")
            reach = subprocess.run(["runuser", "-u", "postgres", "--", "test", "-x", str(sockets)])
            if reach.returncode != 0:
                raise PostgresUnavailable(
                    f"the postgres user cannot reach {self.folder} (a folder above it is "
                    "private to root); put the cluster in a folder every user may traverse"
                )
        if not (data / "PG_VERSION").is_file():
            self._run(
                str(self._bin / "initdb"), "-D", str(data), "-U", USER, "-A", "trust",
                "--no-sync",
            )  # fmt: skip
        self.port = free_port()
        options = f"-p {self.port} -k {sockets} -c listen_addresses=127.0.0.1"
        if not self.durable:  # a test cluster is thrown away, and fsync costs seconds
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        log = self.folder / "server.log"
        self._run(
            str(self._bin / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w",
            "start",
        )  # fmt: skip
        return self.admin_url

    def stop(self) -> None:
        data = self.folder / "data"
        if self.port and (data / "postmaster.pid").exists():
            # A kept cluster shuts down cleanly; a throwaway one needs no checkpoint.
            mode = "immediate" if self.temporary else "fast"
            self._run(str(self._bin / "pg_ctl"), "-D", str(data), "-m", mode, "stop")
        self.port = 0
        if self.temporary:
            shutil.rmtree(self.folder, ignore_errors=True)

    def database(self, name: str) -> str:
        """The URL of database ``name``, created when it does not exist yet."""
        dsn = self.admin_url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(dsn, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if exists.fetchone() is None:
                conn.execute(f'CREATE DATABASE "{name}"')
        return self.admin_url.rsplit("/", 1)[0] + f"/{name}"

    def __enter__(self) -> PostgresCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
