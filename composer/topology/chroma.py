"""A Chroma server of our own: `chroma run` from the chromadb package on a free loopback
port, persisting into a folder we choose (kept between runs) or a temp folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from composer.errors import ComposerError
from composer.llm.vllm_server import free_port
from composer.processes import spawn_server
from composer.topology.process import console_script

START_TIMEOUT_S = 60


class ChromaServerError(ComposerError):
    """`chroma run` exited or did not answer."""


class ChromaServer:
    """``folder`` None: a temp folder, deleted on :meth:`close`."""

    def __init__(self, folder: Path | None = None) -> None:
        self.temporary = folder is None
        self.folder = (folder or Path(tempfile.mkdtemp(prefix="composer-chroma-"))).resolve()
        self.port = 0
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.folder / "server.log"

    def start(self) -> str:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        chroma = console_script("chroma")
        self.process = spawn_server(
            [chroma, "run", "--path", str(self.folder / "data"), "--host", "127.0.0.1",
             "--port", str(self.port)],
            os.environ,
            self.log_path,
        )  # fmt: skip
        try:
            return self._wait_ready()
        except BaseException:
            self.stop(graceful=False)
            raise

    def _wait_ready(self) -> str:
        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ChromaServerError(f"chroma run exited: see {self.log_path}")
            try:
                if httpx.get(f"{self.url}/api/v2/heartbeat", timeout=1).status_code == 200:
                    return self.url
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise ChromaServerError(f"chroma run did not answer within {START_TIMEOUT_S} s")

    def stop(self, graceful: bool = True) -> None:
        """``graceful`` False kills it at once (a server that goes away)."""
        if self.process is not None and self.process.poll() is None:
            if graceful:
                self.process.terminate()
                try:
                    self.process.wait(timeout=10)
                    return
                except subprocess.TimeoutExpired:
                    pass
            self.process.kill()
            self.process.wait(timeout=10)

    def close(self) -> None:
        try:
            self.stop()
        finally:
            if self.temporary:
                shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> ChromaServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
