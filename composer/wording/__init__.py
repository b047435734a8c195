"""Page words (headlines, titles) as short few-shot completions, checked and chosen."""

from composer.settings import WordSettings
from composer.wording.examples import headline_examples
from composer.wording.themes import ThemeWords, theme_words
from composer.wording.writer import (
    Candidate,
    Similarity,
    WordChoice,
    WordField,
    WordWriter,
    encoder_similarity,
    example_runs,
    field_regex,
)

__all__ = [
    "Candidate",
    "Similarity",
    "ThemeWords",
    "WordChoice",
    "WordField",
    "WordSettings",
    "WordWriter",
    "encoder_similarity",
    "example_runs",
    "field_regex",
    "headline_examples",
    "theme_words",
]
