"""Checks that reject nonsense in generated words, the way grounding rejects invented prices.

A small model that cannot do the task writes fluent-looking debris: the prompt's own
example ("Your weekend movie night" above a page of TVs), its handles and fields ("T1 Top
picks: P1 …", "30 past orders; likes Tops"), markup, or words unrelated to the section.
Each is caught here by what it is, not by a list of known outputs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher

_HANDLE = re.compile(r"\b[PT]\d{1,3}\b")
# Words of the prompts' own scaffolding: a page's words never need them.
_PROMPT_FIELDS = re.compile(
    r"\b(?:past orders?|recent items|new shopper|no history|theme:|headline:|title:|"
    r"shop:|page:|shopper:|themes:|json)|\|",
    re.I,
)
_MARKUP = re.compile(r"[<>{}\[\]`*#_=\\]|https?:|www\.|&\w+;")
# Ways to reach someone outside the shop: an e-mail address, a phone number (eight or more
# digits in one run of digits, spaces, dots, dashes and brackets), a web address.
_CONTACT = re.compile(
    r"[\w.+-]+@[\w-]+\.\w|\+?\(?\d(?:[\d\s().-]*\d){7,}|"
    r"\b[\w-]+\.(?:com|net|org|io|co|shop|store|info|biz|app|xyz|ru|cn|uk|de)\b",
    re.I,
)
_NORMAL = re.compile(r"[^\w\s]")
_DOUBLED = re.compile(r"\b(\w{3,})\W+\1\b", re.I)
# A line cut off by its length bound ends in a joining word or a hyphen.
_UNFINISHED = re.compile(r"(?:[-,&/]|\b(?:and|or|of|the|a|an|for|with|from|your|that))\s*$", re.I)
# Similar enough to an example to be a copy of it: a few characters apart on a short line.
COPY_RATIO = 0.85


@dataclass(frozen=True)
class WordIssue:
    code: str  # handle | prompt_field | markup | contact | repetitive | unfinished | copied_example
    message: str


def normalise(text: str) -> str:
    return " ".join(_NORMAL.sub(" ", text.lower()).split())


def copies(text: str, examples: Sequence[str], theme_names: Sequence[str] = ()) -> str | None:
    """The example ``text`` copies, or None. An example with its own theme swapped for this
    one ("Dresses for every day" → "Jeans for every day") is a copy too."""
    key = normalise(text)
    if not key:
        return None
    variants = [key]
    for name in theme_names:
        n = normalise(name)
        if n and n in key:
            variants.append(key.replace(n, "").strip())
    for example in examples:
        ex = normalise(example)
        if not ex:
            continue
        if any(v == ex or SequenceMatcher(None, v, ex).ratio() >= COPY_RATIO for v in variants):
            return example
        # The example's theme words replaced: compare what is left around them.
        rest = " ".join(w for w in ex.split() if w not in set(key.split()))
        left = " ".join(w for w in key.split() if w not in set(ex.split()))
        if len(ex.split()) >= 4 and len(rest.split()) <= 1 and len(left.split()) <= 1:
            return example
    return None


def word_issues(
    text: str,
    examples: Sequence[str] = (),
    prompt_fields: Sequence[str] = (),
    theme_names: Sequence[str] = (),
) -> list[WordIssue]:
    """Why ``text`` (a headline or title) cannot be shown; [] when it can."""
    out = []
    if _HANDLE.search(text):
        out.append(WordIssue("handle", "contains a product or theme handle (P1, T2)"))
    lowered = text.lower()
    leaked = _PROMPT_FIELDS.search(text) or next(
        (f for f in prompt_fields if f and len(f) > 6 and f.lower() in lowered), None
    )
    if leaked:
        out.append(WordIssue("prompt_field", "repeats a field of the prompt, not copy"))
    if _MARKUP.search(text):
        out.append(WordIssue("markup", "contains markup or a link"))
    if _CONTACT.search(text):
        out.append(WordIssue("contact", "contains an e-mail address, phone number or web address"))
    if _DOUBLED.search(text):
        out.append(WordIssue("repetitive", "says the same word twice in a row"))
    if _UNFINISHED.search(text):
        out.append(WordIssue("unfinished", "stops mid-phrase"))
    copied = copies(text, examples, theme_names)
    if copied:
        out.append(WordIssue("copied_example", f"copies the prompt's example '{copied}'"))
    return out


def mentions(text: str, words: Sequence[str]) -> bool:
    """``text`` names one of ``words`` (a category, a synonym, a product word): a stem for
    longer words ("comedies" names Comedy), whole words for short ones ("war", not "warm")."""
    lowered = text.lower()
    for w in words:
        w = w.lower().strip()
        if not w:
            continue
        if not w.isascii():
            if w in lowered:
                return True
            continue
        pattern = rf"\b{re.escape(w)}s?\b" if len(w) <= 4 else rf"\b{re.escape(w[:-1])}"
        if re.search(pattern, lowered):
            return True
    return False
