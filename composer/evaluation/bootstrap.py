"""Bootstrap confidence intervals of a statistic, and of the difference between two variants
measured on the same examples (paired: both resampled with the same indices)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from composer.evaluation.metrics import Stat

LEVEL = 0.95


@dataclass(frozen=True)
class Estimate:
    value: float
    low: float
    high: float

    @property
    def excludes_zero(self) -> bool:
        return bool(self.low > 0 or self.high < 0)

    def rounded(self, digits: int = 4) -> Estimate:
        return Estimate(*(round(v, digits) if np.isfinite(v) else v for v in self))

    def __iter__(self) -> Iterator[float]:
        return iter((self.value, self.low, self.high))


def resample_indices(n: int, samples: int, seed: int = 0) -> np.ndarray:
    """``samples`` × ``n`` example indices drawn with replacement (fixed seed: reports
    reproduce exactly)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n, size=(samples, n)) if n else np.zeros((samples, 0), dtype=int)


def statistic(values: Sequence, stat: Stat) -> float:
    """The statistic on all examples."""
    return float(_per_sample(values, stat, np.arange(len(values))[None, :])[0])


def estimate(values: Sequence, stat: Stat, indices: np.ndarray) -> Estimate:
    point = statistic(values, stat)
    dist = _per_sample(values, stat, indices)
    return Estimate(point, *_interval(dist))


def difference(a: Sequence, b: Sequence, stat: Stat, indices: np.ndarray) -> Estimate:
    """``stat(b) - stat(a)`` over the same examples, with its bootstrap interval."""
    if len(a) != len(b):
        raise ValueError("a paired difference needs the same examples on both sides")
    point = statistic(b, stat) - statistic(a, stat)
    dist = _per_sample(b, stat, indices) - _per_sample(a, stat, indices)
    return Estimate(point, *_interval(dist))


def _interval(dist: np.ndarray) -> tuple[float, float]:
    dist = dist[np.isfinite(dist)]
    if not len(dist):
        return float("nan"), float("nan")
    tail = (1 - LEVEL) / 2 * 100
    low, high = np.percentile(dist, [tail, 100 - tail])
    return float(low), float(high)


def _per_sample(values: Sequence, stat: Stat, indices: np.ndarray) -> np.ndarray:
    if stat == "distinct_2":
        return _distinct(values, indices)
    arr = np.asarray(values, dtype=float)
    if not len(arr):
        return np.full(len(indices), np.nan)
    picked = arr[indices]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN samples give NaN, fine
        if stat == "median":
            return np.nanmedian(picked, axis=1)
        return np.nanmean(picked, axis=1)


def _distinct(lists: Sequence[Sequence[str]], indices: np.ndarray) -> np.ndarray:
    """Distinct items over all items of the chosen examples, per sample.

    A page the bootstrap draws twice stands for two pages of its kind, not for one page
    shown twice: bigrams no other page uses stay its own in each copy, while bigrams it
    shares with other pages count once. Without this, copies alone would drag every
    resample below the point estimate.
    """
    vocab: dict[str, int] = {}
    coded = [[vocab.setdefault(g, len(vocab)) for g in lst] for lst in lists]
    pages_with = np.zeros(len(vocab), dtype=np.int64)
    for codes in coded:
        pages_with[np.unique(np.asarray(codes, dtype=np.int64))] += 1
    shared = []
    private = np.zeros(len(coded))
    for i, codes in enumerate(coded):
        uniq = np.unique(np.asarray(codes, dtype=np.int64))
        shared.append(uniq[pages_with[uniq] > 1])
        private[i] = np.count_nonzero(pages_with[uniq] == 1)
    lengths = np.asarray([len(c) for c in coded], dtype=float)
    out = np.empty(len(indices))
    for row, idx in enumerate(indices):
        total = lengths[idx].sum()
        if total == 0:
            out[row] = np.nan
            continue
        chosen = np.unique(idx)
        common = np.unique(np.concatenate([shared[i] for i in chosen])) if len(chosen) else ()
        out[row] = (len(common) + private[idx].sum()) / total
    return out
