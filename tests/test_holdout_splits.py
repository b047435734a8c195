"""The splits every published retrieval and page figure rests on: what is held out, and that
nothing after a cut reaches training (MF, popularity, a shopper's history)."""

from __future__ import annotations

import random

import pytest
from conftest import BuiltShop

from composer.evaluation.holdout import build_holdout
from composer.evaluation.suite import SplitSpec
from retrieval.evaluation import cold_cases, global_split, query_cases, temporal_split
from retrieval.params import MFParams
from retrieval.records import EventKind
from retrieval.store import StoredEvent


def _events(shoppers: int = 30, per_shopper: int = 12, seed: int = 3) -> list[StoredEvent]:
    rng = random.Random(seed)
    out, n = [], 0
    for s in range(shoppers):
        start = rng.uniform(0, 1000)
        for k in range(rng.randint(2, per_shopper)):
            n += 1
            out.append(
                StoredEvent(
                    n,
                    f"s{s}",
                    f"p{rng.randint(0, 40)}",
                    EventKind.PURCHASE,
                    start + 10 * k + rng.random(),
                    None,
                )
            )
    rng.shuffle(out)
    return out


def test_per_shopper_split_holds_out_each_shoppers_latest_events() -> None:
    events = _events()
    split = temporal_split(events, fraction=0.25, min_events=5)
    train_by: dict[str, list[StoredEvent]] = {}
    for e in split.train:
        train_by.setdefault(e.shopper_id, []).append(e)
    for sid, held in split.test.items():
        mine = sorted((e for e in events if e.shopper_id == sid), key=lambda e: e.timestamp)
        assert len(mine) >= 5
        last_train = max(e.timestamp for e in train_by[sid])
        # Held out: products of the latest quarter that the shopper had not seen before.
        n_test = max(1, round(len(mine) * 0.25))
        assert held == {e.product_id for e in mine[-n_test:]} - {
            e.product_id for e in mine[:-n_test]
        }
        assert all(e.timestamp > last_train for e in mine[-n_test:])
    short = {e.shopper_id for e in events} - set(split.test)
    for sid in short:  # too few events or nothing new: all of it trains
        assert sum(e.shopper_id == sid for e in split.train) >= 1
    assert len(split.train) + sum(1 for e in events if e not in split.train) == len(events)


def test_global_split_trains_on_nothing_after_its_cut_off() -> None:
    events = _events()
    split, cut = global_split(events, fraction=0.2)
    assert split.train and split.test
    assert max(e.timestamp for e in split.train) < cut
    later = [e for e in events if e.timestamp >= cut]
    assert 0.15 <= len(later) / len(events) <= 0.25
    for sid, held in split.test.items():
        before = {e.product_id for e in split.train if e.shopper_id == sid}
        after = {e.product_id for e in later if e.shopper_id == sid}
        assert before and held == after - before


def test_the_cold_slice_keeps_only_the_first_events_and_drops_the_rest_from_training() -> None:
    events = _events()
    split = temporal_split(events, fraction=0.25, min_events=5)
    cold = sorted(split.test)[:5]
    cases, train = cold_cases(split, MFParams(), cold)
    assert {c.ctx.shopper_id for c in cases} == set(cold)
    for case in cases:
        mine = sorted(
            (e for e in split.train if e.shopper_id == case.ctx.shopper_id),
            key=lambda e: e.timestamp,
        )
        kept = [e for e in train if e.shopper_id == case.ctx.shopper_id]
        assert [e.event_id for e in sorted(kept, key=lambda e: e.timestamp)] == [
            e.event_id for e in mine[:3]
        ]
        assert case.ctx.needs_fold_in and len(case.ctx.history) == len(kept)


def test_a_query_case_counts_only_the_shoppers_own_held_out_items_of_the_genre(
    ml_shop: BuiltShop,
) -> None:
    catalog = ml_shop.retriever.catalog
    events = ml_shop.store.all_events()
    split = temporal_split(events)
    cases = query_cases(split, MFParams(), catalog, sorted(split.test)[:40])
    assert cases
    for case in cases:
        held = split.test[case.ctx.shopper_id]
        assert case.relevant and case.relevant <= held
        genre = case.ctx.query
        assert genre is not None
        for pid in case.relevant:
            categories = catalog.products[catalog.index[pid]].categories
            assert any(c.lower() in genre for c in categories)


@pytest.mark.slow
def test_no_event_after_the_cut_reaches_mf_popularity_or_history(ml_shop: BuiltShop) -> None:
    events = ml_shop.store.all_events()
    holdout = build_holdout(ml_shop.retriever, events, SplitSpec(fraction=0.2, min_events=5))
    split = temporal_split(events, 0.2, 5)
    trained = {e.event_id for e in split.train}
    retriever = holdout.retriever
    # Histories answer with training events only.
    for sid in sorted(holdout.relevant)[:50]:
        seen = retriever.store.events_for(sid)
        assert seen and all(e.event_id in trained for e in seen)
        held = holdout.relevant[sid]
        assert not held & {e.product_id for e in seen}
    # MF and popularity were fitted on the training events: "now" is the last of them, and
    # a product bought only after the cut has no popularity.
    assert retriever.now == max(e.timestamp for e in split.train)
    train_products = {e.product_id for e in split.train}
    only_later = {e.product_id for e in events if e.event_id not in trained} - train_products
    pop = retriever.popular
    assert pop is not None
    for pid in only_later:
        assert pop.popularity[retriever.catalog.index[pid]] == 0
