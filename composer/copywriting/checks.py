"""The checks every copy variant is held to; each reports pass or fail separately."""

from __future__ import annotations

import re

from composer.layout import Locale
from composer.validation import script_issue, unsupported_claims


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
    }
