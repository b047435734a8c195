"""The page layout model and the per-request JSON schema."""

from composer.layout.model import (
    HERO_MAX_ITEMS,
    MAX_ITEMS,
    MAX_SECTIONS,
    MIN_ITEMS,
    GeneratedPage,
    GeneratedSection,
    Locale,
    PageKind,
    PageLayout,
    Section,
    SectionKind,
    Slot,
    generation_schema,
)

__all__ = [
    "HERO_MAX_ITEMS",
    "MAX_ITEMS",
    "MAX_SECTIONS",
    "MIN_ITEMS",
    "GeneratedPage",
    "GeneratedSection",
    "Locale",
    "PageKind",
    "PageLayout",
    "Section",
    "SectionKind",
    "Slot",
    "generation_schema",
]
