"""The value the composer gets from retrieval: ranked, explained candidates grouped in themes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class Provenance(StrEnum):
    MF = "mf"
    FOLD_IN = "fold-in"  # MF with a user vector computed at request time
    VECTOR = "vector"
    POPULAR = "popular"


@dataclass(frozen=True)
class SourceHit:
    rank: int  # 1-based rank within that source
    score: float


@dataclass(frozen=True)
class Reason:
    """Why a product is here, machine-readable; the composer turns it into words."""

    code: str  # "similar_to_history" | "matches_query" | "matches_profile" | "popular"
    product_ids: tuple[str, ...] = ()
    query: str | None = None
    popularity_rank: int | None = None


@dataclass(frozen=True)
class Candidate:
    product_id: str
    score: float
    provenance: tuple[Provenance, ...]
    sources: dict[str, SourceHit]
    reason: Reason
    theme: str | None = None


@dataclass(frozen=True)
class Theme:
    """A group of candidates a page can turn into a section."""

    name: str
    category: str | None
    product_ids: tuple[str, ...]


@dataclass(frozen=True)
class ShopperProfile:
    """A short, pseudonymous summary of a shopper; safe for prompts and logs."""

    pseudonym: str
    known: bool
    events: int
    top_categories: tuple[str, ...]
    price_band: tuple[float, float] | None
    days_since_last_event: float | None
    recent_product_ids: tuple[str, ...]


@dataclass(frozen=True)
class CandidateSet:
    candidates: tuple[Candidate, ...]
    themes: tuple[Theme, ...]
    profile: ShopperProfile
    query: str | None
    timings_ms: dict[str, float] = field(default_factory=dict)
    # Sources that failed for this request (a Chroma server gone away): name -> error. The
    # candidates then come from the others, popularity always among them.
    missing_sources: dict[str, str] = field(default_factory=dict)
    model_version: str = ""  # the trained models these candidates came from

    def product_ids(self) -> list[str]:
        return [c.product_id for c in self.candidates]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
