"""Few-shot examples from the shop's own bank, chosen so that copying them is detectably wrong.

A section's examples never include its own theme: an example copied onto the page names
another category, fails the theme check, and is caught as a copy. Which examples a request
sees rotates with a per-request salt, so no fixed sentence dominates every prompt.
"""

from __future__ import annotations

import hashlib
from functools import partial

from composer.shop import LocaleExamples


def _order(salt: str, text: str) -> str:
    return hashlib.blake2b(f"{salt}\n{text}".encode(), digest_size=8).hexdigest()


def headline_examples(
    bank: LocaleExamples, exclude: set[str], salt: str, k: int = 3
) -> list[tuple[str, str]]:
    """Up to ``k`` (theme, headline) pairs from ``k`` different themes not in ``exclude``."""
    themes = sorted(
        (t for t, texts in bank.headlines.items() if texts and t not in exclude),
        key=lambda t: _order(salt, t),
    )[:k]
    return [(t, min(bank.headlines[t], key=partial(_order, salt + t))) for t in themes]
