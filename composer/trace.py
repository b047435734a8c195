"""What happened while a page was made: shown with every page, logged, measured."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Attempt:
    """One generation: its outcome and what the checks said."""

    tokens: int = 0
    seconds: float = 0.0
    finish_reason: str = ""
    issues: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class PageTrace:
    backend: str
    model: str
    prompt: str
    prompt_hash: str = ""
    timings_ms: dict[str, float] = field(default_factory=dict)
    tokens: int = 0
    attempts: list[Attempt] = field(default_factory=list)
    repairs: list[str] = field(default_factory=list)
    fallback: bool = False
    fallback_reason: str | None = None
    shopper: str = ""
    candidates: list[dict[str, Any]] = field(default_factory=list)
