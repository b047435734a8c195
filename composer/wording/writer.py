"""Headlines and page titles as short, checked completions, one field at a time.

For each field the model gets a few lines written for this shop (never the field's own
theme) and continues the pattern. Several sampled candidates come back (vLLM's ``n``
shares the prefill; in-process, the prefix cache does); each is checked — claims, script,
length, loops, handles, prompt fields, markup, copies of the examples, fit to the theme —
and the best remaining one is shown. When none passes, the field gets the rules text and
the trace says why. A page's fields go to the model as one batch (one step decodes every
field's candidates; on a CPU eight rows cost about 1.5x two) and are chosen in page order,
so no headline repeats one above it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from composer.layout import Locale
from composer.layout.model import HEADLINE_MAX, HEADLINE_MIN, TITLE_MAX, ZH_CHARS
from composer.llm.base import DEADLINE, Generation, GenerationRequest, LLMBackend, generate_batch
from composer.prompting import PromptLibrary
from composer.settings import WordSettings
from composer.shop import ShopProfile
from composer.validation.checks import text_checks
from composer.validation.words import mentions, normalise, word_issues
from composer.wording.examples import headline_examples
from composer.wording.themes import ThemeWords

Similarity = Callable[[str, str], float]


def encoder_similarity(encoder: Any) -> Similarity:
    """Cosine similarity of two texts under a normalising encoder (``encode_one``)."""
    return lambda a, b: float(encoder.encode_one(a) @ encoder.encode_one(b))


# Headlines and titles longer than this read as a list or a sentence, not as copy.
HEADLINE_CHARS = 48
TITLE_CHARS = 40
ZH_HEADLINE_CHARS = 12
NO_CAP = 999  # Chinese words end where they end: no cut-off check by length
# vLLM refuses more than 128 banned token sequences a request, and each run is banned in two
# tokenisations (line start, after a space).
MAX_AVOID = 64


def field_regex(locale: Locale, lo: int, hi: int, commas: bool = True) -> str:
    """One line of plain words: no markup, colons or pipes; bounded length. A title has no
    commas: given theme names, the model otherwise lists them."""
    if locale == Locale.ZH:
        return f" ?[{ZH_CHARS}]{{{lo},{min(hi, ZH_HEADLINE_CHARS)}}}\\n"
    punct = ",." if commas else ""
    return f" ?[A-Z0-9][A-Za-z0-9 {punct}'’&!?-]{{{lo - 1},{hi - 1}}}\\n"


@dataclass
class Candidate:
    text: str
    issues: list[str] = field(default_factory=list)
    score: float = 0.0


@dataclass(frozen=True)
class WordField:
    """One headline or title to write: its prompt, its bounds and how to judge it."""

    where: str  # "sections[0].headline" or "title"
    prompt: str
    regex: str
    seed: int
    words: tuple[str, ...]  # the theme's words: naming one is naming the theme
    theme_text: str  # what the similarity check compares against
    theme_names: tuple[str, ...]  # labels that are not copy on their own
    fallback: str  # the rules text
    lo: int
    hi: int
    cap: int  # characters at which a candidate counts as cut off
    avoid: tuple[str, ...] = ()  # runs of the prompt's example words not to write


@dataclass
class WordChoice:
    where: str  # "sections[0].headline" or "title"
    text: str
    source: str  # "llm" or "rules"
    candidates: list[Candidate]
    tokens: int = 0
    seconds: float = 0.0
    late: bool = False  # the deadline passed before the model answered this field

    def to_dict(self) -> dict[str, Any]:
        return {
            "where": self.where,
            "text": self.text,
            "source": self.source,
            "tokens": self.tokens,
            "seconds": round(self.seconds, 3),
            "candidates": [vars(c) for c in self.candidates],
        }


def example_runs(examples: Sequence[str], n: int) -> tuple[str, ...]:
    """Every run of ``n`` words in ``examples`` (case as written), for the decoder to ban;
    () when ``n`` is 0."""
    if n < 1:
        return ()
    runs: dict[str, None] = {}
    for example in examples:
        words = example.split()
        for i in range(len(words) - n + 1):
            runs[" ".join(words[i : i + n])] = None
    return tuple(runs)


def _theme_names(themes: Sequence[ThemeWords]) -> set[str]:
    names: set[str] = set()
    for t in themes:
        names |= {t.category} if t.category else set()
        names |= set(t.label.split(" & "))
    return names


class WordWriter:
    def __init__(
        self,
        backend: LLMBackend,
        prompts: PromptLibrary,
        prompt_name: str,
        profile: ShopProfile,
        settings: WordSettings,
        similarity: Similarity | None = None,
    ) -> None:
        self.backend = backend
        self.prompts = prompts
        self.prompt_name = prompt_name
        self.profile = profile
        self.settings = settings
        self.similarity = similarity
        self._examples = profile.example_texts()

    def prompt_texts(self) -> list[str]:
        """Fixed text of every prompt this writer renders: what a page must not repeat."""
        return list(self._examples)

    def headline(
        self,
        where: str,
        theme: ThemeWords,
        locale: Locale,
        salt: str,
        seed: int,
        fallback: str,
        page_themes: Sequence[ThemeWords] = (),
    ) -> WordField:
        """``page_themes``: every theme on the page. Their examples are left out for every
        section, so all of a page's prompts share one prefix (the shop line and the
        examples; decoded once for the whole batch) and none shows a theme the page is
        about."""
        examples = self._few_shot(locale, [theme, *page_themes], [theme], salt)
        variables = self._base(locale) | {"examples": examples, "theme": theme.label}
        prompt = self.prompts.render_block(self.prompt_name, "headline", variables)
        names = (theme.label, *(theme.category or "").split(), *theme.label.split(" & "))
        return WordField(
            where, prompt, field_regex(locale, HEADLINE_MIN, HEADLINE_CHARS), seed,
            tuple(theme.words), theme.text, names, fallback, HEADLINE_MIN, HEADLINE_MAX,
            NO_CAP if locale == Locale.ZH else HEADLINE_CHARS, self._avoid(examples, locale),
        )  # fmt: skip

    def title(
        self,
        themes: Sequence[ThemeWords],
        locale: Locale,
        salt: str,
        seed: int,
        fallback: str,
    ) -> WordField:
        """A headline for the page's two leading themes, under a title's bounds."""
        lead = [t for t in themes if t.category][:2] or list(themes[:1])
        label = " & ".join(dict.fromkeys(part for t in lead for part in t.label.split(" & ")))
        examples = self._few_shot(locale, themes, lead, salt)
        variables = self._base(locale) | {"examples": examples, "theme": label}
        prompt = self.prompts.render_block(self.prompt_name, "title", variables)
        words = tuple(w for t in themes for w in t.words)
        names = (label, *(part for t in themes for part in t.label.split(" & ")))
        return WordField(
            "title", prompt, field_regex(locale, 3, TITLE_CHARS, commas=False), seed, words,
            "; ".join(t.text for t in lead), names, fallback, 3, TITLE_MAX,
            NO_CAP if locale == Locale.ZH else TITLE_CHARS, self._avoid(examples, locale),
        )  # fmt: skip

    def write(
        self,
        fields: Sequence[WordField],
        locale: Locale,
        prompt_fields: Sequence[str],
        deadline: float | None = None,
        chosen: Sequence[str] = (),
    ) -> list[WordChoice]:
        """Every field's candidates in one batch, then a choice per field in order: a field
        may not repeat one chosen before it (nor ``chosen``, the texts an earlier batch of
        the page chose). Fields the deadline left unanswered keep their rules text
        (``late``)."""
        started = time.perf_counter()
        requests = [self._request(f) for f in fields]
        answers = generate_batch(self.backend, requests, deadline)
        seconds = time.perf_counter() - started
        taken: list[str] = list(chosen)
        choices: list[WordChoice] = []
        for f, generations in zip(fields, answers, strict=True):
            choice = self._choose(f, generations, locale, taken, prompt_fields, seconds)
            taken.append(choice.text)
            choices.append(choice)
        return choices

    # -- pieces ----------------------------------------------------------------------------

    def _few_shot(
        self,
        locale: Locale,
        page_themes: Sequence[ThemeWords],
        own_themes: Sequence[ThemeWords],
        salt: str,
    ) -> list[tuple[str, str]]:
        """Examples of themes not on the page; from a small bank, of themes other than the
        field's own."""
        bank = self.profile.for_locale(locale)
        k = self.settings.examples
        examples = headline_examples(bank, _theme_names(page_themes), salt, k)
        if len(examples) < 2:
            examples = headline_examples(bank, _theme_names(own_themes), salt, k)
        return examples

    def _base(self, locale: Locale) -> dict[str, Any]:
        return {
            "shop_name": self.profile.name,
            "sells": self.profile.sells,
            "voice": self.profile.brand_voice,
            "locale": locale.value,
        }

    def _avoid(self, examples: Sequence[tuple[str, str]], locale: Locale) -> tuple[str, ...]:
        """Runs of words of the examples this prompt shows: what the model copies is what it
        sees. Words are runs between spaces, so Chinese examples have none to ban."""
        if locale != Locale.EN:
            return ()
        return example_runs([text for _, text in examples], self.settings.avoid_ngram)[:MAX_AVOID]

    def _request(self, f: WordField) -> GenerationRequest:
        return GenerationRequest(
            messages=(),
            prompt=f.prompt,
            regex=f.regex,
            stop=("\n",),
            max_tokens=self.settings.max_tokens,
            temperature=self.settings.temperature,
            seed=f.seed,
            n=self.settings.candidates,
            weights=self.settings.weights,
            avoid=f.avoid,
        )

    def _choose(
        self,
        f: WordField,
        generations: Sequence[Generation],
        locale: Locale,
        taken: Sequence[str],
        prompt_fields: Sequence[str],
        seconds: float,
    ) -> WordChoice:
        tokens = sum(g.tokens for g in generations)
        answered = [g for g in generations if g.finish_reason != DEADLINE]
        seen: set[str] = set()
        candidates: list[Candidate] = []
        for g in answered:
            text = " ".join(g.text.split())
            if not text or normalise(text) in seen:
                continue
            seen.add(normalise(text))
            candidate = self._judge(
                text, locale, f.words, f.theme_text, f.theme_names, taken, prompt_fields,
                f.lo, f.hi, f.cap,
            )  # fmt: skip
            if g.finish_reason == "length" and "unfinished" not in candidate.issues:
                candidate.issues.append("unfinished")  # cut off by max_tokens
            candidates.append(candidate)
        passing = [c for c in candidates if not c.issues]
        late = not answered
        if passing:
            best = max(passing, key=lambda c: c.score)
            return WordChoice(f.where, best.text, "llm", candidates, tokens, seconds)
        return WordChoice(f.where, f.fallback, "rules", candidates, tokens, seconds, late)

    def _judge(
        self,
        text: str,
        locale: Locale,
        words: Sequence[str],
        theme_text: str,
        theme_names: Sequence[str],
        taken: Sequence[str],
        prompt_fields: Sequence[str],
        lo: int,
        hi: int,
        hi_chars: int,
    ) -> Candidate:
        issues = [i.code for i in text_checks("text", text, locale, lo, hi)]
        issues += [i.code for i in word_issues(text, self._examples, prompt_fields, theme_names)]
        if normalise(text) in {normalise(t) for t in taken}:
            issues.append("repeats_page")
        lowered = f" {normalise(text)} "
        if any(f" {normalise(w)} " in lowered for w in self.profile.banned_words):
            issues.append("banned_word")
        if locale == Locale.EN and len(text.split()) < 2:
            issues.append("too_short")  # one word is a label ("Adventure"), not copy
        if normalise(text) in {normalise(n) for n in theme_names}:
            issues.append("echo")  # the theme's own name is a label, not a headline
        if len(text) >= hi_chars - 1:
            issues.append("unfinished")  # cut off by the length bound of the grammar
        named = mentions(text, words)
        # MiniLM is an English model: for Chinese words its similarity means nothing, so a
        # Chinese headline must name its theme (the 135M model's Chinese is mostly debris
        # that passes every other check: "领度福福").
        measured = self.similarity is not None and locale != Locale.ZH
        similarity = self.similarity(text, theme_text) if measured and self.similarity else 0.0
        if not named and (not measured or similarity < self.settings.theme_fit_min):
            issues.append("off_theme")
        # Naming the theme matters most; meaning breaks ties between candidates that do;
        # past six words, shorter reads better.
        wordy = max(0, len(text.split()) - 6) * 0.1
        return Candidate(text, issues, round(float(named) + similarity - wordy, 4))
