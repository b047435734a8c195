"""Micro benchmark: what JSON-schema constraint costs in decoding speed, on any backend."""

from __future__ import annotations

import statistics
import time
from dataclasses import replace
from typing import Any

from composer.llm.base import Generation, GenerationRequest, LLMBackend


def _timed(backend: LLMBackend, request: GenerationRequest) -> tuple[Generation, float]:
    started = time.perf_counter()
    generation = backend.generate(replace(request, n=1))[0]
    return generation, time.perf_counter() - started


def _median_rate(samples: list[tuple[Generation, float]]) -> float:
    return statistics.median(gen.tokens / seconds for gen, seconds in samples)


def _median_decode_rate(samples: list[tuple[Generation, float]]) -> float | None:
    # The first token comes out of the prefill, so decoding made tokens - 1 of them.
    rates = [
        (gen.tokens - 1) / (gen.timings_ms["decode"] / 1000)
        for gen, _ in samples
        if gen.timings_ms.get("decode") and gen.tokens > 1
    ]
    return statistics.median(rates) if len(rates) == len(samples) else None


def _median_pass_ms(samples: list[tuple[Generation, float]]) -> float | None:
    """Decode time per forward pass after the prefill: what one step costs, with the
    grammar's mask (constrained) or without, whatever jump-forward saved in steps."""
    per_pass = [
        gen.timings_ms["decode"] / (gen.forward_passes - 1)
        for gen, _ in samples
        if gen.forward_passes > 1 and gen.timings_ms.get("decode")
    ]
    return statistics.median(per_pass) if len(per_pass) == len(samples) else None


def measure_decoding_speed(
    backend: LLMBackend, request: GenerationRequest, runs: int = 3
) -> dict[str, Any]:
    """Tokens/s with and without ``request.json_schema``, at equal output length.

    The constrained run decides the length; the unconstrained run is forced to the same
    number of tokens (``min_tokens`` = ``max_tokens``), because a free-running model stops
    at a different point and would compare unequal work. Each side gets one untimed warm-up
    (grammar compilation, allocator caches), then the sides alternate; medians of ``runs``
    are reported. Rates are wall-clock per request (prefill included) and, where the backend
    reports timings, decode-only. Use a greedy request so every run decodes the same tokens.

    The token rates mostly show jump-forward (forced JSON keys go through the model several
    per pass), not what the grammar's mask costs; where the backend counts them, forward
    passes, forced tokens and the time of one pass on each side say that apart
    (``constrained_pass_speed_ratio``: below 1, the mask makes a step slower).
    """
    if request.json_schema is None:
        raise ValueError("measure_decoding_speed needs a request with a json_schema")
    if runs < 1:
        raise ValueError(f"runs must be at least 1, got {runs}")

    tokens = _timed(backend, request)[0].tokens
    free = replace(request, json_schema=None, max_tokens=tokens, min_tokens=tokens)
    _timed(backend, free)
    constrained: list[tuple[Generation, float]] = []
    unconstrained: list[tuple[Generation, float]] = []
    # Interleaved, so that load from elsewhere on the machine hits both sides alike.
    for _ in range(runs):
        constrained.append(_timed(backend, request))
        unconstrained.append(_timed(backend, free))

    rate_c, rate_u = _median_rate(constrained), _median_rate(unconstrained)
    result: dict[str, Any] = {
        "backend": backend.name,
        "model": backend.model,
        "runs": runs,
        "tokens": tokens,
        "unconstrained_tokens": statistics.median(gen.tokens for gen, _ in unconstrained),
        "constrained_tokens_per_s": round(rate_c, 2),
        "unconstrained_tokens_per_s": round(rate_u, 2),
        "constrained_speed_ratio": round(rate_c / rate_u, 3),
    }
    decode_c, decode_u = _median_decode_rate(constrained), _median_decode_rate(unconstrained)
    if decode_c is not None and decode_u is not None:
        result["constrained_decode_tokens_per_s"] = round(decode_c, 2)
        result["unconstrained_decode_tokens_per_s"] = round(decode_u, 2)
        result["constrained_decode_speed_ratio"] = round(decode_c / decode_u, 3)
    pass_c, pass_u = _median_pass_ms(constrained), _median_pass_ms(unconstrained)
    if pass_c is not None and pass_u is not None:
        result["constrained_forward_passes"] = statistics.median(
            gen.forward_passes for gen, _ in constrained
        )
        result["unconstrained_forward_passes"] = statistics.median(
            gen.forward_passes for gen, _ in unconstrained
        )
        result["constrained_forced_tokens"] = statistics.median(
            gen.forced_tokens for gen, _ in constrained
        )
        result["constrained_ms_per_pass"] = round(pass_c, 2)
        result["unconstrained_ms_per_pass"] = round(pass_u, 2)
        result["constrained_pass_speed_ratio"] = round(pass_u / pass_c, 3)
    return result
