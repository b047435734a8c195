"""The word judge's bookkeeping, without the model: the labelled set's format, Cohen's
kappa on hand-computed cases, and which shown words count as the model's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from composer.evaluation.agreement import agreement_report, cohen_kappa, read_labels
from composer.evaluation.word_judge import load_items
from composer.resources import resource_dir


def test_kappa_on_hand_computed_cases() -> None:
    people = ["good", "good", "clumsy", "nonsense"]
    assert cohen_kappa(people, people) == 1.0
    # Observed 2/4; expected (2/4)(2/4) + (1/4)(1/4) + (1/4)(1/4) = 6/16: (8 - 6)/(16 - 6).
    judge = ["good", "clumsy", "good", "nonsense"]
    assert cohen_kappa(people, judge) == pytest.approx(1 / 5)
    # A judge that always says good agrees half the time and no better than chance.
    assert cohen_kappa(people, ["good"] * 4) == pytest.approx(0.0)


def test_report_parts_and_confusion(tmp_path: Path) -> None:
    rows = [
        {"sells": "tea", "theme": "Green tea", "text": "Fresh green tea", "label": "good"},
        {"sells": "tea", "theme": "Teapots", "text": "Teapots for teapot", "label": "clumsy"},
        {"sells": "tea", "theme": "Oolong", "text": "乌龙茶精选", "label": "good", "locale": "zh"},
    ]
    path = tmp_path / "labels.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    labelled = read_labels(path)
    report = agreement_report(labelled, ["good", "good", "good"])
    assert report["parts"]["all"]["n"] == 3
    assert report["parts"]["all"]["accuracy"] == pytest.approx(2 / 3, abs=1e-4)
    assert report["parts"]["all"]["confusion"]["clumsy"] == {"good": 1, "clumsy": 0, "nonsense": 0}
    assert report["parts"]["zh"]["n"] == 1 and report["parts"]["en"]["n"] == 2


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "line 1: not JSON"),
        ('{"sells": "tea", "theme": "x"}', "line 1, field 'text'"),
        ('{"sells": "tea", "theme": "x", "text": "y", "label": "great"}', "field 'label'"),
    ],
)
def test_bad_labelled_lines_are_named(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "labels.jsonl"
    path.write_text(line, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        read_labels(path)


def test_judge_input_lines_name_the_field() -> None:
    items = load_items(['{"sells": "tea", "theme": "Oolong", "text": "Roasted oolong"}', ""])
    assert items[0].products == [] and items[0].kind == "headline"
    with pytest.raises(ValueError, match="line 2, field 'theme'"):
        load_items(['{"sells": "tea", "theme": "a", "text": "b"}', '{"sells": "tea", "text": "b"}'])


def test_the_committed_labelled_set_is_what_the_issue_asks_for() -> None:
    labelled = read_labels(resource_dir("evals") / "words" / "labelled.jsonl")
    assert len(labelled) >= 150
    assert sum(x.locale == "zh" for x in labelled) >= 30
    rows = [
        json.loads(line)
        for line in (resource_dir("evals") / "words" / "labelled.jsonl").read_text().splitlines()
        if line.strip()
    ]
    shops = {r["shop"] for r in rows}
    assert len(shops) >= 3 and len(shops - {"movies"}) >= 2
    assert {r["label"] for r in rows} == {"good", "clumsy", "nonsense"}
