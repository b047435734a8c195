"""The checks every copy variant is held to; each reports pass or fail separately."""

from __future__ import annotations

import re

from composer.layout import Locale
from composer.validation import normalise, script_issue, unsupported_claims, word_issues

# Leftovers of the prompt's product lines ("Batteries; 14-count", "ANIMATION/ACCOGELAND").
_DEBRIS = re.compile(r"[;/|]|\b[A-Z]{4,}\b.*\b[A-Z]{4,}\b|\d+-count")
TITLE_SHARE_MAX = 0.6  # a variant mostly made of a product title's words is no copy


def copy_checks(
    text: str, locale: Locale, max_chars: int, banned_words: list[str], titles: list[str]
) -> dict[str, bool]:
    lowered = text.lower()
    # Catalog titles keep their own script (an English film title in Chinese copy is fine).
    own_words = text
    for title in titles:
        own_words = own_words.replace(title, "")
    banned = [w for w in banned_words if re.search(rf"\b{re.escape(w.lower())}\b", lowered)]
    return {
        "not_empty": len(text.strip()) >= 3,
        "length": len(text) <= max_chars,
        "banned_words": not banned,
        "grounded": not unsupported_claims(text),
        "locale_script": script_issue(own_words, locale) is None
        if own_words.strip(" 《》\"'：:")
        else locale == Locale.EN,
        # Repeating a title verbatim is no copy at all (the small model's favourite failure).
        "not_just_title": text.strip().strip('"').lower() not in {t.lower() for t in titles},
        "not_mostly_title": locale != Locale.EN or not _mostly_title(text, titles),
        "no_debris": not _DEBRIS.search(own_words)
        and not [
            i
            for i in word_issues(text)
            if i.code in ("handle", "prompt_field", "markup", "contact")
        ],
        "finished": not [i for i in word_issues(text) if i.code == "unfinished"],
    }


def _mostly_title(text: str, titles: list[str]) -> bool:
    """Most of the variant's words are the products' titles, and it adds fewer than three of
    its own ("Duracell D Alkaline Batteries, 14-count; Batteries", "Discover Toy Story")."""
    words = normalise(text).split()
    if not words:
        return True
    title_words = {w for t in titles for w in normalise(t).split()}
    own = sum(w not in title_words for w in words)
    return own < 3 and (len(words) - own) / len(words) > TITLE_SHARE_MAX
