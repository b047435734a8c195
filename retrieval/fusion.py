"""Fuse ranked lists from several sources into one ranking.

Both methods are linear in the source weights: fused = Σ_s w_s · contribution_s. The
contributions are built once (:func:`contributions`), so tuning can try many weights cheaply.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from retrieval.candidates import SourceHit
from retrieval.sources import SourceResult

Method = Literal["rrf", "weighted"]


@dataclass(frozen=True)
class Fused:
    product_id: str
    score: float
    hits: dict[str, SourceHit]


@dataclass(frozen=True)
class Contributions:
    ids: list[str]
    sources: list[str]
    matrix: np.ndarray  # (sources, ids)
    ranks: np.ndarray  # (sources, ids): 1-based rank within each source, 0 where absent
    source_scores: np.ndarray  # (sources, ids): each source's own score

    def scores(self, weights: Mapping[str, float]) -> np.ndarray:
        w = np.asarray([weights.get(s, 1.0) for s in self.sources], dtype=np.float64)
        return w @ self.matrix if len(self.sources) else np.zeros(len(self.ids))

    def hits_of(self, i: int) -> dict[str, SourceHit]:
        """Which sources returned candidate ``i``, at what rank and score (source order).

        Made on demand: a page keeps a few dozen of some hundreds of candidates."""
        return {
            name: SourceHit(int(self.ranks[row, i]), float(self.source_scores[row, i]))
            for row, name in enumerate(self.sources)
            if self.ranks[row, i]
        }

    @property
    def hits(self) -> list[dict[str, SourceHit]]:
        return [self.hits_of(i) for i in range(len(self.ids))]


def contributions(
    results: Sequence[SourceResult], method: Method = "rrf", rrf_k: float = 60.0
) -> Contributions:
    """Per-source contribution of every candidate.

    RRF: 1 / (k + rank), robust to incomparable score scales. Weighted: the source's score
    min-max normalised to [0, 1]. A product a source did not return contributes 0 from it.
    """
    position: dict[str, int] = {}
    ids: list[str] = []
    for res in results:
        for pid in res.ids:
            if pid not in position:
                position[pid] = len(ids)
                ids.append(pid)
    shape = (len(results), len(ids))
    matrix = np.zeros(shape, dtype=np.float64)
    ranks = np.zeros(shape, dtype=np.int64)
    source_scores = np.zeros(shape, dtype=np.float64)
    for row, res in enumerate(results):
        if not res.ids:
            continue
        cols = [position[pid] for pid in res.ids]
        if len(res.scores) != len(cols):
            raise ValueError(f"source {res.name} has {len(cols)} ids but {len(res.scores)} scores")
        ranks[row, cols] = np.arange(1, len(cols) + 1)
        source_scores[row, cols] = res.scores
        if method == "rrf":
            matrix[row, cols] = 1.0 / (rrf_k + np.arange(1, len(cols) + 1))
        else:
            s = np.asarray(res.scores, dtype=np.float64)
            lo, hi = float(s.min()), float(s.max())
            matrix[row, cols] = (s - lo) / (hi - lo) if hi > lo else 1.0
    return Contributions(ids, [r.name for r in results], matrix, ranks, source_scores)


def ranked_positions(scores: np.ndarray) -> np.ndarray:
    # Stable: ties keep first-seen order (sources in a fixed order), so runs agree.
    return np.argsort(-scores, kind="stable")


def fused_in_order(c: Contributions, weights: Mapping[str, float]) -> Iterator[Fused]:
    """The fused ranking, best first, made as it is consumed: a caller that needs only the
    head does not pay for the tail."""
    scores = c.scores(weights)
    values = scores.tolist()
    order = ranked_positions(scores).tolist()
    return (Fused(c.ids[i], values[i], c.hits_of(i)) for i in order)


def fuse(
    results: Sequence[SourceResult],
    weights: Mapping[str, float],
    method: Method = "rrf",
    rrf_k: float = 60.0,
) -> list[Fused]:
    return list(fused_in_order(contributions(results, method, rrf_k), weights))
