"""`composer serve` in a child process on a free loopback port, with an admin key of its
own: what the benchmarks load and what the local topology serves with."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

from composer.api.security.keys import new_key
from composer.errors import ComposerError
from composer.llm.vllm_server import free_port
from composer.processes import spawn_server
from composer.settings import Scope

READY_TIMEOUT_S = 180


class ApiServerError(ComposerError):
    """The API server process exited or never became ready."""


class ApiServer:
    """``env``: the server's whole environment (default: this process's); ``log``: where its
    output goes (default: nowhere); ``key_id``: the name of the admin key made for it."""

    def __init__(
        self,
        workers: int = 1,
        env: Mapping[str, str] | None = None,
        port: int | None = None,
        log: Path | None = None,
        key_id: str = "bench",
    ) -> None:
        self.key, config = new_key(key_id, (Scope.ADMIN,))
        self._env = {
            **(os.environ if env is None else env),
            "COMPOSER_API__KEYS": json.dumps([config.model_dump(mode="json")]),
        }
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        self.log = log
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> ApiServer:
        cmd = [sys.executable, "-m", "composer.api.server", "--port", str(self.port),
               "--workers", str(self.workers)]  # fmt: skip
        self.process = spawn_server(cmd, self._env, self.log)
        try:
            self._wait_ready()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _wait_ready(self) -> None:
        assert self.process is not None
        # Each worker loads its own models; a fresh connection reaches any of them, so ask
        # until every worker has said it is ready.
        ready: set[int] = set()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                auth = {"Authorization": f"Bearer {self.key}"}  # the pid is an admin detail
                r = httpx.get(f"{self.url}/readyz", headers=auth, timeout=2)
                if r.status_code == 200:
                    ready.add(r.json()["checks"]["pid"])
                    if len(ready) >= self.workers:
                        return
                    continue
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None:
                break
            time.sleep(0.5)
        where = f"see {self.log}" if self.log else "run `composer serve` to see why"
        raise ApiServerError(f"the API server did not become ready; {where}")

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
