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
    gain = (1 - strength) * rel
    chosen: list[int] = []
    # Nothing picked yet: no penalty. After that, each item's penalty is its highest
    # similarity to a picked one; a picked item is never picked again (-inf).
    value = gain.copy()
    max_sim: np.ndarray | None = None
    for _ in range(min(k, n)):
        best = int(np.argmax(value))
        chosen.append(best)
        max_sim = sims[best].copy() if max_sim is None else np.maximum(max_sim, sims[best])
        value = gain - strength * max_sim
        value[chosen] = -np.inf
    return chosen
