"""Settings of the words step (``COMPOSER_WORDS__…``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class WordSettings(BaseModel):
    # Two, not three: on one CPU thread a batch of three float32 rows costs 2.2x one row
    # (the sgemm packs the weights per call), and three put the in-process page at p50 7.4 s
    # against 4.7 s with two (7 MovieLens pages); three kept the rules text in 1 field of 26,
    # two in 5 of 25.
    candidates: int = Field(
        2, ge=1, le=8, description="Sampled candidates per headline or title; the best is shown."
    )
    # int8 makes pages about 1.5-2x faster and its words pass the checks about as often
    # with five candidates, but they read worse ("Smartwatch that's a SmartWatches",
    # "Technology like 2014"): measured and offered, not the default (README, "Page words
    # on int8 weights").
    weights: Literal["full", "int8"] = Field(
        "full",
        description="In-process weights for words: full, or int8 (linear layers quantised "
        "with fbgemm: pages about 1.5-2x faster on CPU, clumsier words).",
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
