"""Page words: the checks that reject nonsense and copies, the theme-fit threshold they use,
and headlines and titles written by the real 135M model from the shop's own examples."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import CACHE, BuiltShop

from composer.backends import BackendRegistry
from composer.errors import UsageError
from composer.layout import Locale
from composer.llm.rules_backend import RulesBackend
from composer.page_request import PageRequest
from composer.pipeline import DoneEvent, PageComposer, SectionEvent
from composer.prompting import PromptLibrary
from composer.settings import BackendName, Settings
from composer.shop import load_profile
from composer.validation import copies, mentions, word_issues
from composer.wording import ThemeWords, WordSettings, WordWriter, example_runs
from retrieval import Encoder

MOVIE_EXAMPLES = ["Your weekend movie night", "Laughs worth sharing", "Picked for your taste"]


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("T1 Top picks: P1 HP ENVY x360 15.6", "handle"),
        ("Top picks: 30 past orders", "prompt_field"),
        ("Theme: TVs | Headline: Big screens", "prompt_field"),
        ("Top picks:</strong> for you", "markup"),
        ("Your weekend movie night", "copied_example"),
        ("Your Weekend Movie Nights!", "copied_example"),
        ("Comedy comedy films with a twist", "repetitive"),
        ("Romance adventures, from fine wine lists and", "unfinished"),
        ("Call 1-800-555-0199 for deals", "contact"),
        ("Write to sales@example.org today", "contact"),
        ("Best phones at phonedeals.com", "contact"),
    ],
)
def test_nonsense_and_copies_are_rejected_by_what_they_are(text: str, code: str) -> None:
    issues = word_issues(text, MOVIE_EXAMPLES, ["30 past orders; likes Tops, Dresses"])
    assert code in [i.code for i in issues]


@pytest.mark.parametrize(
    "text",
    ["TVs that make you happy", "Laptops that keep up with you", "Denim you will live in"],
)
def test_good_headlines_pass(text: str) -> None:
    assert word_issues(text, MOVIE_EXAMPLES, ["12 past orders"]) == []


def test_an_example_with_only_its_theme_swapped_is_a_copy() -> None:
    examples = ["Dresses for every day of the week"]
    assert copies("Jeans for every day of the week", examples, ["Jeans"]) is not None
    assert copies("Jeans you will wear every week", examples, ["Jeans"]) is None


def test_theme_mention_counts_stems_and_whole_short_words() -> None:
    assert mentions("Comedies for a slow Sunday", ["Comedy"])
    assert mentions("War stories", ["war"]) and not mentions("Warm evenings", ["war"])
    assert mentions("为你挑选的喜剧", ["喜剧"])


# Measured for the threshold in WordSettings.theme_fit_min: headlines a person would accept
# for the theme without naming it, and nonsense or other shops' lines.
THEMES = {
    "TVs": 'TVs: Samsung 55" Class Q60C Series 4K UHD QLED LCD TV; LG 65" Class OLED C3 TV',
    "Jeans": "Jeans: Jeans, style 1077; Jeans, style 862",
    "Comedy": "Comedy: Toy Story (1995); Liar Liar (1997); Groundhog Day (1993)",
}
GOOD = {
    "TVs": ["Smart TVs", "TV that lets you watch movies"],
    "Jeans": ["Jeans for every day", "Denim you will live in"],
    "Comedy": ["Comedies for a lighter evening", "Funny films for the weekend"],
}
BAD = [
    "Temp_Advance 2022 GA Office 3:12:27",
    "Regular, whatever your life setting",
    "MRU, Sennheil",
    "What a good day",
    "Soft layers for cool evenings",
]


def test_theme_fit_threshold_separates_good_from_bad(encoder: Encoder) -> None:
    minimum = WordSettings().theme_fit_min

    def fits(text: str, theme: str) -> bool:
        words = [theme, "denim"] if theme == "Jeans" else [theme]
        sim = float(encoder.encode_one(text) @ encoder.encode_one(THEMES[theme]))
        return mentions(text, words) or sim >= minimum

    for theme, texts in GOOD.items():
        assert all(fits(t, theme) for t in texts), theme
    for theme in THEMES:
        assert not any(fits(t, theme) for t in BAD), theme


def test_a_broken_profile_is_one_readable_error(tmp_path: Path) -> None:
    bad = tmp_path / "shop.yaml"
    bad.write_text("name: X\nsells: things\nexamples: {en: {headlines: {TVs: [ab]}}}\n")
    with pytest.raises(UsageError, match=r"shop.yaml: examples\.en\.headlines\.TVs\.0"):
        load_profile(bad)


@pytest.fixture(scope="module")
def words_composer(ml_shop: BuiltShop) -> PageComposer:
    settings = Settings(
        artifacts_dir=ml_shop.settings.artifacts_dir, cache_dir=CACHE, page_deadline_s=600.0
    )
    return PageComposer(settings, ml_shop.retriever, BackendRegistry(settings))


@pytest.mark.slow
def test_real_model_writes_the_words_from_the_shops_examples(
    words_composer: PageComposer,
) -> None:
    profile = words_composer.profile()
    assert profile is not None and profile.name == "Reel Corner"
    result = words_composer.compose(PageRequest(shopper_id="196", seed=3))
    trace = result.trace
    assert trace.backend == "transformers" and not trace.fallback, trace.fallback_reason
    assert [w["where"] for w in trace.words][-1] == "title"
    assert len(trace.words) == len(result.layout.sections) + 1
    # The model wrote most fields itself; every shown field is one of its candidates or,
    # where all failed, the rules text with the reasons recorded.
    assert sum(w["source"] == "llm" for w in trace.words) >= len(trace.words) - 1
    for w in trace.words:
        texts = [c["text"] for c in w["candidates"]]
        assert w["source"] != "llm" or w["text"] in texts
    shown = [result.layout.title] + [s.headline for s in result.layout.sections]
    for text in shown:
        assert copies(text, profile.example_texts()) is None
        assert not [i for i in word_issues(text) if i.code in ("handle", "prompt_field")]
    assert len({s.lower() for s in shown}) == len(shown)


def test_each_field_bans_the_runs_of_the_examples_its_prompt_shows(ml_shop: BuiltShop) -> None:
    # What the model copies is what it sees: the runs of the shown examples, within the
    # 64 a vLLM request may ban (two token sequences each, 128 at most).
    profile = load_profile(ml_shop.settings.artifacts_dir / "shop.yaml")
    settings = Settings(artifacts_dir=ml_shop.settings.artifacts_dir, cache_dir=CACHE)
    writer = WordWriter(RulesBackend(), PromptLibrary(), "page_v4", profile, settings.words)
    theme = ThemeWords("T1", "Comedy", "Comedy", ("comedy",), "Comedy")
    field = writer.headline("sections[0].headline", theme, Locale.EN, "salt", 1, "Comedies")
    shown = [line.split(" | Headline: ")[1] for line in field.prompt.splitlines()[1:-1]]
    assert len(shown) == settings.words.examples
    assert set(field.avoid) == set(example_runs(shown, 3)) and 0 < len(field.avoid) <= 64
    assert not any("Comedy" in run for run in field.avoid)  # the theme's own examples: unshown
    chinese = writer.headline("sections[0].headline", theme, Locale.ZH, "salt", 1, "喜剧")
    assert chinese.avoid == ()


def test_example_runs_are_every_run_of_n_words() -> None:
    runs = example_runs(["Laptops that keep up", "Quiet, wherever you go", "TVs"], 3)
    assert runs == ("Laptops that keep", "that keep up", "Quiet, wherever you", "wherever you go")
    assert example_runs(["Laptops that keep up"], 0) == ()


def test_distinct_titles_and_absolute_gate_bounds_on_hand_computed_cases() -> None:
    from composer.evaluation.bootstrap import resample_indices, statistic
    from composer.evaluation.compare import _out_of_bounds
    from composer.evaluation.metrics import metrics_for
    from composer.evaluation.suite import Tolerance

    titles = [["your picks"], ["your picks"], ["tv night"], ["gear up"]]
    assert statistic(titles, "distinct_2") == 0.75  # 3 distinct of 4
    by_name = {m.name: m for m in metrics_for("pages")}
    copy_rate = by_name["prompt_copy_rate"]
    pages = [{"prompt_copied": v} for v in (0.0, 0.0, 0.25, 0.0)]  # mean 0.0625
    idx = resample_indices(len(pages), 200, 1)
    assert _out_of_bounds(pages, copy_rate, Tolerance(at_most=0.05), idx) == "value ≤ 0.05"
    assert _out_of_bounds(pages, copy_rate, Tolerance(at_most=0.1), idx) is None
    delta = by_name["ndcg_vs_retrieval"]
    worse = [{"ndcg_delta": v} for v in (-0.2, -0.1, -0.3, -0.15)]
    assert _out_of_bounds(worse, delta, Tolerance(min_upper=0.0), idx) is not None
    level = [{"ndcg_delta": v} for v in (0.0, 0.1, -0.1, 0.0)]
    assert _out_of_bounds(level, delta, Tolerance(min_upper=0.0), idx) is None


def test_a_broken_profile_costs_the_words_not_the_page(ml_shop: BuiltShop, tmp_path: Path) -> None:
    broken = tmp_path / "shop.yaml"
    broken.write_text("name: [unclosed\n", encoding="utf-8")
    settings = Settings(
        artifacts_dir=ml_shop.settings.artifacts_dir, cache_dir=CACHE, shop_profile=broken
    )
    composer = PageComposer(settings, ml_shop.retriever, BackendRegistry(settings))
    result = composer.compose(PageRequest(shopper_id="42", kind="search", query="usb_c cable"))
    assert result.trace.fallback and "not valid YAML" in (result.trace.fallback_reason or "")
    # The rules words around the shopper's own query are not held to the model's checks:
    # the hero that names the query stays on the page.
    assert "usb_c cable" in result.layout.sections[0].headline


def test_numbers_in_ordinary_headlines_are_not_contact_details() -> None:
    for text in (
        "Phones with 5, 24 & 60 Hz screens",
        "4K TVs from 2019 to 2024",
        "Laptops 15.6 inch",
    ):
        assert "contact" not in [i.code for i in word_issues(text)], text


@pytest.mark.slow
def test_a_streamed_page_sends_its_first_section_before_the_other_words_are_written(
    words_composer: PageComposer,
) -> None:
    settings = words_composer.settings.model_copy(
        update={"words": WordSettings(first_section_alone=True)}
    )
    model = words_composer.backends.get(BackendName.TRANSFORMERS)
    batches: list[int] = []

    class Counting:
        """The real in-process model, counting its batches."""

        name, model_name = model.name, model.model

        def __getattr__(self, attr: str) -> Any:
            return getattr(model, attr)

        def generate_batch(self, requests: Any, deadline: float | None = None) -> Any:
            batches.append(len(requests))
            return model.generate_batch(requests, deadline)

    registry = BackendRegistry(settings)
    registry.register(Counting())  # type: ignore[arg-type]
    composer = PageComposer(settings, words_composer.retriever, registry)
    at_sections: list[int] = []
    result = None
    for event in composer.stream(PageRequest(shopper_id="196", seed=5)):
        if isinstance(event, SectionEvent):
            at_sections.append(len(batches))
        elif isinstance(event, DoneEvent):
            result = event.result
    assert result is not None and not result.trace.fallback, result.trace.fallback_reason
    sections = len(result.layout.sections)
    # The first section went out after one batch of one field; the rest after the second.
    assert batches == [1, sections] and at_sections == [1] + [2] * (sections - 1)
    assert [w["where"] for w in result.trace.words] == [
        *(f"sections[{n}].headline" for n in range(sections)), "title",
    ]  # fmt: skip
