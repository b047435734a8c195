"""Pages composed ahead of the request: the queue in the store, the worker threads that fill
it with LLM pages, and the lookup that answers a page view from them."""

from composer.ahead.kept import InvalidKeptPage, pack, unpack
from composer.ahead.keys import AHEAD_KINDS, applies, key_hash, normalise, request_hash
from composer.ahead.service import (
    COMPOSING,
    KEPT,
    PENDING_REASON,
    REFRESHING,
    ComposeAhead,
    Found,
)
from composer.ahead.worker import AheadMetrics, AheadPlan, AheadWorker, Pages

__all__ = [
    "AHEAD_KINDS",
    "COMPOSING",
    "KEPT",
    "PENDING_REASON",
    "REFRESHING",
    "AheadMetrics",
    "AheadPlan",
    "AheadWorker",
    "ComposeAhead",
    "Found",
    "InvalidKeptPage",
    "Pages",
    "applies",
    "key_hash",
    "normalise",
    "pack",
    "request_hash",
    "unpack",
]
