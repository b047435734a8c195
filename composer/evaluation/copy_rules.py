"""How a suite judges words: headline lengths, and what counts as naming a theme."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class CopyRules(BaseModel):
    model_config = ConfigDict(extra="forbid")

    headline_words: tuple[int, int] = (2, 8)  # English headlines, in words
    headline_chars_zh: tuple[int, int] = (2, 16)  # Chinese headlines, in characters
    # Words that count as naming a theme besides its own name (e.g. "kids" for Children's).
    theme_words: dict[str, list[str]] = Field(default_factory=dict)
