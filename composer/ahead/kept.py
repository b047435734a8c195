"""A composed page as stored, and back: the layout and its words, which products go where,
the trace. Served pages are rebuilt from the catalog of the moment (price, stock, link), and
a stored page is checked again on the way back: a layout that no longer validates, or names
a product the catalog has dropped, is not served."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from composer.errors import ComposerError
from composer.hydration import HydratedPage, HydratedSection, HydratedSlot
from composer.layout import Locale, PageKind, PageLayout
from composer.pipeline import PageResult
from composer.trace import Attempt, PageTrace
from retrieval import Product

FORMAT = 1


class InvalidKeptPage(ComposerError):
    """A stored page that cannot be served as it is (it is composed again)."""


def pack(result: PageResult) -> str:
    page = result.page
    sections = [
        {
            "theme": sec.theme,
            "slots": [{"handle": s.handle, "product_id": s.product.product_id} for s in sec.slots],
        }
        for sec in page.sections
    ]
    return json.dumps(
        {
            "format": FORMAT,
            "kind": page.kind.value,
            "locale": page.locale.value,
            "layout": result.layout.model_dump(mode="json"),
            "sections": sections,
            "trace": result.trace.to_dict(),
        },
        ensure_ascii=False,
        separators=(",", ":"),
    )


def unpack(
    payload: str, products: Mapping[str, Product], link_prefix: str = "/products/"
) -> PageResult:
    """The page again, its products from ``products`` (the catalog now); no HTML yet."""
    try:
        data = json.loads(payload)
        if data.get("format") != FORMAT:
            raise InvalidKeptPage(f"stored in format {data.get('format')!r}, not {FORMAT}")
        layout = PageLayout.model_validate(data["layout"])
        trace = _trace(data["trace"])
        kind, locale = PageKind(data["kind"]), Locale(data["locale"])
        stored = data["sections"]
        if len(stored) != len(layout.sections):
            raise InvalidKeptPage("sections do not match the layout")
        sections = []
        for sec, kept in zip(layout.sections, stored, strict=True):
            if [s.handle for s in sec.slots] != [s["handle"] for s in kept["slots"]]:
                raise InvalidKeptPage("slots do not match the layout")
            slots = []
            for slot, ref in zip(sec.slots, kept["slots"], strict=True):
                product = products.get(ref["product_id"])
                if product is None:
                    raise InvalidKeptPage(f"product {ref['product_id']!r} left the catalog")
                url = product.url or f"{link_prefix}{product.product_id}"
                slots.append(HydratedSlot(slot.handle, product, slot.reason, url))
            sections.append(
                HydratedSection(sec.kind.value, sec.headline, sec.subhead, str(kept["theme"]),
                                tuple(slots))
            )  # fmt: skip
    except InvalidKeptPage:
        raise
    except (ValidationError, ValueError, KeyError, TypeError) as exc:
        raise InvalidKeptPage(f"{type(exc).__name__}: {exc}") from None
    page = HydratedPage(layout.title, kind, locale, tuple(sections))
    return PageResult(layout, page, None, trace)


def _trace(data: dict[str, Any]) -> PageTrace:
    fields = dict(data)
    fields["attempts"] = [Attempt(**a) for a in fields.get("attempts", [])]
    return PageTrace(**fields)
