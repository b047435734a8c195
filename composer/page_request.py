"""What a storefront asks for: one page for one shopper."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

from composer.layout import MAX_SECTIONS, Locale, PageKind
from composer.settings import BackendName

Id = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]


class PageRequest(BaseModel):
    """A shopper id, or an anonymous session with recent product ids (or neither: a cold
    start page of popular products)."""

    model_config = ConfigDict(extra="forbid")

    shopper_id: Id | None = None
    recent_items: list[Id] = Field(default_factory=list, max_length=50)
    kind: PageKind = PageKind.HOME
    query: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] | None = Field(
        None, validate_default=True
    )
    locale: Locale = Locale.EN
    max_sections: int = Field(3, ge=1, le=MAX_SECTIONS)
    min_price: float | None = Field(None, ge=0)
    max_price: float | None = Field(None, ge=0)
    categories: list[Annotated[str, StringConstraints(max_length=64)]] = Field(
        default_factory=list, max_length=10
    )
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    format: Literal["json", "html", "both"] = "json"
    backend: BackendName | None = None
    prompt: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_\-]{1,64}$")] | None = None
    # "shuffled": products in random order from retrieval's whole pool instead of best first
    # (an experiment's control arm; choosing it needs an admin key, like backend and prompt).
    order: Literal["ranked", "shuffled"] = "ranked"
    session_id: Id | None = Field(
        None,
        description="An anonymous session's id: the unit experiments assign when there is "
        "no shopper_id.",
    )

    # Cross-field checks sit on the later field so that an error names its field as data
    # (pydantic's loc), never parsed back out of the message.
    @field_validator("max_price")
    @classmethod
    def _price_range(cls, value: float | None, info: ValidationInfo) -> float | None:
        low = info.data.get("min_price")
        if value is not None and low is not None and value < low:
            raise ValueError("max_price must not be less than min_price")
        return value

    @field_validator("query")
    @classmethod
    def _search_has_query(cls, value: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("kind") == PageKind.SEARCH and not value:
            raise ValueError("a search page needs a query")
        return value
