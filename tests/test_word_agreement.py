"""The word judge's bookkeeping, without the model: the labelled set's format and halves,
Cohen's kappa on hand-computed cases, the weights' fit, input errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from composer.cli import run
from composer.evaluation.agreement import agreement_report, cohen_kappa, read_labels
from composer.evaluation.judge_calibration import fit_weights, leave_one_out
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


def test_a_bad_line_is_one_readable_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "words.jsonl"
    file.write_text('{"sells": "tea", "theme": "Oolong"}\n', encoding="utf-8")
    assert run(["words", "judge", str(file)]) == 2
    assert "line 1, field 'text'" in capsys.readouterr().err


def test_the_fit_separates_what_its_readings_separate() -> None:
    """Synthetic readings where one feature names the label: the fitted weights find it,
    and leave-one-out agrees with the labels."""
    from composer.evaluation.word_judge import FEATURES

    rows, labels = [], []
    for i in range(45):
        label = ("good", "clumsy", "nonsense")[i % 3]
        row = {f: float((i * 7919 + k * 104729) % 13) / 13 for k, f in enumerate(FEATURES)}
        row["makes_sense"] = {"good": 3.0, "clumsy": 0.0, "nonsense": -3.0}[label] + row[
            "fluency"
        ] / 5
        rows.append(row)
        labels.append(label)
    weights = fit_weights(rows, labels)
    assert sum(sum(abs(w) for w in row) for row in weights.coef) > 0
    assert leave_one_out(rows, labels) == labels
    p = weights.probabilities([rows[0][f] for f in FEATURES])
    assert max(p, key=p.__getitem__) == "good" and sum(p.values()) == pytest.approx(1.0)


def test_the_two_halves_do_not_overlap() -> None:
    path = resource_dir("evals") / "words" / "labelled.jsonl"
    fit, test = read_labels(path, "fit"), read_labels(path, "test")
    assert len(test) >= 150 and sum(x.locale == "zh" for x in test) >= 30
    assert not {(x.item.theme, x.item.text) for x in fit} & {
        (x.item.theme, x.item.text) for x in test
    }
