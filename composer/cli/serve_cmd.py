"""Serving: `serve` (the page API), `vllm-serve` (a vLLM server for it), and the local vLLM
server that `composer serve --vllm` runs beside the page API for as long as the API runs."""

from __future__ import annotations

import ipaddress
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Annotated
from urllib.parse import urlparse

import typer

from composer.cli.common import settings
from composer.cli.output import console, err_console
from composer.errors import UsageError
from composer.settings import BackendName, Settings

app = typer.Typer()


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to bind (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    workers: Annotated[int, typer.Option(min=1, max=64, help="uvicorn worker processes.")] = 1,
    vllm: Annotated[
        bool,
        typer.Option(
            "--vllm", help="Start a local vLLM server, serve pages from it, stop it on exit."
        ),
    ] = False,
) -> None:
    """Serve the page API (Litestar under uvicorn)."""
    from composer.api.server import serve as run_server

    with local_vllm(settings()) if vllm else nullcontext(settings()) as s:
        console.print(f"serving on http://{host}:{port} (API schema: /schema, admin key)")
        run_server(
            s,
            host=host,
            port=port,
            workers=workers,
            # One line each, never wrapped: the key and the link are copied from here.
            announce=lambda line: console.print(line, soft_wrap=True, highlight=False),
        )


@app.command("vllm-serve")
def vllm_serve(
    port: Annotated[
        int | None,
        typer.Option(min=1, max=65535, help="Port on 127.0.0.1 (default: COMPOSER_VLLM_URL's)."),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(help="Packaged model name or a local model folder (default: the setting)."),
    ] = None,
    max_model_len: Annotated[
        int | None, typer.Option(min=256, help="Prompt + output tokens per request.")
    ] = None,
    kv_cache_gib: Annotated[
        int | None, typer.Option(min=1, help="KV cache in GiB (VLLM_CPU_KVCACHE_SPACE).")
    ] = None,
    prefix_caching: Annotated[
        bool, typer.Option(help="Reuse the KV cache of shared prompt prefixes.")
    ] = True,
) -> None:
    """Start vLLM's OpenAI-compatible server on loopback (structured outputs with xgrammar,
    prefix caching); wait until it is ready; Ctrl-C stops it cleanly."""
    from composer.llm.vllm_server import VLLMServer, VLLMServerError

    s = Settings()
    overrides = {
        k: v
        for k, v in {"max_model_len": max_model_len, "kv_cache_gib": kv_cache_gib}.items()
        if v is not None
    }
    if overrides:
        s = s.model_copy(update={"vllm": s.vllm.model_copy(update=overrides)})
    server = VLLMServer.from_settings(s, port=port, model=model, prefix_caching=prefix_caching)
    # SIGTERM and SIGHUP end it like Ctrl-C does (KeyboardInterrupt): the server goes too.
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    console.print(f"starting vLLM for {server.model_dir} on port {server.port} …")
    try:
        server.start(progress=lambda m: console.print(m))
        console.print(
            f"vLLM ready at {server.url} (model '{server.served_name}'). Use it with "
            f"COMPOSER_LLM_BACKEND=vllm COMPOSER_VLLM_URL={server.url}; Ctrl-C stops it."
        )
        while not stop.is_set() and server.running:
            stop.wait(1.0)
        if not stop.is_set():
            raise VLLMServerError(
                f"vLLM exited on its own (code {server.process.returncode}); "  # type: ignore[union-attr]
                f"see {server.log_file}"
            )
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    console.print("vLLM stopped")


@contextmanager
def local_vllm(settings: Settings) -> Iterator[Settings]:
    """A vLLM server on the port of ``COMPOSER_VLLM_URL`` while the block runs; yields the
    settings with the `vllm` backend. The server stops when the block ends, and — through
    the parent-death signal — when this process dies without ending it."""
    from composer.llm.vllm_server import VLLMServer

    host = urlparse(settings.vllm_url).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise UsageError(
            f"--vllm starts a server on this machine, but COMPOSER_VLLM_URL points at "
            f"{host!r}; drop --vllm to use that server with COMPOSER_LLM_BACKEND=vllm"
        )
    # The page API's workers run on the same cores: the engine leaves them one.
    server = VLLMServer.from_settings(settings, log_file=_log_file(settings), beside_api=True)
    err_console.print(
        f"starting vLLM on port {server.port} (log {server.log_file}); "
        "the first start takes a minute or two"
    )
    server.start()
    err_console.print(f"vLLM ready at {server.url}")
    # uvicorn re-raises the SIGTERM it handled once it has shut down; by default that ends
    # the process on the spot, before the server below could be stopped in order.
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        yield settings.model_copy(update={"llm_backend": BackendName.VLLM})
    finally:
        signal.signal(signal.SIGTERM, previous)
        err_console.print("stopping vLLM")
        server.stop()
        err_console.print("vLLM stopped")


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _log_file(settings: Settings) -> Path:
    return settings.artifacts_dir / "logs" / "vllm-serve.log"
