"""Fusion, MMR and theme grouping on small hand-made inputs."""

import numpy as np
import pytest

from retrieval.candidates import Provenance
from retrieval.diversity import mmr
from retrieval.fusion import fuse
from retrieval.records import Product
from retrieval.sources import SourceResult
from retrieval.themes import TOP_PICKS, group_into_themes


def _res(name: str, ids: list[str], scores: list[float]) -> SourceResult:
    return SourceResult(name, Provenance.MF, ids, np.asarray(scores, dtype=np.float32))


def test_rrf_by_hand() -> None:
    a = _res("mf", ["x", "y"], [0.9, 0.8])
    b = _res("vector", ["y", "z"], [0.7, 0.1])
    fused = fuse([a, b], {"mf": 1.0, "vector": 2.0}, "rrf", rrf_k=1.0)
    scores = {f.product_id: f.score for f in fused}
    assert scores["x"] == pytest.approx(1 / 2)
    assert scores["y"] == pytest.approx(1 / 3 + 2 / 2)
    assert scores["z"] == pytest.approx(2 / 3)
    assert [f.product_id for f in fused] == ["y", "z", "x"]
    assert fused[0].hits["mf"].rank == 2 and fused[0].hits["vector"].rank == 1


def test_weighted_fusion_normalises_each_source() -> None:
    a = _res("mf", ["x", "y"], [100.0, 0.0])
    b = _res("vector", ["y", "x"], [0.5, 0.4])
    fused = fuse([a, b], {"mf": 1.0, "vector": 1.0}, "weighted")
    scores = {f.product_id: f.score for f in fused}
    assert scores == pytest.approx({"x": 1.0, "y": 1.0})
    fused = fuse([a, b], {"mf": 1.0, "vector": 3.0}, "weighted")
    assert fused[0].product_id == "y"


def test_a_zero_weight_source_does_not_change_the_order() -> None:
    a = _res("mf", ["x", "y", "z"], [3, 2, 1])
    b = _res("popular", ["z", "y", "x"], [3, 2, 1])
    assert [f.product_id for f in fuse([a, b], {"mf": 1.0, "popular": 0.0})] == ["x", "y", "z"]


def test_mmr_strength_zero_keeps_relevance_order_and_high_strength_diversifies() -> None:
    # Items 0 and 1 are near-identical; 2 is different and slightly less relevant.
    emb = np.asarray([[1, 0], [0.999, 0.045], [0, 1]], dtype=np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    rel = [1.0, 0.95, 0.9]
    assert mmr(rel, emb, 2, 0.0) == [0, 1]
    assert mmr(rel, emb, 2, 0.7) == [0, 2]


def test_themes_group_by_category_and_lead_with_top_picks() -> None:
    products = [Product(str(i), f"t{i}", ("Comedy",) if i % 2 else ("Drama",)) for i in range(12)]
    themes = group_into_themes(products, max_themes=3, min_size=3)
    assert themes[0].name == TOP_PICKS
    assert themes[0].product_ids[:3] == ("0", "1", "2")
    names = {t.name for t in themes}
    assert {"Comedy", "Drama"} <= names
    placed = [pid for t in themes for pid in t.product_ids]
    assert len(placed) == len(set(placed))  # no product in two themes
    for t in themes[1:]:
        assert all(t.category in products[int(pid)].categories for pid in t.product_ids)
