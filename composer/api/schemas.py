"""Bodies of the API that are not the composer's own models (those are reused as they are:
``PageRequest``, ``CopyRequest``/``CopyResult``, ``PageLayout``)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from litestar.openapi.spec import Example
from litestar.params import Body
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

from composer.copywriting import CopyRequest
from composer.layout import PageLayout
from composer.page_request import PageRequest

Id = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]
MAX_EVENTS_PER_CALL = 100


class EventsIn(BaseModel):
    """One or more events of one shopper: ``product_id`` for one product, ``product_ids``
    for several (not both)."""

    model_config = ConfigDict(extra="forbid")

    shopper_id: Id
    product_ids: list[Id] = Field(default_factory=list, max_length=MAX_EVENTS_PER_CALL)
    product_id: Id | None = Field(None, validate_default=True)
    kind: Literal["view", "click", "cart", "purchase"] = "view"
    timestamp: float | None = Field(
        None, ge=0, le=32503680000, description="Unix seconds; default: now."
    )
    page_id: str | None = Field(
        None,
        pattern=r"^[0-9a-f]{32}$",
        description="The served page the event came from (`page_id` of the page's answer).",
    )
    slot: int | None = Field(
        None,
        ge=0,
        le=1000,
        validate_default=True,
        description="The product's position on that page, 0-based in reading order.",
    )

    # On the later field, so that the error names it as data (pydantic's loc); product_ids
    # is declared first so that the error names the one-product form.
    @field_validator("product_id")
    @classmethod
    def _one_way_to_name_products(cls, value: str | None, info: ValidationInfo) -> str | None:
        several = info.data.get("product_ids")
        if value is None and not several and "product_ids" in info.data:
            raise ValueError("product_id or product_ids is required")
        if value is not None and several:
            raise ValueError("give product_id or product_ids, not both")
        return value

    @field_validator("slot")
    @classmethod
    def _slot_of_one_page_product(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and info.data.get("page_id") is None and "page_id" in info.data:
            raise ValueError("a slot needs the page_id it is on")
        if value is not None and info.data.get("product_ids"):
            raise ValueError("a slot names one product: give product_id, not product_ids")
        return value

    def products(self) -> list[str]:
        return [self.product_id] if self.product_id is not None else list(self.product_ids)

    def field_of(self, index: int) -> str:
        return "product_id" if self.product_id is not None else f"product_ids[{index}]"


class EventsOut(BaseModel):
    event_ids: list[int] = Field(description="Ids of the events recorded now.")
    duplicates: int = Field(
        0, description="Events left out as identical to ones recorded before (a retry)."
    )
    invalidated_pages: int


class ProductOut(BaseModel):
    product_id: str
    title: str
    categories: list[str]
    price: float
    in_stock: bool
    year: int | None = None
    description: str = ""
    image_url: str | None = None
    url: str | None = None


class PageOut(BaseModel):
    """``POST /v1/pages`` as JSON. ``html`` is there for ``format`` html or both."""

    layout: PageLayout
    html: str | None = None
    trace: dict[str, Any]
    cache: Literal["hit", "miss"]
    page_id: str = Field(
        description="This served page's id: events name it (with `slot`) to be attributed."
    )
    experiment: str | None = Field(None, description="The experiment the page is in, if any.")
    variant: str | None = Field(None, description="Its arm: a variant's name or `holdout`.")


class PageLinkIn(BaseModel):
    """A link to one shopper's HTML page, for that shopper's browser."""

    model_config = ConfigDict(extra="forbid")

    shopper_id: Id
    ttl_s: int | None = Field(
        None, ge=60, description="Seconds the link stays valid; default and cap: settings."
    )


class PageLinkOut(BaseModel):
    path: str = Field(description="/pages/{shopper_id}?exp=…&sig=…; add kind, q, locale.")
    expires_at: int = Field(description="Unix seconds.")


class Health(BaseModel):
    status: Literal["alive"]


class Ready(BaseModel):
    status: Literal["ready", "loading", "failed"]
    checks: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None


# Request bodies with examples for the docs page (and for schemathesis' example phase).
PageBody = Annotated[
    PageRequest,
    Body(
        description="What the storefront asks for; every field is optional.",
        examples=[
            Example(summary="A known shopper's home page", value={"shopper_id": "196"}),
            Example(
                summary="Search page, Chinese copy, price range, layout and HTML",
                value={
                    "shopper_id": "42",
                    "kind": "search",
                    "query": "space adventure",
                    "locale": "zh",
                    "max_price": 20,
                    "format": "both",
                },
            ),
            Example(
                summary="Anonymous session with recent items",
                value={"recent_items": ["1", "71", "95"], "max_sections": 2, "seed": 7},
            ),
        ],
    ),
]
CopyBody = Annotated[
    CopyRequest,
    Body(
        examples=[
            Example(summary="Three headlines", value={"products": ["1", "50"], "n": 3}),
            Example(
                summary="A tagline in Chinese",
                value={"products": ["1"], "kind": "tagline", "locale": "zh", "n": 1},
            ),
        ]
    ),
]
EventsBody = Annotated[
    EventsIn,
    Body(
        examples=[
            Example(summary="A view", value={"shopper_id": "196", "product_id": "1"}),
            Example(
                summary="A click on the third product of a served page",
                value={
                    "shopper_id": "196",
                    "product_id": "50",
                    "kind": "click",
                    "page_id": "0f8b2c4a9d3e4f6a8b1c2d3e4f5a6b7c",
                    "slot": 2,
                },
            ),
            Example(
                summary="A purchase of two products at a given time",
                value={
                    "shopper_id": "196",
                    "product_ids": ["1", "50"],
                    "kind": "purchase",
                    "timestamp": 1700000000,
                },
            ),
        ]
    ),
]
PageLinkBody = Annotated[
    PageLinkIn,
    Body(examples=[Example(summary="A link valid for an hour", value={"shopper_id": "42"})]),
]
