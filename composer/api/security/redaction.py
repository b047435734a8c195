"""What a page's trace tells its caller: reason codes for a storefront, the details (the
model's errors, rejected words, internal addresses, the shopper's pseudonym) for an admin
key and the logs."""

from __future__ import annotations

from typing import Any

# Kept for every caller: enough to see what served the page and how long it took.
_PUBLIC = (
    "backend",
    "model",
    "model_version",
    "prompt",
    "prompt_hash",
    "timings_ms",
    "tokens",
    "fallback",
    "ahead",
    "page_age_s",
)
_CANDIDATE = ("handle", "product_id", "score", "provenance", "reason", "theme")


def reason_code(reason: str | None) -> str | None:
    """A stable code for a fallback reason (whose text may name hosts or exceptions)."""
    if not reason:
        return None
    text = reason.lower()
    for needle, code in (
        ("composed ahead", "composing_ahead"),
        ("queue full", "queue_full"),
        ("key share", "key_share"),
        ("deadline", "deadline"),
        ("unavailable", "backend_unavailable"),
        ("circuit", "backend_unavailable"),
        ("did not answer", "backend_unavailable"),
        ("connect", "backend_unavailable"),
        ("profile", "no_shop_profile"),
        ("example headlines", "no_shop_profile"),
    ):
        if needle in text:
            return code
    return "model_output_unusable"


def public_trace(trace: dict[str, Any]) -> dict[str, Any]:
    out = {k: trace[k] for k in _PUBLIC if k in trace}
    out["fallback_reason"] = reason_code(trace.get("fallback_reason"))
    out["candidates"] = [
        {k: c[k] for k in _CANDIDATE if k in c} for c in trace.get("candidates", [])
    ]
    # Which sources failed, not why (the error names hosts and ports).
    out["sources_missing"] = sorted(trace.get("sources_missing", {}))
    return out


def for_caller(body: dict[str, Any], full: bool) -> dict[str, Any]:
    """``body`` (a page as JSON) with its trace cut to what this caller may see."""
    if not full and "trace" in body:
        body["trace"] = public_trace(body["trace"])
    return body
