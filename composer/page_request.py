"""What a storefront asks for: one page for one shopper."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from composer.layout import MAX_SECTIONS, Locale, PageKind

Id = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]


class PageRequest(BaseModel):
    """A shopper id, or an anonymous session with recent product ids (or neither: a cold
    start page of popular products)."""

    model_config = ConfigDict(extra="forbid")

    shopper_id: Id | None = None
    recent_items: list[Id] = Field(default_factory=list, max_length=50)
    kind: PageKind = PageKind.HOME
    query: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] | None = None
    locale: Locale = Locale.EN
    max_sections: int = Field(3, ge=1, le=MAX_SECTIONS)
    min_price: float | None = Field(None, ge=0)
    max_price: float | None = Field(None, ge=0)
    categories: list[Annotated[str, StringConstraints(max_length=64)]] = Field(
        default_factory=list, max_length=10
    )
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    format: Literal["json", "html", "both"] = "json"
    backend: Literal["transformers", "vllm", "rules"] | None = None
    prompt: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_\-]{1,64}$")] | None = None

    @model_validator(mode="after")
    def _price_range(self) -> PageRequest:
        if (
            self.min_price is not None
            and self.max_price is not None
            and self.min_price > self.max_price
        ):
            raise ValueError("min_price must not be greater than max_price")
        if self.kind == PageKind.SEARCH and not self.query:
            raise ValueError("a search page needs a query")
        return self
