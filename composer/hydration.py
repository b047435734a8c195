"""Handles become catalog records. Every fact a shopper sees (title, price, image, link)
comes from the catalog here, never from generated text."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from composer.copybook import copybook
from composer.layout import GeneratedPage, Locale, PageKind, PageLayout, Section, Slot
from composer.prompting import HandleMap
from retrieval import CandidateSet, Product


@dataclass(frozen=True)
class HydratedSlot:
    handle: str
    product: Product
    reason: str
    url: str


@dataclass(frozen=True)
class HydratedSection:
    kind: str
    headline: str
    subhead: str | None
    theme: str
    slots: tuple[HydratedSlot, ...]


@dataclass(frozen=True)
class HydratedPage:
    title: str
    kind: PageKind
    locale: Locale
    sections: tuple[HydratedSection, ...]

    def product_ids(self) -> list[str]:
        return [s.product.product_id for sec in self.sections for s in sec.slots]


def to_layout(
    page: GeneratedPage,
    handles: HandleMap,
    candidates: CandidateSet,
    catalog: Mapping[str, Product],
    locale: Locale,
) -> PageLayout:
    """Generated handles to layout slots, each with its reason in words (the history items a
    reason names are looked up in ``catalog``)."""
    book = copybook(locale)
    reasons = {c.product_id: c.reason for c in candidates.candidates}
    sections = []
    for sec in page.sections:
        slots = [
            Slot(handle=h, reason=book.reason(reasons[handles.products[h]], catalog))
            for h in sec.items
        ]
        sections.append(Section(kind=sec.kind, theme=sec.theme, headline=sec.headline, slots=slots))
    return PageLayout(title=page.title, sections=sections)


def hydrate(
    layout: PageLayout,
    handles: HandleMap,
    products: dict[str, Product],
    kind: PageKind,
    locale: Locale,
    link_prefix: str = "/products/",
) -> HydratedPage:
    book = copybook(locale)
    sections = []
    for sec in layout.sections:
        slots = tuple(
            HydratedSlot(
                handle=s.handle,
                product=(p := products[handles.products[s.handle]]),
                reason=s.reason,
                url=p.url or f"{link_prefix}{p.product_id}",
            )
            for s in sec.slots
        )
        theme = handles.themes.get(sec.theme, "")
        sections.append(
            HydratedSection(sec.kind.value, sec.headline, sec.subhead, book.category(theme), slots)
        )
    return HydratedPage(layout.title, kind, locale, tuple(sections))
