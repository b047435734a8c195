"""`composer bench llm`: what the vLLM engine gives the page workload on this machine.

Every figure comes from the same page requests (one per shopper, the real pipeline:
retrieval, prompt, constrained generation, checks, HTML):

- pages/minute sequential and with 8 pages in flight; generated tokens/s of a single stream;
- constrained vs unconstrained decoding speed at equal output length;
- time to first token with the shared prompt prefix warm in vLLM's prefix cache vs with no
  reuse at all, and the prefix-cache hit rate the server itself counts (``/metrics``);
- the same sequential pages on the in-process `transformers` backend, as a ratio.

"No reuse" is measured on the same server with a fresh ``cache_salt`` per request: vLLM mixes
the salt into the hash of a prompt's first block, so such a request can match no cached
block, which is what ``--no-enable-prefix-caching`` does to every request; the warm and the
cold requests then alternate on one server under the same load. Each throughput run uses its
own salt too, so a run never finds the prompts of an earlier run in the cache.
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from typing import Any

from composer.backends import BackendRegistry
from composer.bench.page import constrained_ratio
from composer.llm.base import GenerationRequest
from composer.llm.vllm_backend import VLLMBackend
from composer.llm.vllm_server import VLLMServer, free_port, metrics
from composer.page_request import PageRequest
from composer.pipeline import PageComposer, PageResult
from composer.settings import BackendName, Settings
from retrieval import Retriever

CONCURRENCY = 8
# Long enough that no page of the measured runs falls back to `rules` on time: a fallback
# page would count as a fast page and inflate pages/minute.
BENCH_DEADLINE_S = 900.0
Progress = Callable[[str, int], Callable[[int], None]]


def _quiet(_description: str, _total: int) -> Callable[[int], None]:
    return lambda _n: None


def run_pages(
    composer: PageComposer,
    shoppers: Sequence[str],
    backend: BackendName,
    concurrency: int,
    advance: Callable[[int], None],
) -> dict[str, Any]:
    """One page per shopper through the whole pipeline, ``concurrency`` in flight."""

    def one(sid: str) -> PageResult:
        result = composer.compose(PageRequest(shopper_id=sid, backend=backend, format="html"))
        advance(1)
        return result

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(one, shoppers))
    elapsed = time.perf_counter() - started
    traces = [r.trace for r in results]
    tokens = [t.tokens for t in traces]
    generation_s = [t.timings_ms.get("generation", 0.0) / 1000 for t in traces]
    return {
        "pages": len(results),
        "concurrency": concurrency,
        "seconds": round(elapsed, 2),
        "pages_per_min": round(len(results) / elapsed * 60, 2),
        "fallback_rate": round(sum(t.fallback for t in traces) / len(traces), 3),
        "tokens_total": sum(tokens),
        "tokens_p50": statistics.median(tokens),
        "generated_tokens_per_s": round(sum(tokens) / elapsed, 2),
        # A page's tokens over its own generation time (time to first token included).
        "stream_tokens_per_s_p50": round(
            statistics.median(n / s for n, s in zip(tokens, generation_s, strict=True) if s), 2
        ),
        "page_p50_s": round(statistics.median(t.timings_ms["total"] for t in traces) / 1000, 2),
        "first_section_p50_s": round(
            statistics.median(t.timings_ms.get("first_section", 0.0) for t in traces) / 1000, 2
        ),
    }


class LLMBench:
    """One benchmark run: a composer over ``retriever`` whose `vllm` backend can be swapped
    for one with another cache salt."""

    def __init__(self, settings: Settings, retriever: Retriever, url: str) -> None:
        self.settings = settings.model_copy(update={"page_deadline_s": BENCH_DEADLINE_S})
        self.retriever = retriever
        self.url = url
        self.registry = BackendRegistry(self.settings)
        self.composer = PageComposer(self.settings, retriever, self.registry)
        self.nonce = uuid.uuid4().hex[:8]
        self._current: VLLMBackend | None = None

    def backend(self, salt: str | None) -> VLLMBackend:
        # Read timeout as long as the deadline: a page queued behind seven others waits.
        return VLLMBackend(
            self.url, self.settings.llm_model, read_timeout=BENCH_DEADLINE_S, cache_salt=salt
        )

    def use(self, salt: str | None) -> None:
        """Pages from now on go to the server under this cache salt."""
        if self._current is not None:
            self._current.close()
        self._current = self.backend(salt)
        self.registry.register(self._current)

    def pages(
        self, shoppers: Sequence[str], concurrency: int, advance: Callable[[int], None]
    ) -> dict[str, Any]:
        return run_pages(self.composer, shoppers, BackendName.VLLM, concurrency, advance)

    # -- prefix cache ---------------------------------------------------------------------

    def page_prompt(self, shopper: str) -> GenerationRequest:
        """The generation request the composer would send for this shopper's page."""
        return self.composer.generation_request(PageRequest(shopper_id=shopper), max_tokens=1)

    def ttft(self, backend: VLLMBackend, request: GenerationRequest) -> tuple[float, int]:
        """Seconds from sending the request to its first text delta; prompt tokens the
        server took from its prefix cache."""
        started = time.perf_counter()
        stream = backend.stream(request)
        first: float | None = None
        try:
            while True:
                next(stream)
                first = first or time.perf_counter()
        except StopIteration as stop:
            cached = stop.value.cached_tokens
        return (first or time.perf_counter()) - started, cached

    def prefix(self, shoppers: Sequence[str], advance: Callable[[int], None]) -> dict[str, Any]:
        requests = [self.page_prompt(s) for s in shoppers]
        warm = self.backend(f"warm-{self.nonce}")
        self.ttft(warm, requests[-1])  # puts the shared static prefix into the cache
        warm_s, cold_s, cached = [], [], []
        for request in requests:  # alternating, so outside load hits both sides alike
            seconds, hit = self.ttft(warm, request)
            warm_s.append(seconds)
            cached.append(hit)
            cold = self.backend(f"cold-{uuid.uuid4().hex}")
            cold_s.append(self.ttft(cold, request)[0])
            cold.close()
            advance(1)
        warm.close()
        warm_ms, cold_ms = statistics.median(warm_s) * 1000, statistics.median(cold_s) * 1000
        return {
            "requests": len(requests),
            "ttft_warm_ms_p50": round(warm_ms, 1),
            "ttft_off_ms_p50": round(cold_ms, 1),
            "ttft_ratio": round(warm_ms / cold_ms, 3),
            "cached_prompt_tokens_p50": statistics.median(cached),
        }


def _hit_rate(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    hits = after.get("vllm:prefix_cache_hits_total", 0.0) - before.get(
        "vllm:prefix_cache_hits_total", 0.0
    )
    queries = after.get("vllm:prefix_cache_queries_total", 0.0) - before.get(
        "vllm:prefix_cache_queries_total", 0.0
    )
    return {
        "hit_tokens": int(hits),
        "query_tokens": int(queries),
        "hit_rate": round(hits / queries, 3) if queries else 0.0,
    }


def run(
    settings: Settings,
    retriever: Retriever,
    shoppers: Sequence[str],
    *,
    url: str | None = None,
    transformers: bool = True,
    progress: Progress = _quiet,
    log: Callable[[str], None] = lambda _m: None,
) -> dict[str, Any]:
    """All figures over the pages of ``shoppers``; starts (and stops) a local vLLM server
    unless ``url`` points at a running one."""
    if len(shoppers) < 2:
        raise ValueError("the benchmark needs at least 2 shoppers")
    report: dict[str, Any] = {"backend": "vllm", "model": settings.llm_model}
    with ExitStack() as stack:
        if url is None:
            server = VLLMServer.from_settings(
                settings,
                port=free_port(),
                log_file=settings.artifacts_dir / "logs" / "vllm-bench.log",
            )
            log(f"starting vLLM on port {server.port} (log {server.log_file})")
            server.start()
            stack.callback(server.stop)
            url = server.url
            report["server"] = {
                "started_here": True,
                "dtype": server.dtype,
                "max_num_seqs": server.max_num_seqs,
                "block_size": server.block_size,
                "max_model_len": server.max_model_len,
                "kv_cache_gib": server.kv_cache_gib,
                "cpu_cores": server.omp_threads_bind,
            }
        else:
            report["server"] = {"started_here": False, "url": url}
        bench = LLMBench(settings, retriever, url)

        bench.use(f"warmup-{bench.nonce}")  # loads the grammar and allocator caches
        bench.pages(shoppers[:1], 1, progress("warm-up page", 1))

        bench.use(f"seq-{bench.nonce}")
        before = metrics(url)
        sequential = bench.pages(shoppers, 1, progress("vLLM, sequential", len(shoppers)))
        hits = _hit_rate(before, metrics(url))

        bench.use(f"c{CONCURRENCY}-{bench.nonce}")
        concurrent = bench.pages(
            shoppers, CONCURRENCY, progress(f"vLLM, {CONCURRENCY} at once", len(shoppers))
        )

        bench.use(f"decoding-{bench.nonce}")
        advance = progress("constrained vs free decoding", 1)
        decoding = constrained_ratio(bench.composer, shoppers[0], BackendName.VLLM)
        advance(1)

        prefix = bench.prefix(
            shoppers[:10], progress("time to first token", min(10, len(shoppers)))
        )

    report.update(
        {
            "pages": len(shoppers),
            "single_stream_tokens_per_s": sequential["stream_tokens_per_s_p50"],
            # Whole requests (time to first token included), constrained, one at a time.
            "single_stream_constrained_request_tokens_per_s": decoding["constrained_tokens_per_s"],
            "sequential_pages_per_min": sequential["pages_per_min"],
            "concurrent8_pages_per_min": concurrent["pages_per_min"],
            "concurrency_speedup": round(
                concurrent["pages_per_min"] / sequential["pages_per_min"], 2
            ),
            "constrained_speed_ratio": decoding["constrained_speed_ratio"],
            "prefix_ttft_ratio": prefix["ttft_ratio"],
            "prefix_hit_rate": hits["hit_rate"],
            "sequential": sequential,
            "concurrent8": concurrent,
            "decoding": decoding,
            "prefix_cache": {**prefix, "sequential_pages": hits},
        }
    )
    if transformers:
        # A server started here has stopped by now: the two never share the cores.
        composer = PageComposer(
            settings.model_copy(update={"page_deadline_s": BENCH_DEADLINE_S}), retriever
        )
        # Untimed like vLLM's: loads the model. The last shopper's, so that the first timed
        # page does not find its whole prompt in the in-process prefix cache.
        run_pages(composer, shoppers[-1:], BackendName.TRANSFORMERS, 1, progress("warm-up page", 1))
        local = run_pages(
            composer, shoppers, BackendName.TRANSFORMERS, 1, progress("transformers", len(shoppers))
        )
        report["transformers"] = local
        report["vs_transformers_ratio"] = round(
            sequential["pages_per_min"] / local["pages_per_min"], 2
        )
        report["vs_transformers_concurrent_ratio"] = round(
            concurrent["pages_per_min"] / local["pages_per_min"], 2
        )
    else:
        report["vs_transformers_ratio"] = None
    return report
