"""An in-memory, column-wise view of the catalog for fast filtering and scoring."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from retrieval.category_tree import CategoryTree
from retrieval.records import Product


@dataclass(frozen=True)
class CandidateFilter:
    """Business filters every source honours."""

    min_price: float | None = None
    max_price: float | None = None
    categories: tuple[str, ...] = ()
    in_stock_only: bool = True
    exclude_ids: frozenset[str] = frozenset()


_norm_re = re.compile(r"[^a-z0-9\u4e00-\u9fff]+")


def dedup_key(p: Product) -> str:
    """Products that a shopper would see as the same item (re-listed, other edition)."""
    return _norm_re.sub(" ", p.title.lower()).strip() + f"|{p.year or ''}"


class CatalogView:
    def __init__(self, products: Sequence[Product], embeddings: np.ndarray | None = None) -> None:
        self.products = list(products)
        self.ids = [p.product_id for p in self.products]
        self.index = {pid: i for i, pid in enumerate(self.ids)}
        self.price = np.asarray([p.price for p in self.products], dtype=np.float32)
        self.in_stock = np.asarray([p.in_stock for p in self.products], dtype=bool)
        self._category_masks: dict[str, np.ndarray] = {}
        for i, p in enumerate(self.products):
            for c in p.categories:
                key = c.lower()
                if key not in self._category_masks:
                    self._category_masks[key] = np.zeros(len(self.products), dtype=bool)
                self._category_masks[key][i] = True
        self.dedup_keys = [dedup_key(p) for p in self.products]
        self.embeddings = embeddings
        if embeddings is not None and len(embeddings) != len(self.products):
            raise ValueError("embeddings must contain 1 row for every product in the catalog")

    def __len__(self) -> int:
        return len(self.products)

    def by_id(self) -> ProductLookup:
        return ProductLookup(self)

    def categories(self) -> list[str]:
        return sorted(self._category_masks)

    @cached_property
    def category_tree(self) -> CategoryTree:
        """How the categories nest (built on first use: one pass over the products)."""
        return CategoryTree.from_products(self.products)

    def category_mask(self, category: str) -> np.ndarray:
        mask = self._category_masks.get(category.lower())
        return mask if mask is not None else np.zeros(len(self.products), dtype=bool)

    def mask(self, f: CandidateFilter) -> np.ndarray:
        """Boolean mask of products that pass the filter."""
        m = np.ones(len(self.products), dtype=bool)
        if f.in_stock_only:
            m &= self.in_stock
        if f.min_price is not None:
            m &= self.price >= f.min_price
        if f.max_price is not None:
            m &= self.price <= f.max_price
        if f.categories:
            any_cat = np.zeros(len(self.products), dtype=bool)
            for c in f.categories:
                any_cat |= self.category_mask(c)
            m &= any_cat
        for pid in f.exclude_ids:
            i = self.index.get(pid)
            if i is not None:
                m[i] = False
        return m

    def passes(self, product_id: str, f: CandidateFilter) -> bool:
        i = self.index.get(product_id)
        if i is None or product_id in f.exclude_ids:
            return False
        p = self.products[i]
        if f.in_stock_only and not p.in_stock:
            return False
        if f.min_price is not None and p.price < f.min_price:
            return False
        if f.max_price is not None and p.price > f.max_price:
            return False
        if f.categories:
            wanted = {c.lower() for c in f.categories}
            if not wanted & {c.lower() for c in p.categories}:
                return False
        return True


class ProductLookup(Mapping[str, Product]):
    """Read-only ``product_id -> Product`` over a catalog view, without copying it."""

    def __init__(self, view: CatalogView) -> None:
        self._view = view

    def __getitem__(self, product_id: str) -> Product:
        return self._view.products[self._view.index[product_id]]

    def __iter__(self) -> Iterator[str]:
        return iter(self._view.ids)

    def __len__(self) -> int:
        return len(self._view.ids)
