"""Settings of the words step (``COMPOSER_WORDS__…``)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class WordSettings(BaseModel):
    # Two, not three: on one CPU thread a batch of three rows costs 2.2x one row (the 135M
    # model is compute-bound there), and three put the in-process page at p50 7.4 s against
    # 4.7 s with two (7 MovieLens pages, same machine); three kept the rules text in 1 field
    # of 26, two in 5 of 25.
    candidates: int = Field(
        2, ge=1, le=8, description="Sampled candidates per headline or title; the best is shown."
    )
    temperature: float = Field(0.8, gt=0, le=2, description="Sampling temperature.")
    examples: int = Field(3, ge=1, le=8, description="Examples from the shop's bank per prompt.")
    max_tokens: int = Field(16, ge=4, le=64, description="Tokens per headline or title.")
    # Measured on 18 good and 12 bad headlines for five themes of three shops (tests/
    # test_words.py): nonsense and other shops' lines scored at most 0.19 against the theme
    # without naming it; good headlines that do not name their theme score 0.05-0.6.
    theme_fit_min: float = Field(
        0.2,
        ge=-1,
        le=1,
        description="A headline that does not name its theme must be at least this similar "
        "(MiniLM cosine) to the theme and its products.",
    )
