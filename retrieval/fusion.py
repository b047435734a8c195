"""Fuse ranked lists from several sources into one ranking.

Both methods are linear in the source weights: fused = Σ_s w_s · contribution_s. The
contributions are built once (:func:`contributions`), so tuning can try many weights cheaply.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
    hits: list[dict[str, SourceHit]]

    def scores(self, weights: Mapping[str, float]) -> np.ndarray:
        w = np.asarray([weights.get(s, 1.0) for s in self.sources], dtype=np.float64)
        return w @ self.matrix if len(self.sources) else np.zeros(len(self.ids))


def contributions(
    results: Sequence[SourceResult], method: Method = "rrf", rrf_k: float = 60.0
) -> Contributions:
    """Per-source contribution of every candidate.

    RRF: 1 / (k + rank), robust to incomparable score scales. Weighted: the source's score
    min-max normalised to [0, 1]. A product a source did not return contributes 0 from it.
    """
    position: dict[str, int] = {}
    ids: list[str] = []
    hits: list[dict[str, SourceHit]] = []
    for res in results:
        for rank, (pid, s) in enumerate(zip(res.ids, res.scores, strict=True), start=1):
            if pid not in position:
                position[pid] = len(ids)
                ids.append(pid)
                hits.append({})
            hits[position[pid]][res.name] = SourceHit(rank, float(s))
    matrix = np.zeros((len(results), len(ids)), dtype=np.float64)
    for row, res in enumerate(results):
        if not res.ids:
            continue
        cols = [position[pid] for pid in res.ids]
        if method == "rrf":
            matrix[row, cols] = 1.0 / (rrf_k + np.arange(1, len(cols) + 1))
        else:
            s = np.asarray(res.scores, dtype=np.float64)
            lo, hi = float(s.min()), float(s.max())
            matrix[row, cols] = (s - lo) / (hi - lo) if hi > lo else 1.0
    return Contributions(ids, [r.name for r in results], matrix, hits)


def ranked_positions(scores: np.ndarray) -> np.ndarray:
    # Stable: ties keep first-seen order (sources in a fixed order), so runs agree.
    return np.argsort(-scores, kind="stable")


def fuse(
    results: Sequence[SourceResult],
    weights: Mapping[str, float],
    method: Method = "rrf",
    rrf_k: float = 60.0,
) -> list[Fused]:
    c = contributions(results, method, rrf_k)
    scores = c.scores(weights)
    return [Fused(c.ids[i], float(scores[i]), c.hits[i]) for i in ranked_positions(scores)]
