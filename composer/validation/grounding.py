"""Grounding checks on generated text: claims the catalog does not hold, and the script.

The catalog holds titles, categories and years; prices, stock and any discount, rating or
award never come from generated text. So any such statement in copy is unsupported.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from composer.layout import Locale

_CLAIMS: list[tuple[str, re.Pattern[str]]] = [
    (
        "price",
        re.compile(
            r"[$€£¥￥]\s?\d|\d\s?(?:usd|eur|gbp|rmb|dollars?|euros?|元|块)"
            r"|\bprice[ds]?\b|\bcosts?\b|价格|售价|只要",
            re.I,
        ),
    ),
    (
        "discount",
        re.compile(
            r"\d+\s?%|\d+\s?per\s?cent|\b(?:discount\w*|on sale|deals|"
            r"bargains?|save (?:up to|\d)|savings|cheap(?:er|est)?|clearance|"
            r"half[- ]price|\d+ off)\b|free shipping|打折|折扣|优惠|特价|促销|"
            r"包邮|秒杀|\d折",
            re.I,
        ),
    ),
    (
        "rating",
        re.compile(
            r"\b(?:rated|ratings?|\d(?:\.\d)?\s?stars?|five[- ]stars?|"
            r"star rating|reviews?|top[- ]rated)\b|★|☆|"
            r"评分|好评|星级",
            re.I,
        ),
    ),
    (
        "claim",
        re.compile(
            r"\b(?:best[- ]?sell\w*|bestsellers?|#\s?1|number one|award[- ]"
            r"winning|guaranteed|limited time|sold out|in stock|only \d+ left)"
            r"\b|销量第一|畅销|热卖|库存|限时|保证",
            re.I,
        ),
    ),
]
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"[A-Za-z]")


@dataclass(frozen=True)
class TextIssue:
    code: str  # "unsupported_price" | … | "wrong_script"
    message: str


_QUOTED = re.compile(r"“[^”]*”")


def unsupported_claims(text: str) -> list[TextIssue]:
    out = []
    for kind, pattern in _CLAIMS:
        m = pattern.search(text)
        if m:
            out.append(
                TextIssue(
                    f"unsupported_{kind}",
                    f"states a {kind} ('{m.group(0)}') that the catalog does not "
                    "hold; prices and offers are shown by the page itself",
                )
            )
    return out


def script_issue(text: str, locale: Locale) -> TextIssue | None:
    # A quotation (“…”) is the shopper's own query, in whatever script they typed it.
    text = _QUOTED.sub("", text)
    cjk = len(_CJK.findall(text))
    latin = len(_LATIN.findall(text))
    if locale == Locale.ZH and (cjk == 0 or latin > 2 * cjk):
        return TextIssue("wrong_script", "must be written in Simplified Chinese")
    if locale == Locale.EN and cjk > 0:
        return TextIssue("wrong_script", "must be written in English, without Chinese characters")
    return None


def text_issues(text: str, locale: Locale) -> list[TextIssue]:
    issues = unsupported_claims(text)
    script = script_issue(text, locale)
    if script:
        issues.append(script)
    return issues
