"""What the words of one section are about: its label, the words that name it, its products."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from composer.copybook import copybook
from composer.layout import Locale
from composer.prompting import HandleMap, clean_fact
from composer.shop import ShopProfile
from retrieval import Product

# Words of product titles that say nothing about a theme.
_STOP = frozenset(
    {
        "the",
        "and",
        "for",
        "with",
        "from",
        "your",
        "this",
        "that",
        "into",
        "over",
        "under",
        "edition",
        "series",
        "class",
        "style",
        "new",
        "pack",
        "count",
        "bundle",
        "included",
        "inch",
        "gen",
        "generation",
        "version",
    }
)
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]{3,}")


def title_words(title: str) -> list[str]:
    """Words of a product title that can name what a section is about."""
    return [w for w in _WORD.findall(title) if w.lower() not in _STOP]


@dataclass(frozen=True)
class ThemeWords:
    handle: str
    label: str  # how the prompt names the theme: its category, or its products' categories
    category: str | None
    words: tuple[str, ...]  # a headline that names one of these fits the theme by name
    text: str  # label and product titles, for similarity in meaning


def theme_words(
    handle: str,
    section_items: Sequence[str],
    handles: HandleMap,
    products: dict[str, Product],
    profile: ShopProfile | None,
    locale: Locale,
) -> ThemeWords:
    """Words of the section's theme and of the products the section shows (a section of
    leftovers shares the top picks' theme, not its products)."""
    category = handles.theme_categories.get(handle)
    items = [products[handles.products[h]] for h in section_items if h in handles.products]
    if category:
        cats = [category]
    else:
        # "Top picks" says nothing a headline can be about: name its leading categories.
        counts = Counter(c for p in items for c in p.categories[:2])
        cats = [c for c, _ in counts.most_common(2)]
    words: list[str] = []
    for c in cats:
        words += profile.words_for(c) if profile else [c]
        if locale == Locale.ZH:
            words.append(copybook(locale).category(c))
    for p in items:
        words += title_words(p.title)
    book = copybook(locale)
    label = " & ".join(clean_fact(book.category(c), 32) for c in cats) or clean_fact(
        handles.themes.get(handle, ""), 32
    )
    titles = "; ".join(clean_fact(p.title) for p in items[:4])
    return ThemeWords(
        handle=handle,
        label=label,
        category=category,
        words=tuple(dict.fromkeys(w for w in words if w)),
        text=f"{label}: {titles}",
    )
