"""`composer bench page`: what an LLM page costs and how often it holds, with the `rules`
page measured in the same run as the baseline."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from composer.bench.speed import measure_decoding_speed
from composer.copywriting import CopyRequest, Copywriter
from composer.page_request import PageRequest
from composer.pipeline import PageComposer, PageResult
from composer.settings import BackendName

Progress = Callable[[int], None]


def _pct(values: Sequence[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 3) if values else 0.0


def shown_handle_problems(result: PageResult, candidate_handles: set[str]) -> tuple[int, int]:
    """Unknown and repeated handles in what the shopper sees (must both be 0)."""
    handles = result.layout.handles()
    unknown = sum(1 for h in handles if h not in candidate_handles)
    return unknown, len(handles) - len(set(handles))


def as_written(result: PageResult) -> bool:
    """Whether the model's own output was shown as it wrote it: one attempt, no check
    failed, nothing repaired, no fallback. (The shown layout always validates: the composer
    checked, repaired or replaced it before it was shown.)"""
    t = result.trace
    if t.backend == BackendName.RULES:
        return not t.fallback  # no model: the page is what the rules wrote
    return (
        len(t.attempts) == 1
        and not t.attempts[0].issues
        and t.attempts[0].error is None
        and not t.repairs
        and not t.fallback
    )


def run_pages(
    composer: PageComposer,
    shoppers: Sequence[str],
    backend: BackendName,
    progress: Progress | None = None,
) -> dict[str, Any]:
    latencies, first, tokens, fallbacks, written, unknown, repeated = [], [], [], 0, 0, 0, 0
    for sid in shoppers:
        result = composer.compose(PageRequest(shopper_id=sid, backend=backend, format="html"))
        t = result.trace
        latencies.append(t.timings_ms["total"] / 1000)
        if "first_section" in t.timings_ms:
            first.append(t.timings_ms["first_section"] / 1000)
        tokens.append(t.tokens)
        fallbacks += t.fallback
        written += as_written(result)
        u, r = shown_handle_problems(result, {c["handle"] for c in t.candidates})
        unknown += u
        repeated += r
        if progress:
            progress(1)
    n = len(shoppers)
    return {
        "pages": n,
        # Pages whose model output passed every check as written (rules pages: all of them).
        "as_written_rate": round(written / n, 3),
        "unknown_handles_shown": unknown,
        "repeated_handles_shown": repeated,
        "fallback_rate": round(fallbacks / n, 3),
        "tokens_p50": _pct(tokens, 50),
        "page_p50_s": _pct(latencies, 50),
        "page_p90_s": _pct(latencies, 90),
        "first_section_p50_s": _pct(first, 50),
    }


def constrained_ratio(composer: PageComposer, shopper: str, backend: BackendName) -> dict[str, Any]:
    """Decoding speed with and without the page schema, on a real page prompt."""
    gen = composer.generation_request(PageRequest(shopper_id=shopper))
    return measure_decoding_speed(composer.backends.get(backend), gen, runs=2)


def run_copy(
    writer: Copywriter,
    product_ids: Sequence[str],
    backend: BackendName,
    progress: Progress | None = None,
) -> dict[str, Any]:
    passed, total, distinct_ok, fallbacks, seconds = 0, 0, 0, 0, []
    for pid in product_ids:
        result = writer.write(CopyRequest(products=[pid], n=3, backend=backend))
        total += len(result.variants)
        passed += sum(v.passed for v in result.variants)
        texts = [v.text.lower() for v in result.variants]
        distinct_ok += len(texts) == 3 and len(set(texts)) == 3
        fallbacks += result.fallback
        seconds.append(result.seconds)
        if progress:
            progress(1)
    n = len(product_ids)
    return {
        "requests": n,
        "variants_passing_rate": round(passed / max(total, 1), 3),
        "distinct_n_rate": round(distinct_ok / n, 3),
        "fallback_rate": round(fallbacks / n, 3),
        "request_p50_s": round(statistics.median(seconds), 3) if seconds else 0.0,
    }
