"""From retrieved candidates to prompt variables: short handles and only the facts copy may use."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from composer.layout import Locale, PageKind
from retrieval import CandidateSet, Product

TITLE_CHARS = 48  # enough to recognise a product; a long title is mostly noise to a model

_LANGUAGE = {Locale.EN: "English", Locale.ZH: "Simplified Chinese (简体中文)"}
_PAGE_KIND = {
    PageKind.HOME: "the shopper's home page",
    PageKind.CATEGORY: "a category page",
    PageKind.SEARCH: "a search results page",
    PageKind.CAMPAIGN: "a seasonal campaign page",
}


@dataclass(frozen=True)
class HandleMap:
    """P1…Pn for this request's candidates, T1…Tm for its themes."""

    products: dict[str, str]  # handle -> product id
    themes: dict[str, str]  # handle -> theme name
    theme_products: dict[str, tuple[str, ...]]  # theme handle -> product handles
    theme_categories: dict[str, str | None]

    @classmethod
    def build(cls, candidates: CandidateSet) -> HandleMap:
        products = {f"P{i}": c.product_id for i, c in enumerate(candidates.candidates, 1)}
        by_id = {pid: h for h, pid in products.items()}
        themes, theme_products, categories = {}, {}, {}
        for i, t in enumerate(candidates.themes, 1):
            themes[f"T{i}"] = t.name
            theme_products[f"T{i}"] = tuple(by_id[p] for p in t.product_ids if p in by_id)
            categories[f"T{i}"] = t.category
        return cls(products, themes, theme_products, categories)

    def handle_of(self, product_id: str) -> str | None:
        for h, pid in self.products.items():
            if pid == product_id:
                return h
        return None


@lru_cache(maxsize=16384)
def clean_fact(text: str, limit: int = TITLE_CHARS) -> str:
    """Catalog text as inert data: no control or markup characters, bounded length. Cached:
    every page cleans its 16 candidates' titles and categories, and they recur."""
    text = "".join(" " if unicodedata.category(ch)[0] == "C" else ch for ch in text)
    text = re.sub(r"[<>{}\[\]`]", " ", text)
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def shopper_summary(candidates: CandidateSet) -> str:
    p = candidates.profile
    if p.events == 0:
        return "new shopper, no history yet"
    parts = [f"{p.events} past orders" if p.known else f"{p.events} recent items"]
    if p.top_categories:
        # Cleaned here too: a store written before ingest cleaned categories may hold any text.
        parts.append("likes " + ", ".join(clean_fact(c, 24) for c in p.top_categories))
    return "; ".join(parts)


def page_variables(
    candidates: CandidateSet,
    products: dict[str, Product],
    handles: HandleMap,
    kind: PageKind,
    locale: Locale,
    max_sections: int,
    brand_voice: str,
) -> dict[str, object]:
    cands = []
    for h, pid in handles.products.items():
        p = products[pid]
        cands.append(
            {
                "handle": h,
                "title": clean_fact(p.title),
                "categories": [clean_fact(c, 24) for c in p.categories[:3]],
                "year": p.year,
            }
        )
    by_handle = {c["handle"]: c for c in cands}
    themed = {p for products_ in handles.theme_products.values() for p in products_}
    return {
        "task": "page",
        "page_kind": kind.value,
        "brand_voice": brand_voice,
        "page_kind_text": _PAGE_KIND[kind],
        "language": _LANGUAGE[locale],
        "locale": locale.value,
        "query": clean_fact(candidates.query, 80) if candidates.query else None,
        "shopper_summary": shopper_summary(candidates),
        "max_sections": max_sections,
        "themes": [
            {
                "handle": h,
                "name": clean_fact(name, 32),
                "category": handles.theme_categories[h],
                "handles": list(handles.theme_products[h]),
                "products": [by_handle[p] for p in handles.theme_products[h] if p in by_handle],
            }
            for h, name in handles.themes.items()
        ],
        "candidates": cands,
        # Candidates in no theme, so a prompt that lists products under their themes can
        # still show every candidate exactly once.
        "unthemed": [c for c in cands if c["handle"] not in themed],
    }
