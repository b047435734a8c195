"""A PostgreSQL cluster of our own: Debian's server binaries, a data folder we choose (kept
between runs, or a temp folder thrown away), listening on a free loopback port.

PostgreSQL refuses to run as root; as root the cluster belongs to the ``postgres`` user the
Debian package creates.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg
from psycopg import sql

from composer.errors import ComposerError
from composer.llm.vllm_server import free_port
from composer.topology.process import last_line

USER = "composer"


class PostgresUnavailable(ComposerError):
    """No PostgreSQL server binaries, or the cluster would not start."""


def _bin_dir() -> Path:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    # By major version as a number: 9.6 is older than 15.
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
        key=lambda p: [int(x) for x in p.parent.parent.name.split(".") if x.isdigit()],
    )
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

    def _run(self, *argv: str, check: bool = True) -> int:
        cmd = list(argv)
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True)
        except FileNotFoundError as exc:
            raise PostgresUnavailable(f"cannot run {cmd[0]}: {exc.strerror}") from None
        if check and done.returncode != 0:
            raise PostgresUnavailable(
                f"{Path(argv[0]).name} failed: {last_line(done.stderr, done.stdout)} (server "
                f"log: {self.folder / 'server.log'})"
            )
        return done.returncode

    def start(self) -> str:
        """Start (initialising the cluster the first time); the admin URL."""
        data, sockets = self.folder / "data", self.folder / "sockets"
        sockets.mkdir(parents=True, exist_ok=True)
        if self._as_postgres:
            try:
                for path in (self.folder, sockets):
                    shutil.chown(path, "postgres")
            except LookupError:
                raise PostgresUnavailable(
                    "PostgreSQL does not run as root, and there is no `postgres` user to run "
                    "it as: install Debian's postgresql (`bash scripts/system_deps.sh`)"
                ) from None
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
        pg_ctl = str(self._bin / "pg_ctl")
        if self._run(pg_ctl, "-D", str(data), "status", check=False) == 0:
            # A server a killed run left behind holds the folder: stop it, then start ours.
            self._run(pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop")
        self.port = free_port()
        options = f"-p {self.port} -k {sockets} -c listen_addresses=127.0.0.1"
        if not self.durable:  # a test cluster is thrown away, and fsync costs seconds
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        log = self.folder / "server.log"
        try:
            self._run(pg_ctl, "-D", str(data), "-o", options, "-l", str(log), "-w", "start")
        except BaseException:
            # pg_ctl may have started a server before it failed or was interrupted.
            with contextlib.suppress(PostgresUnavailable):
                self.stop()
            raise
        return self.admin_url

    def stop(self) -> None:
        data = self.folder / "data"
        try:
            if (data / "postmaster.pid").exists():
                # A kept cluster shuts down cleanly; a throwaway one needs no checkpoint.
                mode = "immediate" if self.temporary else "fast"
                self._run(str(self._bin / "pg_ctl"), "-D", str(data), "-m", mode, "-w", "stop")
        finally:
            self.port = 0
            if self.temporary:
                shutil.rmtree(self.folder, ignore_errors=True)

    def database(self, name: str) -> str:
        """The URL of database ``name``, created when it does not exist yet."""
        dsn = self.admin_url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(dsn, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if exists.fetchone() is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.admin_url.rsplit("/", 1)[0] + f"/{name}"

    def __enter__(self) -> PostgresCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
