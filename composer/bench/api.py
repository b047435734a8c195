"""`composer bench api`: pages/s and latency of a running page API under concurrent load.

Only loopback addresses are accepted. Each request asks for a different shopper and seed,
so the page cache does not answer for the benchmark; every response's `cache` field is
counted, and a run in which any page came from the cache fails. The `rules` backend is the
baseline in the same run; the LLM figures add the fallback rate under load. Latency figures
are over 200 answers only (others are counted apart), and a percentile is given only when
enough answers back it (p99 from 100, p90 from 10).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import closing
from typing import Any
from urllib.parse import urlparse

import aiohttp
import numpy as np
import orjson

from composer.api.security.exposure import is_loopback
from composer.errors import ComposerError, UsageError
from composer.provision import open_store
from composer.settings import BackendName, Settings
from composer.topology.process import console_script, last_line

# Fewer samples than this and the percentile is the largest sample or close to it: not shown.
MIN_SAMPLES = {50: 2, 90: 10, 99: 100}


class CacheAnswered(ComposerError):
    """A benchmarked page came from the page cache: the figures would not be page work."""


def percentile(values: Sequence[float], q: int) -> float | None:
    """The ``q``-th percentile, or None when too few values back it (see MIN_SAMPLES)."""
    if len(values) < MIN_SAMPLES[q]:
        return None
    return round(float(np.percentile(values, q)), 1)


def shoppers_with_events(settings: Settings) -> list[str]:
    """Every shopper of the store who has an event: whom the benchmark asks pages for."""
    with closing(open_store(settings)) as store:
        return sorted({e.shopper_id for e in store.all_events()})


def check_loopback(url: str) -> None:
    host = urlparse(url).hostname or ""
    if not is_loopback(host):
        raise UsageError(f"--url must point at this machine (loopback), got {host!r}")


async def _load(
    url: str,
    key: str,
    backend: BackendName,
    concurrency: int,
    total: int | Iterator[int],
    shoppers: Sequence[str],
    seed_base: int,
    on_page: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """``total``: how many requests, or request numbers to send until the iterator ends;
    ``on_page`` sees every 200 answer."""
    # Callers give each run its own shoppers and a fresh seed range: no request repeats an
    # earlier one (the seed is part of the page cache's key), so none is answered from it.
    latencies: list[float] = []  # of 200 answers
    fallbacks = errors = non_200 = cache_hits = sent = 0
    counter = iter(range(total)) if isinstance(total, int) else total
    endpoint = f"{url}/v1/pages"
    # The body chooses the backend: an admin key's privilege.
    headers = {"content-type": "application/json", "authorization": f"Bearer {key}"}

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal fallbacks, errors, non_200, cache_hits, sent
        for i in counter:
            sent += 1
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
            elapsed_ms = (time.perf_counter() - t) * 1000
            if status != 200:
                non_200 += 1
                continue
            latencies.append(elapsed_ms)
            page = orjson.loads(raw)
            cache_hits += page.get("cache") == "hit"
            fallbacks += bool(page["trace"]["fallback"])
            if on_page is not None:
                on_page(page)

    # aiohttp, not httpx: httpx's async client spends ~2 ms of CPU per page request, aiohttp
    # ~0.3 ms, and on a 2-core machine the load generator's CPU is taken from the server.
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        t0, cpu0 = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {
        "requests": sent,
        "answered_200": len(latencies),
        "pages_per_s": round(len(latencies) / elapsed, 2) if elapsed else 0.0,
        "p50_ms": percentile(latencies, 50),
        "p90_ms": percentile(latencies, 90),
        "p99_ms": percentile(latencies, 99),
        "fallback_rate": round(fallbacks / max(len(latencies), 1), 3),
        "cache_hits": cache_hits,
        "non_200": non_200,
        "errors": errors,  # no answer at all (connection refused, reset, timed out)
        # The load generator shares the machine's cores with the server: its own CPU time
        # per request says how much of them it took.
        "client_cpu_ms_per_request": round(1000 * cpu / max(sent, 1), 2),
    }


def run(
    url: str,
    key: str,
    llm_backend: BackendName,
    rules_requests: int,
    llm_requests: int,
    shoppers: Sequence[str],
    seed_base: int | None = None,
) -> dict[str, Any]:
    """``seed_base``: the first request's seed (default: from the clock, so that no run
    repeats another's requests)."""
    check_loopback(url)
    base = time.time_ns() % 1_000_000_000 if seed_base is None else seed_base
    out: dict[str, Any] = {"rules": {}, "llm": {"backend": llm_backend}}
    plan = [("rules", BackendName.RULES, c, rules_requests) for c in (1, 16)]
    if llm_requests:
        plan += [("llm", llm_backend, 1, llm_requests), ("llm", llm_backend, 16, 4 * llm_requests)]
    used = 0
    for group, backend, c, n in plan:
        own = [shoppers[(used + i) % len(shoppers)] for i in range(n)]
        used += n
        out[group][f"c{c}"] = asyncio.run(_load(url, key, backend, c, n, own, base + used))
    out["distinct_shoppers"] = min(used, len(shoppers))
    hits = {f"{g}/{c}": r["cache_hits"] for g in ("rules", "llm") for c, r in _runs(out[g])}
    if any(hits.values()):
        where = ", ".join(f"{k}: {v}" for k, v in hits.items() if v)
        raise CacheAnswered(
            f"pages came from the page cache ({where}); the server's cache already held "
            "these shoppers' pages: restart it or give the benchmark more shoppers"
        )
    return out


# The swap run ends once this many pages in a row named the new version (every worker
# process has then had several poll intervals to swap), or SWAP_SETTLE_MAX_S after the new
# version was served whatever happened; training itself may take up to SWAP_TRAIN_MAX_S.
SWAP_SETTLE_PAGES = 300
SWAP_SETTLE_MAX_S = 120.0
SWAP_TRAIN_MAX_S = 1800.0


class SwapRunError(ComposerError):
    """The training of the swap run failed or did not finish."""


def train_in_subprocess(env: Mapping[str, str] | None = None) -> tuple[str, float]:
    """`composer train` with ``env`` (default: this process's settings, which must be the
    benchmarked server's): the new version's name and when it became the served one."""
    cmd = [console_script("composer"), "train", "--json"]
    done = subprocess.run(
        cmd, capture_output=True, text=True, env=dict(os.environ if env is None else env)
    )
    if done.returncode != 0:
        raise SwapRunError(
            f"`composer train` failed during the swap run: {last_line(done.stderr, done.stdout)}"
        )
    try:
        report = json.loads(done.stdout)
        return str(report["model_version"]), float(report["served_since"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        raise SwapRunError(
            "`composer train --json` did not report model_version and served_since (output: "
            f"{last_line(done.stdout)!r}); is the installed composer this version?"
        ) from None


def run_swap(
    url: str,
    key: str,
    shoppers: Sequence[str],
    train: Callable[[], tuple[str, float]] = train_in_subprocess,
    concurrency: int = 16,
    seed_base: int | None = None,
    settle_pages: int = SWAP_SETTLE_PAGES,
) -> dict[str, Any]:
    """Rules pages at ``concurrency`` without pause while ``train`` writes and activates a new
    model version: failed requests, and which version each answer's trace names."""
    check_loopback(url)
    base = time.time_ns() % 1_000_000_000 + 500_000_000 if seed_base is None else seed_base
    answers: list[tuple[float, str]] = []  # (Unix time answered, model version), in order
    trained: dict[str, Any] = {}
    finished = threading.Event()
    in_a_row = 0  # answers naming the new version since the last that did not
    t0 = time.perf_counter()

    def training() -> None:
        t = time.perf_counter()
        try:
            trained["version"], trained["served_since"] = train()
        except ComposerError as exc:  # reported, and the load stops: nothing to wait for
            trained["error"] = exc
            finished.set()
        trained["seconds"] = round(time.perf_counter() - t, 2)

    def on_page(page: dict[str, Any]) -> None:
        nonlocal in_a_row
        version = str(page["trace"].get("model_version", ""))
        answers.append((time.time(), version))
        in_a_row = in_a_row + 1 if version == trained.get("version") else 0
        if in_a_row >= settle_pages:
            finished.set()

    def numbers() -> Iterator[int]:
        i = 0
        while not finished.is_set():
            served = trained.get("served_since")
            if served is not None and time.time() - served > SWAP_SETTLE_MAX_S:
                return
            if served is None and time.perf_counter() - t0 > SWAP_TRAIN_MAX_S:
                return
            yield i
            i += 1

    worker = threading.Thread(target=training, name="bench-train", daemon=True)
    worker.start()
    load = asyncio.run(
        _load(url, key, BackendName.RULES, concurrency, numbers(), shoppers, base, on_page)
    )
    worker.join(timeout=60 if "served_since" in trained or "error" in trained else 0)
    if "error" in trained:
        raise trained["error"]
    if "served_since" not in trained:
        raise SwapRunError(
            f"training did not finish within {SWAP_TRAIN_MAX_S:.0f} s; no swap to measure"
        )
    old = answers[0][1] if answers else ""
    new = trained["version"]
    end = trained["served_since"]
    new_at = [t for t, v in answers if v == new]
    old_at = [t for t, v in answers if v == old]
    by_version: dict[str, int] = {}
    for _, v in answers:
        by_version[v] = by_version.get(v, 0) + 1
    return {
        **{k: load[k] for k in ("requests", "answered_200", "non_200", "errors")},
        "failed": load["non_200"] + load["errors"],
        "concurrency": concurrency,
        "pages_per_s": load["pages_per_s"],
        "p50_ms": load["p50_ms"],
        "p99_ms": load["p99_ms"],
        "old_version": old,
        "new_version": new,
        "train_s": trained["seconds"],
        "pages_by_version": by_version,
        # From the moment CURRENT named the new version. Each server process polls on its
        # own (COMPOSER_API__MODEL_POLL_S) and loads the version before swapping: between
        # the first and the last process's swap, answers name either version.
        "first_new_page_after_served_s": round(new_at[0] - end, 2) if new_at else None,
        "last_old_page_after_served_s": round(old_at[-1] - end, 2) if old_at else None,
        # Every process served the new version for settle_pages answers in a row.
        "swapped": in_a_row >= settle_pages,
    }


def _runs(group: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(k, v) for k, v in group.items() if isinstance(v, dict)]


def run_exposure_cost(
    workers: int, requests: int, shoppers: Sequence[str], rounds: int = 3
) -> dict[str, Any]:
    """Rules pages/s with the exposure log off and on, each in a server of its own, the two
    alternating ``rounds`` times, which goes first changing each round (drift on a shared
    machine hits both alike)."""
    from composer.topology import ApiServer

    runs: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    base = time.time_ns() % 1_000_000_000
    for n in range(rounds):
        for mode in ("off", "on") if n % 2 == 0 else ("on", "off"):
            env = {**os.environ, "COMPOSER_EXPERIMENTS__EXPOSURE_LOG": str(mode == "on").lower()}
            with ApiServer(workers, env) as server:
                seed = base + (2 * n + (mode == "on")) * 10 * requests
                runs[mode].append(
                    run(server.url, server.key, BackendName.RULES, requests, 0, shoppers, seed)
                )
    out: dict[str, Any] = {"rounds": rounds, "requests_per_run": requests}
    for c in ("c1", "c16"):
        off = [r["rules"][c]["pages_per_s"] for r in runs["off"]]
        on = [r["rules"][c]["pages_per_s"] for r in runs["on"]]
        # Each round's two servers ran back to back: their ratio is the paired measurement,
        # and the median of the rounds' ratios the figure (one noisy round does not move it).
        paired = [b / a for a, b in zip(off, on, strict=True) if a]
        out[c] = {
            "pages_per_s_off": off,
            "pages_per_s_on": on,
            "ratio_per_round": [round(x, 3) for x in paired],
            # Throughput with the log as a share of throughput without: 0.95 is a 5% cost.
            "ratio_on_off": round(float(np.median(paired)), 3) if paired else None,
            "p99_ms_off": [r["rules"][c]["p99_ms"] for r in runs["off"]],
            "p99_ms_on": [r["rules"][c]["p99_ms"] for r in runs["on"]],
        }
    return out


def run_html_stream(url: str, key: str, shoppers: Sequence[str], pages: int) -> dict[str, Any]:
    """``pages`` browser pages (``/pages/{shopper}``, one at a time, each a new shopper)
    composed on request: when the document's head, its first section and its end arrived.
    The end is when a page sent whole would have arrived; the first section is what a
    shopper sees first when it streams."""
    check_loopback(url)
    import httpx

    heads, firsts, ends, chunked = [], [], [], 0
    with httpx.Client(headers={"authorization": f"Bearer {key}"}, timeout=120) as client:
        for shopper in shoppers[:pages]:
            t = time.perf_counter()
            head = first = None
            body = ""
            with client.stream("GET", f"{url}/pages/{shopper}") as r:
                if r.status_code != 200:
                    raise ComposerError(f"/pages/{shopper} answered {r.status_code}")
                chunked += r.headers.get("transfer-encoding") == "chunked"
                for chunk in r.iter_text():
                    now = (time.perf_counter() - t) * 1000
                    body += chunk
                    head = head if head is not None else now
                    if first is None and 'class="section' in body:
                        first = now
            ends.append((time.perf_counter() - t) * 1000)
            heads.append(head or ends[-1])
            firsts.append(first or ends[-1])
    median = lambda xs: round(float(np.median(xs)), 1)  # noqa: E731
    return {
        "pages": len(ends),
        "chunked": chunked,
        "head_ms_p50": median(heads),
        "first_section_ms_p50": median(firsts),
        "complete_ms_p50": median(ends),
        # What the shopper waits for a first section, streamed, as a share of the whole page.
        "first_section_over_complete": round(float(np.median(firsts)) / float(np.median(ends)), 3),
    }
