"""Settings of the words step (``COMPOSER_WORDS__…``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from composer.settings.llm import STRONG_MODEL


class WordSettings(BaseModel):
    # A page's fields decode as one batch (one step for every field's candidates), so a
    # candidate costs a row of that batch, not a pass of its own. Measured in-process on
    # three shops (README, "Page words"): 2 candidates p50 4.2-5.0 s, 3 4.4-5.4 s with
    # fewer fields left to the rules text (clothing 3% -> 0, electronics 12.5% -> 10%), 4
    # 6.3-7.4 s: a step of 20 rows costs ~1.3x one of 10.
    first_section_alone: bool = Field(
        False,
        description="Write the first section's headline in a batch of its own, then the "
        "other fields: a streamed page shows its first section sooner, and takes longer "
        "whole (the API turns it on for streamed pages).",
    )
    candidates: int = Field(
        3, ge=1, le=8, description="Sampled candidates per headline or title; the best is shown."
    )
    # int8 makes pages about 1.5-2x faster and its words pass the checks about as often
    # with five candidates, but they read worse ("Smartwatch that's a SmartWatches",
    # "Technology like 2014"), and its next-token distribution strays far from the full
    # weights' (KL 1.0-1.3 nats a token, top-1 agreement 53-58%, per-channel weights
    # barely better): measured and offered, not the default (README, "Page words on int8
    # weights").
    weights: Literal["full", "int8"] = Field(
        "full",
        description="In-process weights for words: full, or int8 (linear layers quantised "
        "with fbgemm: pages about 1.5-2x faster on CPU, clumsier words).",
    )
    # Few-shot, the 135M model swaps its theme into an example ("Monitors with more room for
    # your work" -> "Phones with more room for your work"): the checks reject such copies,
    # but each costs a candidate. Word sequences of the examples are banned while decoding.
    avoid_ngram: int = Field(
        3,
        ge=0,
        le=8,
        description="Runs of this many words from the shop's examples that a headline may not "
        "write (banned while decoding, vLLM's bad_words); 0: off.",
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
    # The judge is not the writer: a larger model than the default 135M writer, reading the
    # words against a written rubric; its agreement with people is measured, not assumed
    # (README, "Judging the words").
    judge_model: str = Field(
        STRONG_MODEL,
        description="Model of the word judge (`composer words judge`, the `words` metrics of "
        "`composer eval`): a packaged model's name or a local transformers folder.",
    )
