"""What the harness measures, per example; aggregation happens in :mod:`.compare`.

Grounding and structure are measured on what the *model* wrote (every attempt, before the
pipeline repaired or replaced it), so a prompt that makes the model state prices shows up
even though the shopper never sees them; ``*_shown`` metrics look at the final page.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from composer.copybook import copybook
from composer.copywriting import CopyResult
from composer.evaluation.copy_rules import CopyRules
from composer.evaluation.gen_cache import CallRecord
from composer.hydration import HydratedSection
from composer.layout import Locale, PageLayout
from composer.pipeline import PageResult
from composer.validation import (
    copies,
    mentions,
    normalise,
    script_issue,
    unsupported_claims,
    word_issues,
)
from composer.wording.themes import title_words
from retrieval.metrics import hit_rate_at_k, ndcg_at_k
from retrieval.themes import TOP_PICKS

Stat = Literal["mean", "median", "distinct_2"]
NAN = float("nan")


@dataclass(frozen=True)
class Metric:
    name: str  # as reported
    field: str  # the per-example value it aggregates
    stat: Stat
    higher_is_better: bool
    group: str
    meaning: str


def _m(
    name: str, group: str, meaning: str, higher: bool = True, field: str = "", stat: Stat = "mean"
) -> Metric:
    return Metric(name, field or name, stat, higher, group, meaning)


_PAGE_METRICS = (
    _m(
        "valid_rate",
        group="structure",
        field="valid",
        meaning="final page parses against the layout model, no unknown or repeated handle",
    ),
    _m(
        "first_pass_rate",
        group="structure",
        field="first_pass",
        meaning="the model's first answer passed every check (no retry, no fallback)",
    ),
    _m(
        "repairs",
        group="structure",
        higher=False,
        meaning="slot repairs per page (dropped or refilled handles, hero moved)",
    ),
    _m(
        "retry_rate",
        group="structure",
        higher=False,
        field="retried",
        meaning="pages that needed the second attempt",
    ),
    _m(
        "fallback_rate",
        group="structure",
        higher=False,
        field="fallback",
        meaning="pages that ended as the rules page",
    ),
    _m(
        "unknown_handles",
        group="structure",
        higher=False,
        meaning="product handles the model wrote that are not candidates, per page (an "
        "answer that is not JSON counts as one)",
    ),
    _m(
        "repeated_handles",
        group="structure",
        higher=False,
        meaning="product handles the model wrote twice on one page, per page",
    ),
    _m(
        "grounding_errors",
        group="grounding",
        higher=False,
        meaning="generated title/headlines (every attempt) with a price, discount, rating "
        "or claim, or in the wrong script, per page (an answer that is not JSON counts as "
        "one)",
    ),
    _m(
        "unsupported_claims",
        group="grounding",
        higher=False,
        meaning="generated fields with a price, discount, rating or claim, per page",
    ),
    _m(
        "wrong_script",
        group="grounding",
        higher=False,
        meaning="generated fields in the wrong script for the locale, per page",
    ),
    _m(
        "grounding_errors_shown",
        group="grounding",
        higher=False,
        meaning="grounding errors on the final page (the checks keep this at 0)",
    ),
    _m(
        "page_hit@10",
        group="relevance",
        meaning="a held-out product among the first 10 on the page",
    ),
    _m(
        "page_ndcg@10",
        group="relevance",
        meaning="NDCG@10 of the page's product order against held-out products",
    ),
    _m(
        "retrieval_hit@10",
        group="relevance",
        meaning="the same for the retrieval order alone (no placement)",
    ),
    _m("retrieval_ndcg@10", group="relevance", meaning="NDCG@10 of the retrieval order alone"),
    _m(
        "ndcg_vs_retrieval",
        group="relevance",
        field="ndcg_delta",
        meaning="page NDCG@10 minus retrieval NDCG@10 (placement may not make it worse)",
    ),
    _m(
        "prompt_copy_rate",
        group="copy",
        higher=False,
        field="prompt_copied",
        meaning="generated title/headlines (every attempt and candidate) that repeat, or "
        "nearly repeat, the prompt's fixed text: its examples",
    ),
    _m(
        "distinct_titles",
        group="copy",
        field="title_key",
        stat="distinct_2",
        meaning="distinct page titles / pages across the suite's requests",
    ),
    _m(
        "distinct_headlines",
        group="copy",
        field="headline_keys",
        stat="distinct_2",
        meaning="distinct headlines / headlines across the suite's requests",
    ),
    _m(
        "layout_variety",
        group="copy",
        field="layout_key",
        stat="distinct_2",
        meaning="distinct sequences of section kinds / pages",
    ),
    _m(
        "nonsense_shown",
        group="copy",
        higher=False,
        meaning="shown title/headlines with handles, prompt fields or markup, per page",
    ),
    _m(
        "words_rejected_rate",
        group="copy",
        higher=False,
        field="words_rejected",
        meaning="generated candidates the checks rejected (copies, off-theme, nonsense, …)",
    ),
    _m(
        "words_replaced_rate",
        group="copy",
        higher=False,
        field="words_replaced",
        meaning="title/headline fields that kept the rules text: no candidate passed",
    ),
    _m(
        "headline_length_ok",
        group="copy",
        meaning="shown headlines within the suite's length bounds",
    ),
    _m("banned_words", group="copy", higher=False, meaning="banned words on the shown page"),
    _m(
        "theme_mention",
        group="copy",
        meaning="headlines naming their theme: its category, a synonym, or a word of its products",
    ),
    _m(
        "distinct_2",
        group="copy",
        field="bigrams",
        stat="distinct_2",
        meaning="distinct word bigrams / all bigrams of shown titles and headlines across pages",
    ),
    _m(
        "echo_headlines",
        group="copy",
        higher=False,
        meaning="shown headlines that only repeat their theme's name or a product title",
    ),
    _m(
        "degenerate_text",
        group="copy",
        higher=False,
        meaning="shown title/headlines that loop (爱爱爱…, one word three times running)",
    ),
    _m(
        "model_words_rate",
        group="copy",
        field="model_words",
        meaning="shown title and headlines whose text the model wrote (not the rules text)",
    ),
    _m(
        "tokens_p50",
        group="cost",
        higher=False,
        field="tokens",
        stat="median",
        meaning="generated tokens per page",
    ),
    _m(
        "latency_p50_s",
        group="cost",
        higher=False,
        field="latency_s",
        stat="median",
        meaning="seconds per page (generation time as measured when it was generated)",
    ),
    _m(
        "judged_good_rate",
        group="words",
        field="judged_good",
        meaning="shown fields the model wrote that the word judge labels good (ships as is); "
        "for the rules backend, its own words",
    ),
    _m(
        "judged_nonsense_rate",
        group="words",
        higher=False,
        field="judged_nonsense",
        meaning="shown fields the model wrote that the word judge labels nonsense; for the "
        "rules backend, its own words",
    ),
    _m(
        "shown_good_rate",
        group="words",
        field="shown_good",
        meaning="every shown title and headline, whoever wrote it, labelled good by the judge",
    ),
    _m(
        "judge_win_rate",
        group="judge",
        field="judge_score",
        meaning="LLM judge preference over the reference variant (win 1, tie 0.5), order-swapped",
    ),
    _m(
        "judge_agreement",
        group="judge",
        field="judge_agree",
        meaning="the judge gave the same verdict in both orders",
    ),
)

_COPY_METRICS = (
    _m("pass_rate", group="structure", meaning="shown variants passing every copy check"),
    _m(
        "rejected_rate",
        group="structure",
        higher=False,
        field="rejected",
        meaning="model variants the checks rejected (a title, debris, off-topic, a copied "
        "example, …) and never showed",
    ),
    _m(
        "fallback_rate",
        group="structure",
        higher=False,
        field="fallback",
        meaning="requests topped up from templates or served by rules",
    ),
    _m(
        "grounding_errors",
        group="grounding",
        higher=False,
        meaning="variants with a price, discount, rating or claim, or the wrong script",
    ),
    _m("length_ok", group="copy", meaning="variants within max_chars"),
    _m("banned_words", group="copy", higher=False, meaning="variants with banned words"),
    _m("theme_mention", group="copy", meaning="variants naming the product's genre"),
    _m(
        "distinct_2",
        group="copy",
        field="bigrams",
        stat="distinct_2",
        meaning="distinct word bigrams / all bigrams across requests",
    ),
    _m(
        "tokens_p50",
        group="cost",
        higher=False,
        field="tokens",
        stat="median",
        meaning="generated tokens per request",
    ),
    _m(
        "latency_p50_s",
        group="cost",
        higher=False,
        field="latency_s",
        stat="median",
        meaning="seconds per request",
    ),
)


def metrics_for(task: str, groups: Iterable[str] | None = None) -> list[Metric]:
    table = _PAGE_METRICS if task == "pages" else _COPY_METRICS
    wanted = set(groups) if groups is not None else None
    return [m for m in table if wanted is None or m.group in wanted]


def metric_names(task: str) -> list[str]:
    return [m.name for m in metrics_for(task)]


# -- text helpers --------------------------------------------------------------------------

_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_WORD = re.compile(r"[\w'’-]+")
# A Han character alone, or a run of other word characters (inner ' and - kept: "sci-fi").
_TOKEN = re.compile(f"[{_HAN}]|[^\\W{_HAN}]+(?:['’-][^\\W{_HAN}]+)*")


def tokens_of(text: str) -> list[str]:
    """Lower-case words, with every CJK character a word of its own (no spaces in Chinese)."""
    return [t for t in _TOKEN.findall(text.lower()) if t.strip("'’-")]


def bigrams(text: str) -> list[str]:
    toks = tokens_of(text)
    return [f"{a} {b}" for a, b in itertools.pairwise(toks)]


def distinct_n(bigram_lists: Sequence[Sequence[str]]) -> float:
    """Distinct bigrams over all bigrams of a corpus: 1.0 when nothing repeats."""
    total = sum(len(b) for b in bigram_lists)
    if total == 0:
        return NAN
    return len({g for b in bigram_lists for g in b}) / total


def grounding_counts(text: str, locale: Locale) -> tuple[int, int]:
    """(has an unsupported claim, is in the wrong script) for one generated field."""
    return int(bool(unsupported_claims(text))), int(script_issue(text, locale) is not None)


def headline_length_ok(text: str, locale: Locale, rules: CopyRules) -> bool:
    if locale == Locale.ZH:
        lo, hi = rules.headline_chars_zh
        return lo <= len(re.sub(r"\s", "", text)) <= hi
    lo, hi = rules.headline_words
    return lo <= len(_WORD.findall(text)) <= hi


def mentions_theme(text: str, category: str, locale: Locale, rules: CopyRules) -> bool:
    words = [category, *rules.theme_words.get(category, [])]
    if locale == Locale.ZH:
        local = copybook(locale).category(category)
        words += [local, local.removesuffix("片")]
    return mentions(text, words)


def degenerate(text: str) -> bool:
    """Text that loops: one token three times running, or a longer text made of few tokens."""
    toks = tokens_of(text)
    if any(a == b == c for a, b, c in zip(toks, toks[1:], toks[2:], strict=False)):
        return True
    return len(toks) >= 6 and len(set(toks)) / len(toks) < 0.5


def echoes(headline: str, names: Sequence[str]) -> bool:
    """The headline is just one of ``names`` (its theme, a product title), nothing written."""
    key = " ".join(tokens_of(headline))
    return bool(key) and any(key == " ".join(tokens_of(n)) for n in names)


def banned_count(text: str, banned: Sequence[str]) -> int:
    lowered = text.lower()
    return sum(len(re.findall(rf"\b{re.escape(w.lower())}\b", lowered)) for w in banned)


# -- per example ---------------------------------------------------------------------------


def page_metrics(
    result: PageResult,
    calls: Sequence[CallRecord],
    relevant: frozenset[str],
    locale: Locale,
    rules: CopyRules,
    banned: Sequence[str],
    latency_s: float,
) -> dict[str, float | list[str]]:
    trace = result.trace
    handle_set = {c["handle"] for c in trace.candidates}

    # What the model wrote, attempt by attempt.
    unknown = repeated = flagged = claims = script = 0
    written: list[str] = []
    # A page asked for as one JSON answer (no words in the trace) that the model did not
    # write as JSON cannot be checked: it counts as a failure of handles and of grounding,
    # not as nothing. (Words pages call the model for plain completions, never JSON.)
    json_mode = not trace.words
    for call in calls:
        page = _loose_page(call.text)
        if page is None:
            unknown += json_mode
            flagged += json_mode
            continue
        items: list[str] = []
        texts = [page.get("title")] + [s.get("headline") for s in page.get("sections", [])]
        for sec in page.get("sections", []):
            items += [h for h in sec.get("items", []) if isinstance(h, str)]
        unknown += sum(1 for h in items if h not in handle_set)
        repeated += len(items) - len(set(items))
        for t in texts:
            if isinstance(t, str) and t.strip():
                written.append(t)
                c, s = grounding_counts(t, locale)
                flagged += bool(c or s)
                claims += c
                script += s

    # Words mode: every candidate the model wrote, before the checks chose one.
    for word in trace.words:
        for cand in word.get("candidates", []):
            written.append(cand.get("text", ""))
            codes = cand.get("issues", [])
            c = int(any(code.startswith("unsupported_") for code in codes))
            sc = int("wrong_script" in codes)
            flagged += bool(c or sc)
            claims += c
            script += sc

    layout = result.layout
    shown = [layout.title] + [s.headline for s in layout.sections]
    examples = trace.prompt_examples
    # On what the model wrote: the checks keep copies off the page, so the page alone would
    # hide a prompt that makes the model copy.
    copied = [copies(t, examples) is not None for t in written]
    nonsense = [
        any(i.code in ("handle", "prompt_field", "markup") for i in word_issues(t)) for t in shown
    ]
    candidates = [c for w in trace.words for c in w.get("candidates", [])]
    shown_errors = sum(sum(grounding_counts(t, locale)) > 0 for t in shown)
    valid = _valid(layout, handle_set)

    page_ids = result.page.product_ids()
    retrieval_ids = [c["product_id"] for c in trace.candidates]

    headlines = [s.headline for s in layout.sections]
    length_ok = [headline_length_ok(h, locale, rules) for h in headlines]
    named = [
        mentions(sec.headline, section_words(sec, locale, rules)) for sec in result.page.sections
    ]
    echoed = [
        echoes(
            sec.headline,
            [sec.theme, theme_category(sec.theme, locale) or TOP_PICKS]
            + [s.product.title for s in sec.slots],
        )
        for sec in result.page.sections
    ]

    attempts = trace.attempts
    first = attempts[0] if attempts else None
    first_pass = (
        first is not None
        and not first.issues
        and first.error is None
        and len(attempts) == 1
        and not trace.fallback
    )
    return {
        "valid": float(valid),
        "first_pass": float(first_pass),
        "repairs": float(len(trace.repairs)),
        "retried": float(len(attempts) > 1),
        "fallback": float(trace.fallback),
        "unknown_handles": float(unknown),
        "repeated_handles": float(repeated),
        "grounding_errors": float(flagged),
        "unsupported_claims": float(claims),
        "wrong_script": float(script),
        "grounding_errors_shown": float(shown_errors),
        "page_hit@10": hit_rate_at_k(page_ids, relevant, 10),
        "page_ndcg@10": ndcg_at_k(page_ids, relevant, 10),
        "retrieval_hit@10": hit_rate_at_k(retrieval_ids, relevant, 10),
        "retrieval_ndcg@10": ndcg_at_k(retrieval_ids, relevant, 10),
        "ndcg_delta": ndcg_at_k(page_ids, relevant, 10) - ndcg_at_k(retrieval_ids, relevant, 10),
        "prompt_copied": _mean_or_nan(copied),
        "title_key": [normalise(layout.title)],
        "headline_keys": [normalise(h) for h in headlines],
        "layout_key": ["/".join(s.kind.value for s in layout.sections)],
        "nonsense_shown": float(sum(nonsense)),
        "words_rejected": _mean_or_nan([bool(c.get("issues")) for c in candidates]),
        "words_replaced": _mean_or_nan([w.get("source") != "llm" for w in trace.words]),
        "headline_length_ok": _mean_or_nan(length_ok),
        "banned_words": float(sum(banned_count(t, banned) for t in shown)),
        "theme_mention": _mean_or_nan(named),
        "bigrams": [g for t in shown for g in bigrams(t)],
        "echo_headlines": _mean_or_nan(echoed),
        "degenerate_text": float(sum(degenerate(t) for t in shown)),
        "tokens": float(trace.tokens),
        "latency_s": round(latency_s, 3),
    }


def copy_metrics(
    result: CopyResult,
    categories: Sequence[str],
    rules: CopyRules,
    banned: Sequence[str],
    latency_s: float,
) -> dict[str, float | list[str]]:
    variants = result.variants
    n = max(len(variants), 1)
    mentions = [
        any(mentions_theme(v.text, c, result.locale, rules) for c in categories) for v in variants
    ]
    written = len(variants) + len(result.rejected)
    return {
        "pass_rate": sum(v.passed for v in variants) / n,
        "rejected": len(result.rejected) / written if written else NAN,
        "fallback": float(result.fallback),
        "grounding_errors": float(
            sum(
                not (v.checks.get("grounded", True) and v.checks.get("locale_script", True))
                for v in variants
            )
        ),
        "length_ok": sum(v.checks.get("length", True) for v in variants) / n,
        "banned_words": float(sum(banned_count(v.text, banned) > 0 for v in variants)),
        "theme_mention": _mean_or_nan(mentions) if categories else NAN,
        "bigrams": [g for v in variants for g in bigrams(v.text)],
        "tokens": float(result.tokens),
        "latency_s": round(latency_s, 3),
    }


def section_words(section: HydratedSection, locale: Locale, rules: CopyRules) -> list[str]:
    """Words that name a section's theme: its category and synonyms, its products'
    categories, and words of its products' titles."""
    words: list[str] = []
    category = theme_category(section.theme, locale)
    cats = [category] if category else []
    cats += [c for s in section.slots for c in s.product.categories[:2]]
    for c in dict.fromkeys(cats):
        words += [c, *rules.theme_words.get(c, [])]
        if locale == Locale.ZH:
            local = copybook(locale).category(c)
            words += [local, local.removesuffix("片")]
    for s in section.slots:
        words += title_words(s.product.title)
    return list(dict.fromkeys(w for w in words if w))


def theme_category(shown_theme: str, locale: Locale) -> str | None:
    """The genre behind a section's theme as the page shows it (None for "Top picks")."""
    names = copybook(locale).data.get("categories", {}) or {}
    raw = next((k for k, v in names.items() if v == shown_theme), shown_theme)
    return None if raw in ("", TOP_PICKS) else raw


def _valid(layout: PageLayout, candidates: set[str]) -> bool:
    try:
        PageLayout.model_validate(layout.model_dump())
    except ValueError:
        return False
    handles = layout.handles()
    return bool(handles) and set(handles) <= candidates and len(handles) == len(set(handles))


def _loose_page(text: str) -> dict | None:
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def _mean_or_nan(values: Sequence[bool]) -> float:
    return sum(values) / len(values) if values else NAN


def is_nan(value: float) -> bool:
    return isinstance(value, float) and math.isnan(value)
