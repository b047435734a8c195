"""How a catalog's categories nest, read from the products themselves.

Shops write hierarchies in many ways (``Department|Category``, ``A > B > C`` paths split at
ingest, or flat tags such as film genres), so nesting is inferred rather than declared: a
category contains another when every product of the smaller one is also in the larger one.
A section named for the most specific category says more ("Frozen Pizza") than one named
for its department ("Grocery"), and a department that covers most of the catalog says
nothing a headline could be about.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from retrieval.records import Product

# A category on more than this share of the catalog's products is a department, not a theme:
# every page would be about it. Film genres stay under it (Drama: 43% of MovieLens-100K).
BROAD_SHARE = 0.5


@dataclass(frozen=True)
class CategoryTree:
    counts: dict[str, int]  # products per category, by its name as written
    total: int
    # category -> the categories that hold every one of its products and more
    ancestors: dict[str, frozenset[str]] = field(default_factory=dict)
    broad_share: float = BROAD_SHARE

    @classmethod
    def from_products(
        cls, products: Iterable[Product], broad_share: float = BROAD_SHARE
    ) -> CategoryTree:
        counts: Counter[str] = Counter()
        # The categories every product of a category also has: the running intersection.
        common: dict[str, set[str]] = {}
        position: dict[str, list[int]] = {}
        total = 0
        for p in products:
            total += 1
            cats = set(p.categories)
            for i, c in enumerate(dict.fromkeys(p.categories)):
                counts[c] += 1
                common[c] = common[c] & cats if c in common else set(cats)
                position.setdefault(c, []).append(i)
        mean_pos = {c: sum(v) / len(v) for c, v in position.items()}
        ancestors: dict[str, frozenset[str]] = {}
        for c, shared in common.items():
            # A strict superset is an ancestor; of two categories with the same products
            # the one written first on the products (the department) is the ancestor.
            up = {
                a
                for a in shared
                if a != c
                and (
                    counts[a] > counts[c] or (counts[a] == counts[c] and mean_pos[a] < mean_pos[c])
                )
            }
            if up:
                ancestors[c] = frozenset(up)
        return cls(dict(counts), total, ancestors, broad_share)

    def is_broad(self, category: str) -> bool:
        """Covers most of the catalog: never a section's theme."""
        return self.total > 0 and self.counts.get(category, 0) > self.broad_share * self.total

    def contains(self, ancestor: str, category: str) -> bool:
        return ancestor in self.ancestors.get(category, frozenset())

    def most_specific(self, categories: Sequence[str]) -> list[str]:
        """``categories`` without those that contain another of them, order kept."""
        present = set(categories)
        return [c for c in categories if not any(self.contains(c, d) for d in present if d != c)]
