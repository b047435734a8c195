"""What retrieval knows about the shopper behind one request."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HistoryItem:
    product_id: str
    weight: float
    timestamp: float
    purchased: bool


@dataclass(frozen=True)
class ShopperContext:
    """History oldest first; ``shopper_id`` is None for an anonymous session."""

    shopper_id: str | None
    history: tuple[HistoryItem, ...]
    query: str | None = None
    # True when the shopper has events the MF model was not trained on (or is unknown to it).
    needs_fold_in: bool = False

    def history_ids(self) -> list[str]:
        return [h.product_id for h in self.history]

    def purchased_ids(self) -> frozenset[str]:
        return frozenset(h.product_id for h in self.history if h.purchased)
