"""A shop built from packaged public data, and its export to the generic ingest files.

Writing the shop as ``catalog.csv`` + ``interactions.csv`` lets it go through the same
validated ingest as any user's files (see ``retrieval.ingest``), instead of a private path.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from retrieval import catalog_text
from retrieval.ingest import (
    CATALOG_OPTIONAL,
    CATALOG_REQUIRED,
    INTERACTIONS_OPTIONAL,
    INTERACTIONS_REQUIRED,
)
from retrieval.records import Interaction, Product, Shopper

# The generic ingest format, column for column: a packaged shop goes in like any shop's files.
CATALOG_COLUMNS = CATALOG_REQUIRED + CATALOG_OPTIONAL
INTERACTION_COLUMNS = INTERACTIONS_REQUIRED + INTERACTIONS_OPTIONAL


@dataclass(frozen=True)
class PackagedShop:
    products: list[Product]
    interactions: list[Interaction]
    shoppers: list[Shopper]
    name: str
    source: str  # one line: where the data comes from and what in it is synthetic


def clean_text(text: str | None, limit: int | None = None) -> str:
    """The text as ingest keeps it (:func:`retrieval.catalog_text.clean_text`: no control or
    format characters, whitespace runs collapsed), cut at a word boundary near ``limit``."""
    out = catalog_text.clean_text(text or "")
    if limit is None or len(out) <= limit:
        return out
    cut = out[:limit].rsplit(" ", 1)[0] or out[:limit]
    return cut.rstrip(" ,;:-–") + "…"


def _number(value: float) -> str:
    # Whole numbers without ".0" so timestamps read as plain Unix seconds.
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _categories(product: Product) -> str:
    for cat in product.categories:
        if "|" in cat:
            raise ValueError(f"category {cat!r} of {product.product_id} contains '|'")
    joined = "|".join(product.categories)
    # The ingest splits on ';' when there is no '|', so a lone category with ';' would be
    # split; a trailing '|' forces the '|' separator (the empty item is dropped on read).
    if ";" in joined and "|" not in joined:
        joined += "|"
    return joined


def write_shop_files(shop: PackagedShop, folder: Path) -> tuple[Path, Path]:
    """Write ``catalog.csv`` and ``interactions.csv`` (UTF-8) in the ingest format."""
    folder.mkdir(parents=True, exist_ok=True)
    catalog, interactions = folder / "catalog.csv", folder / "interactions.csv"
    with catalog.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(CATALOG_COLUMNS)
        for p in shop.products:
            writer.writerow(
                (
                    p.product_id,
                    p.title,
                    _categories(p),
                    _number(p.price),
                    "true" if p.in_stock else "false",
                    "" if p.year is None else p.year,
                    p.description,
                    p.image_url or "",
                    p.url or "",
                )
            )
    with interactions.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(INTERACTION_COLUMNS)
        for e in shop.interactions:
            writer.writerow(
                (
                    e.shopper_id,
                    e.product_id,
                    _number(e.timestamp),
                    e.kind.value,
                    "" if e.value is None else _number(e.value),
                )
            )
    return catalog, interactions
