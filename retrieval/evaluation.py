"""Offline retrieval evaluation on a temporal hold-out, and fusion-weight tuning.

Two splits. Per shopper: each shopper's latest interactions are held out, earlier ones
train; every shopper is tested, but training sees other shoppers' events that happened
after a tested shopper's held-out ones. Global: one cut-off date for everyone, training is
only what happened before it, as a model trained that day would have seen. Weights are
tuned on a validation split carved from the training part only, never on the test split.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from retrieval.catalog_view import CatalogView
from retrieval.context import HistoryItem, ShopperContext
from retrieval.embeddings import Encoder
from retrieval.fusion import Contributions
from retrieval.metrics import catalog_coverage, ndcg_at_k, recall_at_k
from retrieval.mf import EventLike, MFModel, event_weight, recency_popularity
from retrieval.params import FusionParams, MFParams
from retrieval.records import EventKind
from retrieval.retriever import DEFAULT_WEIGHTS, RetrievalRequest, Retriever
from retrieval.sources import MFSource, PopularitySource, VectorSource
from retrieval.vector_index import VectorSearch

METHODS = ("popularity", "mf", "vector", "hybrid")
K_MAX = 20
COLD_START_ITEMS = 3
QUERY_TEMPLATES = ("{g}", "{g} films", "something {g} to watch", "best {g} picks")

Progress = Callable[[int], None]


@dataclass(frozen=True)
class Split:
    train: list[EventLike]
    test: dict[str, set[str]]  # shopper -> held-out products not seen in training


def temporal_split(
    events: Sequence[EventLike], fraction: float = 0.2, min_events: int = 5
) -> Split:
    """Hold out each shopper's latest ``fraction`` of events (at least one)."""
    by_shopper: dict[str, list[EventLike]] = defaultdict(list)
    for e in events:
        by_shopper[e.shopper_id].append(e)
    train: list[EventLike] = []
    test: dict[str, set[str]] = {}
    for sid in sorted(by_shopper):
        evs = sorted(by_shopper[sid], key=lambda e: e.timestamp)
        if len(evs) < min_events:
            train.extend(evs)
            continue
        n_test = max(1, round(len(evs) * fraction))
        head, tail = evs[:-n_test], evs[-n_test:]
        train.extend(head)
        seen = {e.product_id for e in head}
        held = {e.product_id for e in tail} - seen
        if held:
            test[sid] = held
    return Split(train, test)


def global_split(
    events: Sequence[EventLike], fraction: float = 0.2, min_events: int = 1
) -> tuple[Split, float]:
    """One cut-off for everyone: the latest ``fraction`` of all events (by time) is held
    out. Tested are shoppers with at least ``min_events`` events before the cut and a
    product after it they had not seen before. Returns the split and the cut-off time."""
    ordered = sorted(events, key=lambda e: e.timestamp)
    if not ordered:
        return Split([], {}), 0.0
    cut = ordered[min(len(ordered) - 1, int(len(ordered) * (1 - fraction)))].timestamp
    train = [e for e in ordered if e.timestamp < cut]
    before: dict[str, set[str]] = defaultdict(set)
    counts: Counter[str] = Counter()
    for e in train:
        before[e.shopper_id].add(e.product_id)
        counts[e.shopper_id] += 1
    after: dict[str, set[str]] = defaultdict(set)
    for e in ordered:
        if e.timestamp >= cut and counts[e.shopper_id] >= min_events:
            after[e.shopper_id].add(e.product_id)
    test = {sid: held for sid, products in after.items() if (held := products - before[sid])}
    return Split(train, test), float(cut)


@dataclass
class EvalWorld:
    """The parts of retrieval that do not depend on the events: catalog and vectors."""

    catalog: CatalogView
    vector_index: VectorSearch
    encoder: Encoder | None
    mf_params: MFParams
    fusion: FusionParams

    def retriever(
        self,
        train: Sequence[EventLike],
        weights: Mapping[str, Mapping[str, float]] = DEFAULT_WEIGHTS,
    ) -> Retriever:
        model = MFModel.train(train, self.catalog.ids, self.mf_params)
        popularity = recency_popularity(train, self.catalog.ids, self.mf_params)
        return Retriever(
            catalog=self.catalog,
            mf=MFSource(model, self.catalog),
            vector=VectorSource(self.vector_index, self.encoder, self.catalog),
            popular=PopularitySource(popularity, self.catalog),
            fusion=self.fusion,
            mf_params=self.mf_params,
            weights=weights,
        )


@dataclass(frozen=True)
class Case:
    ctx: ShopperContext
    relevant: set[str]


def _history(events: Sequence[EventLike], params: MFParams) -> tuple[HistoryItem, ...]:
    return tuple(
        HistoryItem(
            e.product_id,
            event_weight(e.kind, e.value, params),
            e.timestamp,
            e.kind in (EventKind.PURCHASE, EventKind.RATING),
        )
        for e in sorted(events, key=lambda e: e.timestamp)
    )


def _train_by_shopper(split: Split) -> dict[str, list[EventLike]]:
    out: dict[str, list[EventLike]] = defaultdict(list)
    for e in split.train:
        out[e.shopper_id].append(e)
    return out


def _seen_filter_request() -> RetrievalRequest:
    # Stock is synthetic; an out-of-stock held-out item must still count as a hit.
    return RetrievalRequest(k=K_MAX, in_stock_only=False, exclude_purchased=True, max_themes=1)


def warm_cases(split: Split, params: MFParams, shoppers: Sequence[str]) -> list[Case]:
    train = _train_by_shopper(split)
    return [
        Case(ShopperContext(sid, _history(train[sid], params)), split.test[sid])
        for sid in shoppers
        if sid in train
    ]


def cold_cases(
    split: Split, params: MFParams, shoppers: Sequence[str]
) -> tuple[list[Case], list[EventLike]]:
    """Shoppers cut to their first few events; returns the cases and the training events
    without those shoppers' later events, so MF must fold them in."""
    train = _train_by_shopper(split)
    cold = set(shoppers)
    cases, events = [], []
    for sid, evs in train.items():
        evs = sorted(evs, key=lambda e: e.timestamp)
        if sid in cold:
            first = evs[:COLD_START_ITEMS]
            events.extend(first)
            cases.append(
                Case(
                    ShopperContext(sid, _history(first, params), needs_fold_in=True),
                    split.test[sid],
                )
            )
        else:
            events.extend(evs)
    return cases, events


def query_cases(
    split: Split, params: MFParams, catalog: CatalogView, shoppers: Sequence[str]
) -> list[Case]:
    """A genre-naming query per shopper (the genre of their held-out items); relevant = the
    shopper's held-out products of that genre. (Any unseen product of the genre would
    measure genre precision, which a query names outright: 0.99 for every method.)"""
    train = _train_by_shopper(split)
    cases = []
    for n, sid in enumerate(shoppers):
        if sid not in train:
            continue
        genres = Counter(
            c
            for pid in split.test[sid]
            if pid in catalog.index
            for c in catalog.products[catalog.index[pid]].categories
        )
        if not genres:
            continue
        genre = sorted(genres.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
        relevant = {
            pid
            for pid in split.test[sid]
            if pid in catalog.index and genre in catalog.products[catalog.index[pid]].categories
        }
        query = QUERY_TEMPLATES[n % len(QUERY_TEMPLATES)].format(g=genre.lower())
        cases.append(Case(ShopperContext(sid, _history(train[sid], params), query), relevant))
    return cases


def rankings(
    retriever: Retriever, cases: Sequence[Case], progress: Progress | None = None
) -> dict[str, list[list[str]]]:
    """Top-K_MAX ids per method per case."""
    out: dict[str, list[list[str]]] = {m: [] for m in METHODS}
    request = _seen_filter_request()
    for case in cases:
        f = retriever.filter_for(case.ctx, request)
        results = retriever.source_results(case.ctx, f, {})
        by_name = {r.name: r for r in results}
        out["popularity"].append(by_name["popular"].ids[:K_MAX])
        out["mf"].append(by_name["mf"].ids[:K_MAX] if "mf" in by_name else [])
        out["vector"].append(by_name["vector"].ids[:K_MAX] if "vector" in by_name else [])
        hybrid = retriever.retrieve_for(case.ctx, request, results=results)
        out["hybrid"].append(hybrid.product_ids())
        if progress:
            progress(1)
    return out


def score(
    ranked: Mapping[str, list[list[str]]], cases: Sequence[Case], catalog_size: int
) -> dict[str, dict[str, float]]:
    table = {}
    for method, lists in ranked.items():
        rel = [c.relevant for c in cases]
        table[method] = {
            "recall@10": _mean(recall_at_k(r, s, 10) for r, s in zip(lists, rel, strict=True)),
            "recall@20": _mean(recall_at_k(r, s, 20) for r, s in zip(lists, rel, strict=True)),
            "ndcg@10": _mean(ndcg_at_k(r, s, 10) for r, s in zip(lists, rel, strict=True)),
            "coverage": round(catalog_coverage(lists, catalog_size, 10), 4),
            "users": len(cases),
        }
    return table


def _mean(values) -> float:
    vals = list(values)
    return round(float(np.mean(vals)), 4) if vals else 0.0


def sample(ids: Sequence[str], n: int, seed: int = 7) -> list[str]:
    if len(ids) <= n:
        return list(ids)
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(np.asarray(sorted(ids)), size=n, replace=False).tolist())


def evaluate(
    world: EvalWorld,
    events: Sequence[EventLike],
    weights: Mapping[str, Mapping[str, float]] = DEFAULT_WEIGHTS,
    max_users: int = 2000,
    slice_users: int = 300,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """The report of ``composer retrieval-eval``: the per-shopper split (full, cold-start and
    query slices) and the global cut-off split, with its cut-off time."""
    split = temporal_split(events)
    users = sample(list(split.test), max_users)
    retriever = world.retriever(split.train, weights)
    n = len(world.catalog)
    warm = warm_cases(split, world.mf_params, users)
    report: dict[str, Any] = {"methods": score(rankings(retriever, warm, progress), warm, n)}
    cold_users = sample(users, slice_users, seed=11)
    cases, cold_train = cold_cases(split, world.mf_params, cold_users)
    cold_retriever = world.retriever(cold_train, weights)
    report["cold_start"] = score(rankings(cold_retriever, cases, progress), cases, n)
    q_cases = query_cases(split, world.mf_params, world.catalog, sample(users, slice_users, 13))
    report["query"] = score(rankings(retriever, q_cases, progress), q_cases, n)
    # The same methods with one cut-off date for everyone: training sees nothing later.
    by_date, cut = global_split(events)
    dated = warm_cases(by_date, world.mf_params, sample(list(by_date.test), max_users, seed=17))
    dated_retriever = world.retriever(by_date.train, weights)
    report["global_time"] = score(rankings(dated_retriever, dated, progress), dated, n)
    report["global_time_cut"] = cut
    return report


WEIGHT_GRID = {
    "mf": (1.0,),
    "vector": (0.0, 0.1, 0.25, 0.5, 1.0, 2.0),
    "popular": (0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0),
}


def tune_weights(
    world: EvalWorld,
    events: Sequence[EventLike],
    users: int = 400,
    progress: Progress | None = None,
) -> dict[str, dict[str, float]]:
    """Grid-search source weights per context bucket on a validation split of the training
    events (the test split is never seen), maximising NDCG@10 of the fused list."""
    outer = temporal_split(events)
    inner = temporal_split(outer.train)  # validation = the latest part of training
    chosen = sample(list(inner.test), users, seed=3)
    warm_retriever = world.retriever(inner.train)
    cold, cold_train = cold_cases(inner, world.mf_params, sample(chosen, users // 2, seed=5))
    buckets = {
        "warm": (warm_retriever, warm_cases(inner, world.mf_params, chosen)),
        "cold": (world.retriever(cold_train), cold),
        "query": (
            warm_retriever,
            query_cases(inner, world.mf_params, world.catalog, sample(chosen, users // 2, seed=9)),
        ),
    }
    request = _seen_filter_request()
    tuned: dict[str, dict[str, float]] = {}
    for bucket, (retriever, cases) in buckets.items():
        cached: list[Contributions] = []
        for case in cases:
            f = retriever.filter_for(case.ctx, request)
            cached.append(retriever.contributions(retriever.source_results(case.ctx, f, {})))
            if progress:
                progress(1)
        best, best_score = dict(DEFAULT_WEIGHTS[bucket]), -1.0
        for mf_w, vec_w, pop_w in itertools.product(*WEIGHT_GRID.values()):
            w = {"mf": mf_w, "vector": vec_w, "popular": pop_w}
            s = _mean(
                ndcg_at_k(retriever.fused_ids(c.ctx, r, w, 10), c.relevant, 10)
                for c, r in zip(cases, cached, strict=True)
            )
            if s > best_score:
                best, best_score = w, s
        tuned[bucket] = best
    return tuned
