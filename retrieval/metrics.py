"""Ranking metrics with binary relevance.

Recall@k divides by min(k, |relevant|) so that a perfect top-k scores 1 even when more
items are relevant than fit in k (the query slice has hundreds of relevant items).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Sequence


def recall_at_k(ranked: Sequence[str], relevant: Collection[str], k: int) -> float:
    if not relevant:
        return 0.0
    hits = sum(1 for pid in ranked[:k] if pid in relevant)
    return hits / min(k, len(relevant))


def hit_rate_at_k(ranked: Sequence[str], relevant: Collection[str], k: int) -> float:
    return 1.0 if any(pid in relevant for pid in ranked[:k]) else 0.0


def dcg_at_k(ranked: Sequence[str], relevant: Collection[str], k: int) -> float:
    return sum(1.0 / math.log2(i + 2) for i, pid in enumerate(ranked[:k]) if pid in relevant)


def ndcg_at_k(ranked: Sequence[str], relevant: Collection[str], k: int) -> float:
    if not relevant:
        return 0.0
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(k, len(relevant))))
    return dcg_at_k(ranked, relevant, k) / ideal


def catalog_coverage(rankings: Iterable[Sequence[str]], catalog_size: int, k: int) -> float:
    """Share of the catalog that appears in at least one top-k list."""
    if catalog_size <= 0:
        return 0.0
    shown = {pid for ranked in rankings for pid in ranked[:k]}
    return len(shown) / catalog_size
