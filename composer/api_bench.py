"""`composer bench api`: pages/s and latency of a running page API under concurrent load.

Only loopback addresses are accepted. Each request asks for a different shopper and seed,
so the page cache does not answer for the benchmark. The `rules` backend is the baseline in
the same run; the LLM figures add the fallback rate under load.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlparse

import aiohttp
import httpx
import numpy as np
import orjson

from composer.api.security.exposure import is_loopback
from composer.api.security.keys import Scope, new_key
from composer.errors import UsageError


def check_loopback(url: str) -> None:
    host = urlparse(url).hostname or ""
    if not is_loopback(host):
        raise UsageError(f"--url must point at this machine (loopback), got {host!r}")


async def _load(
    url: str, key: str, backend: str, concurrency: int, total: int, shoppers: Sequence[str]
) -> dict[str, Any]:
    # Callers give each run its own shoppers and a fresh seed range: no request repeats an
    # earlier one (rules pages ignore the seed), so none is answered by the page cache.
    seed_base = time.time_ns() % 1_000_000_000
    latencies: list[float] = []
    fallbacks = errors = 0
    counter = iter(range(total))
    endpoint = f"{url}/v1/pages"
    # The body chooses the backend: an admin key's privilege.
    headers = {"content-type": "application/json", "authorization": f"Bearer {key}"}

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal fallbacks, errors
        for i in counter:
            body = {
                "shopper_id": shoppers[i % len(shoppers)],
                "backend": backend,
                "seed": seed_base + i,
                "format": "html",
            }
            t = time.perf_counter()
            try:
                async with session.post(endpoint, data=orjson.dumps(body), headers=headers) as r:
                    status, raw = r.status, await r.read()
            except (aiohttp.ClientError, TimeoutError):
                errors += 1
                continue
            latencies.append((time.perf_counter() - t) * 1000)
            if status != 200:
                errors += 1
            elif orjson.loads(raw)["trace"]["fallback"]:
                fallbacks += 1

    # aiohttp, not httpx: httpx's async client spends ~2 ms of CPU per page request, aiohttp
    # ~0.3 ms, and on a 2-core machine the load generator's CPU is taken from the server.
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        t0, cpu0 = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {
        "requests": total,
        "pages_per_s": round(len(latencies) / elapsed, 2) if elapsed else 0.0,
        "p50_ms": round(float(np.percentile(latencies, 50)), 1) if latencies else 0.0,
        "p99_ms": round(float(np.percentile(latencies, 99)), 1) if latencies else 0.0,
        "fallback_rate": round(fallbacks / max(len(latencies), 1), 3),
        "errors": errors,
        # The load generator shares the machine's cores with the server: its own CPU time
        # per request says how much of them it took.
        "client_cpu_ms_per_request": round(1000 * cpu / total, 2),
    }


def run(
    url: str,
    key: str,
    llm_backend: str,
    rules_requests: int,
    llm_requests: int,
    shoppers: Sequence[str],
) -> dict[str, Any]:
    check_loopback(url)
    out: dict[str, Any] = {"rules": {}, "llm": {"backend": llm_backend}}
    plan = [("rules", "rules", c, rules_requests) for c in (1, 16)]
    if llm_requests:
        plan += [("llm", llm_backend, 1, llm_requests), ("llm", llm_backend, 16, 4 * llm_requests)]
    used = 0
    for group, backend, c, n in plan:
        own = [shoppers[(used + i) % len(shoppers)] for i in range(n)]
        used += n
        out[group][f"c{c}"] = asyncio.run(_load(url, key, backend, c, n, own))
    out["distinct_shoppers"] = min(used, len(shoppers))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalServer:
    """`composer serve` in a child process on a free loopback port, for the benchmark, with
    an admin key of its own (``key``)."""

    def __init__(self, workers: int = 1) -> None:
        self.key, config = new_key("bench", (Scope.ADMIN,))
        self._keys_env = json.dumps([config.model_dump(mode="json")])
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> LocalServer:
        cmd = [
            sys.executable,
            "-m",
            "composer.api.server",
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
        ]
        self.process = subprocess.Popen(
            cmd,
            env={**os.environ, "COMPOSER_API__KEYS": self._keys_env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        # Each worker loads its own models; a fresh connection reaches any of them, so ask
        # until every worker has said it is ready.
        ready: set[int] = set()
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                auth = {"Authorization": f"Bearer {self.key}"}  # the pid is an admin detail
                r = httpx.get(f"{self.url}/readyz", headers=auth, timeout=2)
                if r.status_code == 200:
                    ready.add(r.json()["checks"]["pid"])
                    if len(ready) >= self.workers:
                        return self
                    continue
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None:
                break
            time.sleep(0.5)
        self.__exit__()
        raise UsageError("the API server did not become ready; run `composer serve` to see why")

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
