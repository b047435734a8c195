"""Copy requests and results at the boundary (CLI, batch files, HTTP)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from composer.layout import Locale
from composer.settings import BackendName

ProductId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]


class CopyKind(StrEnum):
    HEADLINE = "headline"
    TAGLINE = "tagline"
    DESCRIPTION = "description"


DEFAULT_MAX_CHARS = {CopyKind.HEADLINE: 60, CopyKind.TAGLINE: 90, CopyKind.DESCRIPTION: 240}


class CopyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Annotated[str, StringConstraints(max_length=128)] | None = None
    products: list[ProductId] = Field(min_length=1, max_length=12)
    kind: CopyKind = CopyKind.HEADLINE
    tone: Annotated[str, StringConstraints(strip_whitespace=True, max_length=80)] = "warm"
    locale: Locale = Locale.EN
    n: int = Field(3, ge=1, le=8)
    max_chars: int | None = Field(None, ge=10, le=400)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    backend: BackendName | None = None

    def limit(self) -> int:
        return self.max_chars or DEFAULT_MAX_CHARS[self.kind]


class CopyVariant(BaseModel):
    text: str
    checks: dict[str, bool]  # check name -> passed
    passed: bool


class CopyResult(BaseModel):
    id: str | None
    kind: CopyKind
    locale: Locale
    products: list[str]
    variants: list[CopyVariant]
    backend: str
    # Variants the model wrote that failed a check: never shown as copy, kept for tuning.
    rejected: list[CopyVariant] = []
    fallback: bool = False
    fallback_reason: str | None = None
    tokens: int = 0
    seconds: float = 0.0
