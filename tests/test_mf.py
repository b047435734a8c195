"""MF training, persistence and fold-in on synthetic data with a known answer."""

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from retrieval.mf import MFModel, recency_popularity
from retrieval.params import MFParams
from retrieval.records import EventKind, Interaction

PARAMS = MFParams(factors=4, iterations=20, regularization=0.1, alpha=5.0)


def two_clusters() -> tuple[list[Interaction], list[str]]:
    """Users 0-19 buy items a0-a9, users 20-39 buy b0-b9; each skips one item of its block."""
    items = [f"a{i}" for i in range(10)] + [f"b{i}" for i in range(10)]
    events = []
    for u in range(40):
        block = "a" if u < 20 else "b"
        for i in range(10):
            if i != u % 10:
                events.append(Interaction(f"u{u}", f"{block}{i}", EventKind.PURCHASE, float(i)))
    return events, items


def test_mf_ranks_the_held_out_item_of_the_own_block_first() -> None:
    events, items = two_clusters()
    model = MFModel.train(events, items, PARAMS)
    for u in (3, 27):
        scores = model.scores(model.user_vector(f"u{u}"))
        block = "a" if u < 20 else "b"
        seen = {e.product_id for e in events if e.shopper_id == f"u{u}"}
        unseen = [i for i in np.argsort(-scores) if items[i] not in seen]
        assert items[unseen[0]] == f"{block}{u % 10}"


def test_fold_in_matches_implicits_own_user_solve() -> None:
    from implicit.cpu.als import AlternatingLeastSquares

    events, items = two_clusters()
    model = MFModel.train(events, items, PARAMS)
    history = [("a1", 4.0), ("a2", 2.0), ("a5", 4.0)]
    ours = model.fold_in(history)

    als = AlternatingLeastSquares(
        factors=PARAMS.factors,
        regularization=PARAMS.regularization,
        alpha=PARAMS.alpha,
        use_cg=False,
    )
    als.item_factors = model.item_factors
    als.user_factors = model.user_factors
    row = sp.csr_matrix(
        (np.asarray([4.0, 2.0, 4.0], dtype=np.float32), ([0, 0, 0], [1, 2, 5])),
        shape=(1, len(items)),
    )
    theirs = np.asarray(als.recalculate_user(0, row)).ravel()
    assert ours == pytest.approx(theirs, rel=1e-3, abs=1e-4)


def test_fold_in_of_unknown_items_is_none_and_known_items_point_to_their_block() -> None:
    events, items = two_clusters()
    model = MFModel.train(events, items, PARAMS)
    assert model.fold_in([("nope", 1.0)]) is None
    vec = model.fold_in([("b1", 4.0), ("b2", 4.0)])
    top = np.argsort(-model.scores(vec))[:5]
    assert all(items[i].startswith("b") for i in top)


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    events, items = two_clusters()
    model = MFModel.train(events, items, PARAMS, trained_through_event=42)
    model.save(tmp_path / "mf")
    loaded = MFModel.load(tmp_path / "mf")
    assert loaded.trained_through_event == 42
    assert loaded.product_ids == items
    np.testing.assert_allclose(
        loaded.scores(loaded.user_vector("u1")), model.scores(model.user_vector("u1"))
    )


def test_recency_popularity_prefers_recent_events() -> None:
    day = 86400.0
    events = [
        Interaction("u1", "old", EventKind.PURCHASE, 0.0),
        Interaction("u2", "old", EventKind.PURCHASE, 0.0),
        Interaction("u3", "new", EventKind.PURCHASE, 200 * day),
    ]
    pop = recency_popularity(events, ["old", "new"], MFParams(popularity_half_life_days=30))
    assert pop[1] > pop[0]  # one fresh purchase beats two from 200 days (6+ half-lives) ago
    assert pop[0] == pytest.approx(2 * 4.0 * 0.5 ** (200 / 30), rel=1e-4)
