"""Shops other than the sample: `composer init` for a user's own files, and the packaged
electronics shop (real public data) composed by the real model with its own examples."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest
import yaml
from conftest import CACHE

from composer.backends import BackendRegistry
from composer.cli import run
from composer.page_request import PageRequest
from composer.pipeline import PageComposer
from composer.provision import open_store
from composer.settings import Settings
from composer.shop import load_profile
from composer.shop.setup import init_packaged, packaged_profile
from retrieval import FusionParams, load_retriever

CATALOG = """product_id,title,categories,price
k1,Cast iron skillet 26 cm,Cookware,39.90
k2,Enamel dutch oven 5 l,Cookware,89.00
k3,Chef's knife 20 cm,Knives,59.00
k4,Paring knife 9 cm,Knives,19.50
k5,Bamboo cutting board,Boards,24.00
k6,End-grain walnut board,Boards,79.00
k7,Stainless saucepan 2 l,Cookware,45.00
k8,Bread knife 23 cm,Knives,35.00
"""


def test_init_sets_up_a_new_shop_in_its_own_folder_with_a_draft_profile(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    catalog = tmp_path / "catalog.csv"
    catalog.write_text(CATALOG, encoding="utf-8")
    folder = tmp_path / "kitchen"
    code = run(["init", "--catalog", str(catalog), "--dir", str(folder), "--name", "Pan & Co"])
    assert code == 0, capsys.readouterr().err
    profile = load_profile(folder / "shop.yaml")
    assert profile.name == "Pan & Co" and profile.sells.startswith("Cookware")
    assert set(profile.theme_words) == {"Cookware", "Knives", "Boards"}
    assert profile.for_locale(profile.locales[0]).headline_count() == 0
    settings = Settings(artifacts_dir=folder, cache_dir=CACHE, fusion=FusionParams(tune=False))
    store = open_store(settings)
    try:
        assert store.counts()["products"] == 8  # the user's products only, no sample shop
        retriever = load_retriever(settings.retrieval_config(), store)
        result = PageComposer(settings, retriever, BackendRegistry(settings)).compose(
            PageRequest(recent_items=["k1"])
        )
    finally:
        store.close()
    # Without example headlines written for the shop, its pages keep the rules words and say
    # why, instead of borrowing another shop's.
    assert result.trace.fallback and "example headlines" in (result.trace.fallback_reason or "")
    assert result.trace.words == []


def test_init_refuses_the_sample_shops_folder(capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings()
    from composer.provision import seed_movielens

    store = open_store(settings)
    try:
        seed_movielens(settings, store)
    finally:
        store.close()
    catalog = settings.artifacts_dir / "c.csv"
    catalog.write_text(CATALOG, encoding="utf-8")
    assert run(["init", "--catalog", str(catalog)]) == 2
    err = capsys.readouterr().err.strip()
    assert "holds the sample shop" in err and len(err.splitlines()) == 1


def _pairs(text: str) -> set[str]:
    """Word pairs ("movie night", "worth sharing"): what a copied example carries, where
    single words ("stories", "night") are everyday English any shop may use."""
    words = [w.lower() for w in re.findall(r"[A-Za-z']+", text)]
    return {f"{a} {b}" for a, b in itertools.pairwise(words)}


def _pairs_of_examples(name: str) -> set[str]:
    data = yaml.safe_load(packaged_profile(name).read_text(encoding="utf-8"))
    out: set[str] = set()
    for ex in data["examples"].values():
        for texts in [*ex.get("headlines", {}).values(), *ex.get("titles", {}).values()]:
            for t in texts:
                out |= _pairs(t)
    return out


@pytest.fixture(scope="module")
def electronics(tmp_path_factory: pytest.TempPathFactory) -> PageComposer:
    folder = tmp_path_factory.mktemp("electronics")
    settings = Settings(
        artifacts_dir=folder, cache_dir=CACHE, fusion=FusionParams(tune=False),
        page_deadline_s=600.0,
    )  # fmt: skip
    store = open_store(settings)
    init_packaged(settings, store, "electronics", lambda _d, _t: lambda _n: None)
    retriever = load_retriever(settings.retrieval_config(), store)
    return PageComposer(settings, retriever, BackendRegistry(settings))


@pytest.mark.slow
def test_electronics_pages_use_no_word_only_another_shop_would(
    electronics: PageComposer,
) -> None:
    catalog = electronics.retriever.catalog
    own = _pairs_of_examples("electronics")
    for p in catalog.products:
        own |= _pairs(f"{p.title} {' '.join(p.categories)} {p.description}")
    foreign = (_pairs_of_examples("movies") | _pairs_of_examples("clothing")) - own
    assert {"movie night", "worth sharing", "every day"} & foreign
    shown: list[str] = []
    for request in (
        PageRequest(shopper_id="customer-1002"),
        PageRequest(recent_items=["e0001"], kind="search", query="gaming laptop"),
    ):
        result = electronics.compose(request)
        assert result.trace.backend == "transformers"
        assert not result.trace.fallback, result.trace.fallback_reason
        assert any(w["source"] == "llm" for w in result.trace.words)
        shown += [result.layout.title] + [s.headline for s in result.layout.sections]
    pairs = {p for t in shown for p in _pairs(t)}
    assert not pairs & foreign, (shown, pairs & foreign)


def test_init_with_a_bad_option_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    catalog = tmp_path / "catalog.csv"
    catalog.write_text(CATALOG, encoding="utf-8")
    folder = tmp_path / "kitchen"
    assert run(["init", "--catalog", str(catalog), "--dir", str(folder), "--currency", "$$"]) == 2
    assert "currency" in capsys.readouterr().err
    store = open_store(Settings(artifacts_dir=folder, cache_dir=CACHE))
    try:
        assert store.counts()["products"] == 0
    finally:
        store.close()
    assert not (folder / "shop.yaml").exists()
