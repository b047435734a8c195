"""Group candidates into a few themes (by category) that a page can turn into sections."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from retrieval.candidates import Theme
from retrieval.category_tree import CategoryTree
from retrieval.records import Product

TOP_PICKS = "Top picks"


def group_into_themes(
    ranked: Sequence[Product],
    max_themes: int = 4,
    min_size: int = 3,
    max_size: int = 8,
    preferred: Sequence[str] = (),
    tree: CategoryTree | None = None,
) -> list[Theme]:
    """Each product goes to the best-ranked theme it fits; leftovers become 'Top picks'.

    Categories the shopper prefers and categories common among the candidates make themes;
    the first theme always holds the strongest candidates. With the catalog's ``tree``, a
    theme is the most specific category with enough products for a section, and a
    department that covers most of the catalog is never one.
    """
    if not ranked:
        return []
    broad = tree.is_broad if tree else (lambda _c: False)
    counts = Counter(c for p in ranked for c in p.categories if not broad(c))
    bonus = {c: len(preferred) - i for i, c in enumerate(preferred)}
    order = sorted(counts, key=lambda c: (-(counts[c] + 2 * bonus.get(c, 0)), c))
    eligible = [c for c in order if counts[c] >= min_size]
    if tree:
        eligible = _most_specific(eligible, ranked, tree, min_size)
    chosen = eligible[: max_themes - 1]
    groups: dict[str, list[str]] = {c: [] for c in chosen}
    top: list[str] = []
    for p in ranked:
        # The strongest few always lead the page, whatever their category.
        if len(top) < min_size:
            top.append(p.product_id)
            continue
        fits = [c for c in chosen if c in p.categories and len(groups[c]) < max_size]
        if tree is not None and len(fits) > 1:
            # A product goes to its most specific section; its aisle takes the others.
            candidates = tuple(fits)  # sorted() in place would hide the list from the key
            fits = sorted(candidates, key=lambda c: any(tree.contains(c, d) for d in candidates))
        if fits:
            groups[fits[0]].append(p.product_id)
        elif len(top) < max_size:
            top.append(p.product_id)
    themes = [Theme(TOP_PICKS, None, tuple(top))]
    themes += [Theme(c, c, tuple(ids)) for c, ids in groups.items() if len(ids) >= min_size]
    return themes


def _most_specific(
    eligible: list[str], ranked: Sequence[Product], tree: CategoryTree, min_size: int
) -> list[str]:
    """Categories that hold another eligible one give way to it, unless enough of their
    candidates are left outside those more specific ones to fill a section of their own."""
    narrow = set(tree.most_specific(eligible))
    kept = []
    for c in eligible:
        if c in narrow:
            kept.append(c)
            continue
        inner = [d for d in narrow if tree.contains(c, d)]
        rest = sum(
            1 for p in ranked if c in p.categories and not any(d in p.categories for d in inner)
        )
        if rest >= min_size:
            kept.append(c)
    return kept
