"""Retrieval on the real MovieLens-100K shop: real SQLite, Chroma and embedding model."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pytest
from conftest import BuiltShop

from retrieval import (
    CandidateFilter,
    EventKind,
    ExactSearch,
    Interaction,
    Provenance,
    RetrievalRequest,
    Store,
    load_retriever,
)
from retrieval.build import open_vector_index
from retrieval.vector_index import ChromaIndex, VectorFilter


def test_known_shopper_gets_mf_led_candidates_with_reasons(ml_shop: BuiltShop) -> None:
    result = ml_shop.retriever.retrieve(RetrievalRequest(shopper_id="196", k=20))
    assert len(result.candidates) == 20
    assert len(set(result.product_ids())) == 20
    assert any(Provenance.MF in c.provenance for c in result.candidates)
    history = {e.product_id for e in ml_shop.store.events_for("196")}
    for c in result.candidates:
        assert c.sources and c.reason.code in {"similar_to_history", "matches_profile", "popular"}
        if c.reason.code == "similar_to_history":
            assert c.reason.product_ids and set(c.reason.product_ids) <= history
    assert result.profile.pseudonym.startswith("s_") and "196" not in result.profile.pseudonym
    assert result.profile.known and result.profile.top_categories
    # Every candidate is in exactly one theme, and themes are what the page will use.
    placed = [pid for t in result.themes for pid in t.product_ids]
    assert len(placed) == len(set(placed))
    assert set(placed) <= set(result.product_ids())


def test_no_purchased_item_is_recommended_again(ml_shop: BuiltShop) -> None:
    for sid in ("1", "13", "405", "655"):  # heavy buyers: hundreds of purchases each
        bought = {e.product_id for e in ml_shop.store.events_for(sid)}
        result = ml_shop.retriever.retrieve(RetrievalRequest(shopper_id=sid, k=50))
        assert not bought & set(result.product_ids())
        # The same title under another id (re-listed movie) counts as bought too.
        keys = {
            ml_shop.retriever.catalog.dedup_keys[ml_shop.retriever.catalog.index[p]] for p in bought
        }
        assert not keys & {
            ml_shop.retriever.catalog.dedup_keys[ml_shop.retriever.catalog.index[p]]
            for p in result.product_ids()
        }


@pytest.mark.parametrize(
    "request_kwargs",
    [
        {"min_price": 10.0, "max_price": 15.0},
        {"categories": ("Horror",)},
        {"categories": ("Western", "War"), "max_price": 20.0},
        {"query": "space adventure", "min_price": 25.0},
    ],
)
def test_filters_are_honoured_by_every_source(ml_shop: BuiltShop, request_kwargs: dict) -> None:
    result = ml_shop.retriever.retrieve(RetrievalRequest(shopper_id="42", k=20, **request_kwargs))
    assert result.candidates, "filters this loose must leave candidates"
    catalog = ml_shop.retriever.catalog
    for pid in result.product_ids():
        p = catalog.products[catalog.index[pid]]
        assert p.in_stock  # in-stock only is the default
        if "min_price" in request_kwargs:
            assert p.price >= request_kwargs["min_price"]
        if "max_price" in request_kwargs:
            assert p.price <= request_kwargs["max_price"]
        if "categories" in request_kwargs:
            assert set(p.categories) & set(request_kwargs["categories"])


def test_out_of_stock_items_appear_only_when_asked(ml_shop: BuiltShop) -> None:
    catalog = ml_shop.retriever.catalog
    seen_out = set()
    for sid in map(str, range(1, 40)):
        r = ml_shop.retriever.retrieve(RetrievalRequest(shopper_id=sid, k=30, in_stock_only=False))
        seen_out |= {p for p in r.product_ids() if not catalog.products[catalog.index[p]].in_stock}
    assert seen_out, "about 8% of the catalog is out of stock; some must surface when allowed"


def test_query_pulls_matching_products(ml_shop: BuiltShop) -> None:
    result = ml_shop.retriever.retrieve(RetrievalRequest(shopper_id="42", query="horror", k=10))
    catalog = ml_shop.retriever.catalog
    horror = [
        p for p in result.product_ids() if "Horror" in catalog.products[catalog.index[p]].categories
    ]
    assert len(horror) >= 6
    assert any(
        c.reason.code == "matches_query" and c.reason.query == "horror" for c in result.candidates
    )


def test_fold_in_changes_the_ranking_after_new_events(ml_shop: BuiltShop) -> None:
    sid = "fold-in-shopper"
    retriever = ml_shop.retriever
    cold = retriever.retrieve(RetrievalRequest(shopper_id=sid, k=10))
    assert all(set(c.provenance) == {Provenance.POPULAR} for c in cold.candidates)
    assert not cold.profile.known

    children = ["1", "71", "95", "99", "420", "432"]  # Toy Story, Lion King, Aladdin, ...
    now = time.time()
    ml_shop.store.add_events(
        [Interaction(sid, pid, EventKind.PURCHASE, now + i) for i, pid in enumerate(children)]
    )
    warm = retriever.retrieve(RetrievalRequest(shopper_id=sid, k=10))
    assert warm.product_ids() != cold.product_ids()
    assert any(Provenance.FOLD_IN in c.provenance for c in warm.candidates)
    assert not set(children) & set(warm.product_ids())
    catalog = retriever.catalog
    kids = sum(
        "Children's" in catalog.products[catalog.index[p]].categories
        or "Animation" in catalog.products[catalog.index[p]].categories
        for p in warm.product_ids()
    )
    assert kids >= 4, "six children's films bought: the page should lean that way"


def test_known_shopper_with_a_new_event_is_folded_in(ml_shop: BuiltShop) -> None:
    retriever = ml_shop.retriever
    before = retriever.retrieve(RetrievalRequest(shopper_id="7", k=10, diversity=0.0))
    assert all(Provenance.FOLD_IN not in c.provenance for c in before.candidates)
    ml_shop.store.add_events([Interaction("7", "50", EventKind.VIEW, time.time())])
    after = retriever.retrieve(RetrievalRequest(shopper_id="7", k=10, diversity=0.0))
    assert any(Provenance.FOLD_IN in c.provenance for c in after.candidates)


def test_anonymous_session_uses_recent_items(ml_shop: BuiltShop) -> None:
    result = ml_shop.retriever.retrieve(
        RetrievalRequest(recent_product_ids=("181", "172", "50"), k=10)  # Star Wars trilogy
    )
    assert result.profile.pseudonym == "anonymous"
    assert any(
        Provenance.FOLD_IN in c.provenance or Provenance.VECTOR in c.provenance
        for c in result.candidates
    )


def test_diversity_spreads_categories(ml_shop: BuiltShop) -> None:
    def distinct_categories(strength: float) -> int:
        r = ml_shop.retriever.retrieve(
            RetrievalRequest(shopper_id="10", query="romantic comedy", k=12, diversity=strength)
        )
        cat = ml_shop.retriever.catalog
        return len({c for p in r.product_ids() for c in cat.products[cat.index[p]].categories})

    assert distinct_categories(0.8) > distinct_categories(0.0)


# -- per-shopper caches: a new event is never missed ----------------------------------------


def test_history_cache_takes_in_new_events_from_any_writer(ml_shop: BuiltShop) -> None:
    store = ml_shop.store
    sid = "history-cache-shopper"
    now = time.time()
    views = [Interaction(sid, pid, EventKind.VIEW, now + i) for i, pid in enumerate("123")]
    store.add_events(views)
    first = store.events_for(sid)
    assert [e.product_id for e in first] == ["1", "2", "3"]
    assert store.events_for(sid) == first  # served from the cache, same answer

    # Another worker process writes through its own store: this one still sees the event.
    # Its timestamp is older than the cached ones, so it sorts in the middle.
    other = Store(store.url, history_cache=0)
    try:
        other.add_events([Interaction(sid, "50", EventKind.PURCHASE, now + 0.5)])
        uncached = other.events_for(sid)
    finally:
        other.close()
    assert [e.product_id for e in store.events_for(sid)] == ["1", "50", "2", "3"]
    assert store.events_for(sid) == uncached


def test_cached_history_and_fold_in_give_the_same_candidates_as_a_cold_read(
    ml_shop: BuiltShop,
) -> None:
    """Warm caches (history, fold-in vector) change nothing but speed, and an event makes the
    next retrieval fold in the longer history rather than reuse the cached vector."""
    retriever = ml_shop.retriever
    sid = "fold-in-cache-shopper"
    now = time.time()
    ml_shop.store.add_events(
        [Interaction(sid, pid, EventKind.CART, now + i) for i, pid in enumerate(["1", "71", "95"])]
    )
    request = RetrievalRequest(shopper_id=sid, k=12)
    cold = retriever.retrieve(request)
    warm = retriever.retrieve(request)
    assert warm.candidates == cold.candidates and warm.profile == cold.profile
    assert any(Provenance.FOLD_IN in c.provenance for c in warm.candidates)

    ml_shop.store.add_events([Interaction(sid, "181", EventKind.PURCHASE, now + 10)])
    after = retriever.retrieve(request)
    ctx = retriever.context_for(request)
    assert [h.product_id for h in ctx.history] == ["1", "71", "95", "181"]
    assert retriever.mf is not None
    vec, _ = retriever.mf.user_vector(ctx)
    assert retriever.mf.user_vector(ctx)[0] is vec  # the same history reuses the solve
    fresh = retriever.mf.model.fold_in([(h.product_id, h.weight) for h in ctx.history])
    assert vec is not None and fresh is not None and np.array_equal(vec, fresh)
    assert "181" not in after.product_ids()  # bought: the new event counts
    assert after.candidates != cold.candidates


def test_exact_search_serves_small_catalogs_and_agrees_with_chroma(ml_shop: BuiltShop) -> None:
    """Serving searches the 1,682 MovieLens vectors in memory; Chroma, the index of record,
    must find the same neighbours (its HNSW is approximate, so allow one miss in twenty)."""
    config = ml_shop.settings.retrieval_config()
    assert isinstance(ml_shop.retriever.vector.index, ExactSearch)
    chroma = open_vector_index(config)
    exact = ml_shop.retriever.vector.index
    embeddings = ml_shop.retriever.catalog.embeddings
    assert embeddings is not None
    queries = [embeddings[i] for i in (0, 49, 171, 1000)]
    queries.append(ml_shop.retriever.vector.encoder.encode_one("space adventure with robots"))
    comedy = VectorFilter(max_price=15.0, categories=("Comedy",), in_stock_only=True)
    catalog = ml_shop.retriever.catalog
    for query in queries:
        for where in (None, comedy):
            ids, scores = exact.query(query, 20, where)
            ref_ids, ref_scores = chroma.query(query, 20, where)
            assert len(ids) == 20 and list(scores) == sorted(scores, reverse=True)
            assert len(set(ids) & set(ref_ids)) >= 19
            ref = dict(zip(ref_ids, ref_scores, strict=True))
            for pid, score in zip(ids, scores, strict=True):
                if pid in ref:
                    assert abs(ref[pid] - score) < 1e-4
            if where is not None:
                view = CandidateFilter(max_price=15.0, categories=("Comedy",))
                assert all(catalog.passes(pid, view) for pid in ids)

    # Above the threshold serving queries Chroma itself.
    big = replace(config, exact_search_max_products=len(catalog) - 1)
    assert isinstance(load_retriever(big, ml_shop.store).vector.index, ChromaIndex)
