"""One retrieval request: sources → fusion → filters → de-duplication → diversity → themes."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace

import numpy as np

from retrieval.candidates import (
    Candidate,
    CandidateSet,
    Provenance,
    Reason,
)
from retrieval.catalog_view import CandidateFilter, CatalogView
from retrieval.context import HistoryItem, ShopperContext
from retrieval.diversity import mmr
from retrieval.errors import NotBuiltError
from retrieval.fusion import (
    Contributions,
    Fused,
    contributions,
    fuse,
    fused_in_order,
    ranked_positions,
)
from retrieval.mf import event_weight
from retrieval.params import FusionParams, MFParams
from retrieval.profile import build_profile
from retrieval.records import EventKind
from retrieval.sources import MFSource, PopularitySource, SourceResult, VectorSource
from retrieval.store import Store
from retrieval.themes import group_into_themes

log = logging.getLogger("retrieval")

COLD_START_EVENTS = 5  # fewer history events than this is a cold-start shopper

DEFAULT_WEIGHTS: dict[str, dict[str, float]] = {
    "warm": {"mf": 1.0, "vector": 0.3, "popular": 0.2},
    "cold": {"mf": 0.6, "vector": 0.6, "popular": 0.4},
    "query": {"mf": 0.4, "vector": 1.0, "popular": 0.1},
}


def context_bucket(ctx: ShopperContext) -> str:
    if ctx.query:
        return "query"
    return "cold" if len(ctx.history) < COLD_START_EVENTS else "warm"


@dataclass(frozen=True)
class RetrievalRequest:
    shopper_id: str | None = None
    recent_product_ids: tuple[str, ...] = ()
    query: str | None = None
    k: int = 24
    min_price: float | None = None
    max_price: float | None = None
    categories: tuple[str, ...] = ()
    in_stock_only: bool = True
    exclude_purchased: bool = True
    diversity: float | None = None  # None: the configured default
    max_themes: int = 4
    # Set: the candidates come in random order (this seed) from the whole fused pool, not
    # best first: a page without ranking, the control an experiment compares ranking with.
    shuffle_seed: int | None = None


@dataclass
class Retriever:
    catalog: CatalogView
    mf: MFSource | None
    vector: VectorSource | None
    popular: PopularitySource
    fusion: FusionParams = field(default_factory=FusionParams)
    mf_params: MFParams = field(default_factory=MFParams)
    weights: Mapping[str, Mapping[str, float]] = field(default_factory=lambda: DEFAULT_WEIGHTS)
    store: Store | None = None
    salt: str = "page-composer"
    now: float = field(default_factory=time.time)
    model_version: str = ""  # the trained models' version (retrieval.versions)

    def with_models(
        self,
        version: str,
        mf: MFSource,
        popular: PopularitySource,
        weights: Mapping[str, Mapping[str, float]],
    ) -> Retriever:
        """This retriever with another model version's MF, popularity and weights (the
        catalog, vectors and store are shared): what a serving process swaps in."""
        return replace(self, mf=mf, popular=popular, weights=weights, model_version=version)

    def vectors(self) -> VectorSource:
        """The vector source, for the tools that need it (evaluation, benchmarks)."""
        if self.vector is None:
            raise NotBuiltError("this retriever has no vector index; run `composer setup`")
        return self.vector

    # -- shopper context ------------------------------------------------------------------

    def context_for(self, request: RetrievalRequest) -> ShopperContext:
        """History from the event store (known shopper) or the session's recent items."""
        history: list[HistoryItem] = []
        needs_fold_in = True
        if request.shopper_id is not None and self.store is not None:
            events = self.store.events_for(request.shopper_id)
            # A history holds few distinct (kind, rating) pairs and hundreds of events.
            weights: dict[tuple[EventKind, float | None], float] = {}
            history = []
            for e in events:
                w = weights.get((e.kind, e.value))
                if w is None:
                    w = weights[e.kind, e.value] = event_weight(e.kind, e.value, self.mf_params)
                bought = e.kind is EventKind.PURCHASE or e.kind is EventKind.RATING
                history.append(HistoryItem(e.product_id, w, e.timestamp, bought))
            watermark = self.mf.model.trained_through_event if self.mf else 0
            known = self.mf is not None and request.shopper_id in self.mf.model.user_index
            needs_fold_in = not known or any(e.event_id > watermark for e in events)
        now = self.now
        for pid in request.recent_product_ids:
            history.append(
                HistoryItem(pid, event_weight(EventKind.VIEW, None, self.mf_params), now, False)
            )
        return ShopperContext(
            request.shopper_id, tuple(history), request.query or None, needs_fold_in
        )

    # -- retrieval ------------------------------------------------------------------------

    def retrieve(self, request: RetrievalRequest) -> CandidateSet:
        t0 = time.perf_counter()
        ctx = self.context_for(request)
        timings = {"context": (time.perf_counter() - t0) * 1000}
        return self.retrieve_for(ctx, request, timings)

    def filter_for(self, ctx: ShopperContext, request: RetrievalRequest) -> CandidateFilter:
        return CandidateFilter(
            min_price=request.min_price,
            max_price=request.max_price,
            categories=request.categories,
            in_stock_only=request.in_stock_only,
            exclude_ids=ctx.purchased_ids() if request.exclude_purchased else frozenset(),
        )

    def source_results(
        self,
        ctx: ShopperContext,
        f: CandidateFilter,
        timings: dict[str, float],
        missing: dict[str, str] | None = None,
    ) -> list[SourceResult]:
        """Each source's candidates. A source other than popularity that fails (the vector
        index on a Chroma server that went away) gives none, and ``missing`` says why: the
        shopper still gets a page, from the sources that answered."""
        pool = self.fusion.pool
        results = []
        for name, source in (("mf", self.mf), ("vector", self.vector), ("popular", self.popular)):
            if source is None:
                continue
            t = time.perf_counter()
            try:
                result = source.candidates(ctx, pool, f)
            except Exception as exc:
                if source is self.popular:  # in memory: failing here is a bug, not an outage
                    raise
                log.warning("retrieval source failed", exc_info=True, extra={"source": name})
                result = SourceResult.empty(name, Provenance(name))
                if missing is not None:
                    missing[name] = f"{type(exc).__name__}: {exc}"
            timings[name] = (time.perf_counter() - t) * 1000
            for stage, ms in result.stages_ms.items():
                timings[f"{name}.{stage}"] = ms  # part of timings[name], shown apart
            results.append(result)
        return results

    def weights_for(self, ctx: ShopperContext) -> Mapping[str, float]:
        bucket = context_bucket(ctx)
        return self.weights.get(bucket, DEFAULT_WEIGHTS[bucket])

    def fuse(
        self,
        ctx: ShopperContext,
        results: list[SourceResult],
        weights: Mapping[str, float] | None = None,
    ) -> list[Fused]:
        if weights is None:
            weights = self.weights_for(ctx)
        return fuse(results, weights, self.fusion.method, self.fusion.rrf_k)

    def retrieve_for(
        self,
        ctx: ShopperContext,
        request: RetrievalRequest,
        timings: dict[str, float] | None = None,
        results: list[SourceResult] | None = None,
    ) -> CandidateSet:
        """Retrieval for a prepared context; ``results`` lets evaluation reuse source output."""
        timings = timings if timings is not None else {}
        f = self.filter_for(ctx, request)
        missing: dict[str, str] = {}
        if results is None:
            results = self.source_results(ctx, f, timings, missing)
        t = time.perf_counter()
        ranking: Iterable[Fused] = fused_in_order(
            self.contributions(results), self.weights_for(ctx)
        )
        if request.shuffle_seed is not None:
            pool = list(ranking)
            random.Random(request.shuffle_seed).shuffle(pool)
            ranking = pool
        timings["fusion"] = (time.perf_counter() - t) * 1000

        t = time.perf_counter()
        # MMR looks a few times deeper than k; deeper adds cost without changing the picks.
        head = self._dedup(ranking, ctx, limit=max(request.k * 3, request.k))
        strength = self.fusion.diversity if request.diversity is None else request.diversity
        picked = self._diversify(head, request.k, strength)
        timings["diversity"] = (time.perf_counter() - t) * 1000

        t = time.perf_counter()
        provenance = {r.name: r.provenance for r in results}
        profile = build_profile(ctx, self.catalog, self.salt, self.now, known=not ctx.needs_fold_in)
        products = [self.catalog.products[self.catalog.index[c.product_id]] for c in picked]
        themes = group_into_themes(
            products,
            max_themes=request.max_themes,
            preferred=profile.top_categories,
            tree=self.catalog.category_tree,
        )
        theme_of = {pid: th.name for th in themes for pid in th.product_ids}
        explain = self._explainer(ctx)
        candidates = tuple(
            Candidate(
                product_id=c.product_id,
                score=round(c.score, 6),
                provenance=tuple(provenance[s] for s in c.hits),
                sources=c.hits,
                reason=explain(c),
                theme=theme_of.get(c.product_id),
            )
            for c in picked
        )
        timings["explain"] = (time.perf_counter() - t) * 1000
        return CandidateSet(
            candidates, tuple(themes), profile, ctx.query, timings, missing, self.model_version
        )

    def contributions(self, results: list[SourceResult]) -> Contributions:
        return contributions(results, self.fusion.method, self.fusion.rrf_k)

    def fused_ids(
        self, ctx: ShopperContext, c: Contributions, weights: Mapping[str, float], k: int
    ) -> list[str]:
        """Fusion and de-duplication only: the cheap ranking that weight tuning scores."""
        seen = self._purchased_keys(ctx)
        out: list[str] = []
        for i in ranked_positions(c.scores(weights)):
            key = self.catalog.dedup_keys[self.catalog.index[c.ids[i]]]
            if key not in seen:
                seen.add(key)
                out.append(c.ids[i])
                if len(out) == k:
                    break
        return out

    def _purchased_keys(self, ctx: ShopperContext) -> set[str]:
        return {
            self.catalog.dedup_keys[self.catalog.index[pid]]
            for pid in ctx.purchased_ids()
            if pid in self.catalog.index
        }

    def _dedup(self, fused: Iterable[Fused], ctx: ShopperContext, limit: int) -> list[Fused]:
        """The first ``limit`` of ``fused`` that are neither bought nor a copy of an earlier one."""
        seen = self._purchased_keys(ctx)
        keys, index = self.catalog.dedup_keys, self.catalog.index
        out: list[Fused] = []
        for c in fused:
            key = keys[index[c.product_id]]
            if key not in seen:
                seen.add(key)
                out.append(c)
                if len(out) == limit:
                    break
        return out

    def _diversify(self, head: list[Fused], k: int, strength: float) -> list[Fused]:
        if strength <= 0 or self.catalog.embeddings is None or len(head) <= 1:
            return head[:k]
        emb = self.catalog.embeddings[[self.catalog.index[c.product_id] for c in head]]
        order = mmr([c.score for c in head], emb, k, strength)
        return [head[i] for i in order]

    def _explainer(self, ctx: ShopperContext) -> Callable[[Fused], Reason]:
        """Why each candidate is here, against this shopper's recent history (gathered once
        per request, not once per candidate)."""
        recent = ctx.history_ids()[-50:]
        affinity = self.mf.affinity(recent) if self.mf is not None else None
        closest = self._closest_history(recent)

        def reason(c: Fused) -> Reason:
            # The source that ranked the product best explains it.
            best = min(c.hits, key=lambda s: c.hits[s].rank)
            if best == "mf" and affinity is not None:
                return Reason("similar_to_history", tuple(affinity(c.product_id)[:2]))
            if best == "vector":
                if ctx.query:
                    return Reason("matches_query", query=ctx.query)
                return Reason("matches_profile", tuple(closest(c.product_id)))
            rank = self.popular.rank_of.get(c.product_id)
            return Reason("popular", popularity_rank=rank)

        return reason

    def _closest_history(self, recent: list[str]) -> Callable[[str], list[str]]:
        """The two history items whose embeddings are nearest a product's."""
        emb = self.catalog.embeddings
        hist = [self.catalog.index[p] for p in recent if p in self.catalog.index]
        if emb is None or not hist:
            return lambda product_id: []
        hist_emb = emb[hist]

        def closest(product_id: str) -> list[str]:
            sims = hist_emb @ emb[self.catalog.index[product_id]]
            return [self.catalog.ids[hist[i]] for i in np.argsort(-sims)[:2]]

        return closest
