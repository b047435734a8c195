"""A Chroma server for the tests: `chroma run` from the chromadb package, on a free loopback
port, persisting into a temp folder; stopped (or killed, to play a server going away)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from composer.llm.vllm_server import free_port

START_TIMEOUT_S = 60


class ChromaServer:
    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="composer-chroma-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        chroma = Path(sys.executable).with_name("chroma")
        self.log = (self.folder / "server.log").open("w")
        self.process = subprocess.Popen(
            [str(chroma), "run", "--path", str(self.folder / "data"), "--host", "127.0.0.1",
             "--port", str(self.port)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"chroma run exited: see {self.folder / 'server.log'}")
            try:
                if httpx.get(f"{self.url}/api/v2/heartbeat", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"chroma run did not answer within {START_TIMEOUT_S} s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.log.close()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)
