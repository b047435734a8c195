"""Maximal marginal relevance over product embeddings, and near-duplicate removal."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def mmr(relevance: Sequence[float], embeddings: np.ndarray, k: int, strength: float) -> list[int]:
    """Pick k positions trading relevance against similarity to already picked items.

    ``strength`` 0 keeps the relevance order; 1 picks for novelty only. Relevance is rescaled
    to [0, 1] so that it is comparable with cosine similarity.
    """
    n = len(relevance)
    if n == 0 or k <= 0:
        return []
    rel = np.asarray(relevance, dtype=np.float64)
    span = rel.max() - rel.min()
    rel = (rel - rel.min()) / span if span > 0 else np.ones(n)
    if strength <= 0:
        return list(np.argsort(-rel, kind="stable")[:k])
    sims = embeddings @ embeddings.T
    chosen: list[int] = []
    max_sim = np.full(n, -np.inf)
    remaining = np.ones(n, dtype=bool)
    for _ in range(min(k, n)):
        penalty = np.where(np.isfinite(max_sim), max_sim, 0.0)
        value = (1 - strength) * rel - strength * penalty
        value[~remaining] = -np.inf
        best = int(np.argmax(value))
        chosen.append(best)
        remaining[best] = False
        max_sim = np.maximum(max_sim, sims[best])
    return chosen
