"""The page layout: what the LLM fills (handles and words) and what the page is built from.

Bounds live here, so the JSON schema the decoder is constrained by and the validator agree.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

MAX_SECTIONS = 4
MIN_ITEMS = 2
MAX_ITEMS = 6
HERO_MAX_ITEMS = 4  # one lead product and up to three beside it
TITLE_MAX = 60
HEADLINE_MAX = 60
HEADLINE_MIN = 3
SUBHEAD_MAX = 90
REASON_MAX = 80
ZH_HEADLINE_MAX = 16  # Chinese says in 16 characters what English says in 60
ZH_TITLE_MAX = 20
# CJK ideographs and the punctuation a headline uses (、。！，：？·); no Latin letters or
# digits, so no prices or English words either.
ZH_CHARS = "\u4e00-\u9fff\u3001\u3002\uff01\uff0c\uff1a\uff1f\u00b7"


class SectionKind(StrEnum):
    HERO = "hero"  # one large lead product with a couple beside it
    GRID = "grid"
    CAROUSEL = "carousel"
    EDITORIAL = "editorial"  # a banner with a short text and a few products


class PageKind(StrEnum):
    HOME = "home"
    CATEGORY = "category"
    SEARCH = "search"
    CAMPAIGN = "campaign"


class Locale(StrEnum):
    EN = "en"
    ZH = "zh"


Headline = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=HEADLINE_MIN, max_length=HEADLINE_MAX)
]


class Slot(BaseModel):
    model_config = ConfigDict(extra="forbid")

    handle: str = Field(description="a candidate handle, P1…Pn")
    reason: str = Field("", max_length=REASON_MAX, description="why this product is here")


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: SectionKind
    theme: str = Field(description="a theme handle, T1…Tn")
    headline: Headline
    subhead: str | None = Field(None, max_length=SUBHEAD_MAX)
    slots: list[Slot] = Field(min_length=1, max_length=MAX_ITEMS)


class PageLayout(BaseModel):
    """A validated page: ordered sections of product slots, with the words around them."""

    model_config = ConfigDict(extra="forbid")

    title: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=3, max_length=TITLE_MAX)
    ]
    sections: list[Section] = Field(min_length=1, max_length=MAX_SECTIONS)

    def handles(self) -> list[str]:
        return [s.handle for sec in self.sections for s in sec.slots]


class GeneratedSection(BaseModel):
    """What the model writes for one section: compact, flat, handles only."""

    model_config = ConfigDict(extra="forbid")

    kind: SectionKind
    theme: str
    headline: str
    items: list[str]


class GeneratedPage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str
    sections: list[GeneratedSection]


def generation_schema(
    product_handles: list[str],
    theme_handles: list[str],
    max_sections: int = MAX_SECTIONS,
    locale: Locale = Locale.EN,
) -> dict[str, Any]:
    """The JSON schema decoding is constrained by, for this request's handles.

    Flat on purpose (enums and bounded arrays): constrained decoders compile it fast, and a
    small model follows it. Products are an enum, so no product outside the candidates can
    be named. The first section is the hero (fixed by the schema, so its kind costs no
    decoding step) and later ones are not. Word bounds match :class:`PageLayout`; Chinese
    pages restrict their words to Chinese characters, which a small, mostly English model
    would not keep to by instruction alone.
    """
    headline = _text_schema(locale, HEADLINE_MIN, HEADLINE_MAX, ZH_HEADLINE_MAX)
    title = _text_schema(locale, 3, TITLE_MAX, ZH_TITLE_MAX)
    sections_max = max(1, min(max_sections, MAX_SECTIONS))
    # At least two sections when themes and products allow: a one-section "page" is what a
    # small model settles for when it can.
    enough_products = len(product_handles) >= 2 * MIN_ITEMS
    sections_min = 2 if enough_products and min(sections_max, len(theme_handles)) >= 2 else 1
    # Sections come before the title: the first section streams to the shopper without
    # waiting for title words.
    return {
        "type": "object",
        "properties": {
            "sections": {
                "type": "array",
                "minItems": sections_min,
                "maxItems": sections_max,
                "prefixItems": [
                    _section_schema(
                        [SectionKind.HERO], HERO_MAX_ITEMS, product_handles, theme_handles, headline
                    )
                ],
                "items": _section_schema(
                    [k for k in SectionKind if k != SectionKind.HERO],
                    MAX_ITEMS,
                    product_handles,
                    theme_handles,
                    headline,
                ),
            },
            "title": title,
        },
        "required": ["sections", "title"],
        "additionalProperties": False,
    }


def _text_schema(locale: Locale, lo: int, hi: int, zh_hi: int) -> dict[str, Any]:
    if locale == Locale.ZH:
        return {"type": "string", "pattern": f"^[{ZH_CHARS}]{{{lo},{zh_hi}}}$"}
    return {"type": "string", "minLength": lo, "maxLength": hi}


def _section_schema(
    kinds: list[SectionKind],
    max_items: int,
    product_handles: list[str],
    theme_handles: list[str],
    headline: dict[str, Any],
) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "kind": {"type": "string", "enum": [k.value for k in kinds]},
            "theme": {"type": "string", "enum": theme_handles},
            "headline": headline,
            "items": {
                "type": "array",
                "minItems": MIN_ITEMS,
                "maxItems": max_items,
                "items": {"type": "string", "enum": product_handles},
            },
        },
        "required": ["kind", "theme", "headline", "items"],
        "additionalProperties": False,
    }
