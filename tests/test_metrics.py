"""Ranking metrics against hand-computed values."""

import math

import pytest

from retrieval.metrics import catalog_coverage, hit_rate_at_k, ndcg_at_k, recall_at_k


def test_recall_divides_by_the_smaller_of_k_and_relevant() -> None:
    ranked = ["a", "b", "c", "d"]
    assert recall_at_k(ranked, {"b", "d", "z"}, 4) == pytest.approx(2 / 3)
    # Five relevant items, k = 2, both slots hit: a perfect top-2 scores 1.
    assert recall_at_k(ranked, {"a", "b", "x", "y", "z"}, 2) == 1.0
    assert recall_at_k(ranked, set(), 4) == 0.0


def test_ndcg_by_hand() -> None:
    # Hits at ranks 1 and 3 of 3; two relevant items.
    dcg = 1 / math.log2(2) + 1 / math.log2(4)
    idcg = 1 / math.log2(2) + 1 / math.log2(3)
    assert ndcg_at_k(["a", "x", "b"], {"a", "b"}, 3) == pytest.approx(dcg / idcg)
    assert ndcg_at_k(["a", "b"], {"a", "b"}, 3) == pytest.approx(1.0)
    assert ndcg_at_k(["x", "y"], {"a"}, 2) == 0.0
    # Only the top k count.
    assert ndcg_at_k(["x", "a"], {"a"}, 1) == 0.0


def test_hit_rate_and_coverage() -> None:
    assert hit_rate_at_k(["x", "a"], {"a"}, 2) == 1.0
    assert hit_rate_at_k(["x", "a"], {"a"}, 1) == 0.0
    assert catalog_coverage([["a", "b"], ["b", "c"]], 10, 2) == pytest.approx(0.3)
    assert catalog_coverage([["a", "b", "c"]], 10, 1) == pytest.approx(0.1)
