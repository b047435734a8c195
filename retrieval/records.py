"""Catalog and interaction records: the shape every ingest source is turned into."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class EventKind(StrEnum):
    VIEW = "view"
    CLICK = "click"  # a product clicked on a served page
    CART = "cart"
    PURCHASE = "purchase"
    RATING = "rating"


@dataclass(frozen=True, slots=True)
class Product:
    product_id: str
    title: str
    categories: tuple[str, ...] = ()
    price: float = 0.0
    in_stock: bool = True
    year: int | None = None
    description: str = ""
    image_url: str | None = None
    url: str | None = None

    def text(self) -> str:
        """What gets embedded: title, categories and description, never price or stock."""
        parts = [self.title]
        if self.year:
            parts[0] = f"{self.title} ({self.year})"
        if self.categories:
            parts.append(", ".join(self.categories))
        if self.description:
            parts.append(self.description)
        return ". ".join(parts)

    def content_key(self) -> tuple[object, ...]:
        """Everything that, when changed, requires a store update."""
        return (
            self.title,
            self.categories,
            round(self.price, 2),
            self.in_stock,
            self.year,
            self.description,
            self.image_url,
            self.url,
        )


@dataclass(frozen=True, slots=True)
class Interaction:
    shopper_id: str
    product_id: str
    kind: EventKind
    timestamp: float
    value: float | None = None  # a rating, where the source has one
    page_id: str | None = None  # the served page it came from (experiments' attribution)
    slot: int | None = None  # the product's position on that page, 0-based


@dataclass(frozen=True, slots=True)
class Shopper:
    shopper_id: str
    attributes: dict[str, str] = field(default_factory=dict)
