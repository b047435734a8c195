"""Candidate sources. Each answers the same call with ranked ids and scores; fusion never
needs to know which is which."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from retrieval.candidates import Provenance
from retrieval.catalog_view import CandidateFilter, CatalogView
from retrieval.context import ShopperContext
from retrieval.embeddings import Encoder
from retrieval.lru import LRU
from retrieval.mf import MFModel
from retrieval.vector_index import VectorFilter, VectorSearch

PROFILE_ITEMS = 20  # the most recent history items that make up a vector profile


@dataclass(frozen=True)
class SourceResult:
    name: str
    provenance: Provenance
    ids: list[str]
    scores: np.ndarray
    # Stages inside the source worth timing apart (the query's embedding), in ms.
    stages_ms: dict[str, float] = field(default_factory=dict)

    @classmethod
    def empty(cls, name: str, provenance: Provenance) -> SourceResult:
        return cls(name, provenance, [], np.zeros(0, dtype=np.float32))


class CandidateSource(Protocol):
    name: str

    def candidates(self, ctx: ShopperContext, k: int, f: CandidateFilter) -> SourceResult: ...


def top_k_masked(scores: np.ndarray, mask: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k best scores among masked-in entries, best first."""
    valid = np.flatnonzero(mask)
    if valid.size == 0 or k <= 0:
        return np.zeros(0, dtype=np.int64)
    sub = scores[valid]
    part = np.argpartition(-sub, k - 1)[:k] if k < sub.size else np.arange(sub.size)
    order = part[np.argsort(-sub[part], kind="stable")]
    return valid[order]


FOLD_IN_CACHE = 1024  # fold-in vectors kept, keyed by the history they were solved from


class MFSource:
    name = "mf"

    def __init__(self, model: MFModel, catalog: CatalogView) -> None:
        self.model = model
        self.catalog = catalog
        # Products ingested after training have no factors; they never score in MF.
        self._catalog_pos = np.asarray(
            [catalog.index.get(pid, -1) for pid in model.product_ids], dtype=np.int64
        )
        self._known = self._catalog_pos >= 0
        # Keyed by the history itself, so a new event (a longer history) is a new key and a
        # stale vector can never be served; the same shopper's next pages reuse the solve.
        self._fold_ins: LRU[tuple[tuple[str, float], ...], np.ndarray] = LRU(FOLD_IN_CACHE)

    def user_vector(self, ctx: ShopperContext) -> tuple[np.ndarray | None, Provenance]:
        if ctx.shopper_id is not None and not ctx.needs_fold_in:
            vec = self.model.user_vector(ctx.shopper_id)
            if vec is not None:
                return vec, Provenance.MF
        history = tuple((h.product_id, h.weight) for h in ctx.history)
        vec = self._fold_ins.get(history)
        if vec is None:
            vec = self.model.fold_in(history)
            if vec is not None:
                vec.setflags(write=False)  # shared between requests
                self._fold_ins.put(history, vec)
        return vec, Provenance.FOLD_IN

    def candidates(self, ctx: ShopperContext, k: int, f: CandidateFilter) -> SourceResult:
        vec, provenance = self.user_vector(ctx)
        if vec is None:
            return SourceResult.empty(self.name, provenance)
        scores = np.full(len(self.catalog), -np.inf, dtype=np.float32)
        scores[self._catalog_pos[self._known]] = self.model.scores(vec)[self._known]
        mask = self.catalog.mask(f) & np.isfinite(scores)
        top = top_k_masked(scores, mask, k)
        return SourceResult(self.name, provenance, [self.catalog.ids[i] for i in top], scores[top])

    def item_affinity(self, product_id: str, history_ids: list[str]) -> list[str]:
        """History items whose factors point the same way as ``product_id``'s, best first."""
        return self.affinity(history_ids)(product_id)

    def affinity(self, history_ids: list[str]) -> Callable[[str], list[str]]:
        """:meth:`item_affinity` against one history, for many products: the history's
        factors are gathered once, not once per product."""
        index = self.model.item_index
        hist = [pid for pid in history_ids if pid in index]
        if not hist:
            return lambda product_id: []
        factors = self.model.item_factors
        hist_factors = factors[[index[pid] for pid in hist]]

        def closest(product_id: str) -> list[str]:
            j = index.get(product_id)
            if j is None:
                return []
            sims = hist_factors @ factors[j]
            return [hist[i] for i in np.argsort(-sims)]

        return closest


class VectorSource:
    name = "vector"

    def __init__(self, index: VectorSearch, encoder: Encoder | None, catalog: CatalogView) -> None:
        self.index = index
        self.encoder = encoder
        self.catalog = catalog
        # Counting may be a round trip to Chroma; the catalog changes only through a
        # rebuild, which makes a new source.
        self._total = index.count()

    def profile_vector(self, ctx: ShopperContext) -> np.ndarray | None:
        """Recency-weighted mean of the embeddings of the latest history items."""
        if self.catalog.embeddings is None:
            return None
        rows, weights = [], []
        recent = ctx.history[-PROFILE_ITEMS:]
        for age, h in enumerate(reversed(recent)):
            i = self.catalog.index.get(h.product_id)
            if i is not None:
                rows.append(i)
                weights.append(h.weight * 0.9**age)
        if not rows:
            return None
        vec = (self.catalog.embeddings[rows] * np.asarray(weights)[:, None]).sum(axis=0)
        norm = float(np.linalg.norm(vec))
        return vec / norm if norm > 0 else None

    def query_vector(self, ctx: ShopperContext) -> tuple[np.ndarray | None, bool]:
        if ctx.query and self.encoder is not None:
            return self.encoder.encode_one(ctx.query), True
        return self.profile_vector(ctx), False

    def candidates(self, ctx: ShopperContext, k: int, f: CandidateFilter) -> SourceResult:
        t = time.perf_counter()
        vec, _ = self.query_vector(ctx)
        embed_ms = (time.perf_counter() - t) * 1000
        if vec is None:
            return SourceResult.empty(self.name, Provenance.VECTOR)
        total = self._total
        # Post-filtering an over-fetched unfiltered query is much faster than Chroma's
        # metadata pre-filter; the pre-filter is the fallback when too few survive.
        fetch = min(total, k + k // 2 + len(f.exclude_ids))
        ids, scores = self.index.query(vec, fetch) if fetch else ([], np.zeros(0))
        keep = [i for i, pid in enumerate(ids) if self.catalog.passes(pid, f)]
        if len(keep) < k and len(ids) < total:
            where = VectorFilter(f.min_price, f.max_price, f.categories, f.in_stock_only)
            fetch = min(total, k + len(f.exclude_ids))
            ids, scores = self.index.query(vec, fetch, where)
            keep = [i for i, pid in enumerate(ids) if self.catalog.passes(pid, f)]
        keep = keep[:k]
        return SourceResult(
            self.name,
            Provenance.VECTOR,
            [ids[i] for i in keep],
            np.asarray([scores[i] for i in keep], dtype=np.float32),
            {"embed": embed_ms} if ctx.query else {},
        )


class PopularitySource:
    name = "popular"

    def __init__(self, popularity: np.ndarray, catalog: CatalogView) -> None:
        if len(popularity) != len(catalog):
            raise ValueError("popularity must contain 1 score for every product in the catalog")
        self.popularity = popularity
        self.catalog = catalog
        self.rank_of = {
            catalog.ids[i]: r + 1 for r, i in enumerate(np.argsort(-popularity, kind="stable"))
        }

    def candidates(self, ctx: ShopperContext, k: int, f: CandidateFilter) -> SourceResult:
        top = top_k_masked(self.popularity, self.catalog.mask(f), k)
        return SourceResult(
            self.name, Provenance.POPULAR, [self.catalog.ids[i] for i in top], self.popularity[top]
        )
