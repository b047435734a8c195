"""Page words on their own: `words judge` (label shown words with the independent judge),
`words agreement` (how often it agrees with labels read by a person) and `words calibrate`
(fit its weights on the labelled set's `fit` half)."""

from __future__ import annotations

import json
import os
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from composer.cli.common import JsonOpt, settings
from composer.cli.output import console, print_json, progress_bars, table
from composer.errors import UsageError

if TYPE_CHECKING:
    from composer.evaluation.agreement import Labelled
    from composer.evaluation.gen_cache import GenerationCache
    from composer.evaluation.word_judge import WordItem
    from composer.evaluation.word_scores import CachedWordJudge

app = typer.Typer()
words_app = typer.Typer(help="Shown words: the independent judge and its agreement with people.")
app.add_typer(words_app, name="words")

LabelledOpt = Annotated[
    Path | None,
    typer.Argument(help="JSONL with a person's `label` per line (default: the shipped set)."),
]


def _items(path: Path) -> list[WordItem]:
    from composer.evaluation.word_judge import load_items

    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None
    try:
        items = load_items(lines)
    except ValueError as exc:
        raise UsageError(f"{path}, {exc}") from None
    if not items:
        raise UsageError(f"{path} holds no items")
    return items


def _cache() -> GenerationCache:
    from composer.evaluation.gen_cache import GenerationCache
    from composer.evaluation.harness import default_cache_file

    return GenerationCache(default_cache_file(settings()))


def _judge(cache: GenerationCache) -> tuple[CachedWordJudge, str]:
    from composer.evaluation.word_scores import CachedWordJudge, judge_model_path

    s = settings()
    return CachedWordJudge(judge_model_path(s), cache), s.words.judge_model


def _labelled(file: Path | None, split: str | None) -> tuple[Path, list[Labelled]]:
    from composer.evaluation.agreement import read_labels
    from composer.evaluation.word_judge import weights_file

    path = file or weights_file().parent / "labelled.jsonl"
    try:
        rows = read_labels(path, split)
    except ValueError as exc:
        raise UsageError(f"{path}, {exc}") from None
    return path, rows


@words_app.command("judge")
def judge(
    file: Annotated[
        Path,
        typer.Argument(help='JSONL: {"sells", "theme", "text"} per line, "products" optional.'),
    ],
    json_out: JsonOpt = False,
) -> None:
    """Label each line's text good (ships as is), clumsy or nonsense."""
    items = _items(file)
    with closing(_cache()) as cache:
        word_judge, model = _judge(cache)
        with progress_bars(not json_out) as progress:
            verdicts = word_judge.judge(items, progress("judge", len(items)))
    if json_out:
        print_json({"model": model, "items": [v.to_dict() for v in verdicts]})
        return
    table(
        f"word judge ({model})",
        ["#", "text", "label"],
        [[i, v.text, v.label] for i, v in enumerate(verdicts, 1)],
    )


@words_app.command("agreement")
def agreement(
    file: LabelledOpt = None,
    split: Annotated[
        str | None, typer.Option(help="Only lines of this split (`test`: never fitted on).")
    ] = "test",
    json_out: JsonOpt = False,
) -> None:
    """The judge against labels read by a person: accuracy and Cohen's kappa with 95%
    bootstrap intervals, overall, per language and on the model's words alone."""
    from composer.evaluation.agreement import agreement_report

    path, labelled = _labelled(file, split)
    with closing(_cache()) as cache:
        word_judge, model = _judge(cache)
        with progress_bars(not json_out) as progress:
            verdicts = word_judge.judge(
                [x.item for x in labelled], progress("judge", len(labelled))
            )
    report = agreement_report(labelled, [v.label for v in verdicts])
    report |= {"model": model, "file": str(path), "split": split}
    if json_out:
        print_json(report)
        return
    rows = [
        [name, part["n"], part["accuracy"], part["accuracy_ci"], part["kappa"], part["kappa_ci"]]
        for name, part in report["parts"].items()
    ]
    table(
        f"word judge ({model}) against {path}",
        ["part", "n", "accuracy", "95%", "kappa", "95%"],
        rows,
    )


@words_app.command("calibrate")
def calibrate(
    file: LabelledOpt = None,
    out: Annotated[
        Path | None, typer.Option(help="Weights file (default: the shipped one).")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Fit the judge's weights on the `fit` lines of the labelled set (never the `test`
    lines), and report leave-one-out agreement on them."""
    from composer.evaluation.agreement import cohen_kappa
    from composer.evaluation.judge_calibration import fit_weights, leave_one_out
    from composer.evaluation.word_judge import weights_file

    path, labelled = _labelled(file, "fit")
    if len({x.label for x in labelled}) < 3 or len(labelled) < 30:
        raise UsageError(f"{path}: calibrating needs ≥ 30 `fit` lines with all three labels")
    target = out or weights_file()
    if not os.access(target if target.exists() else target.parent, os.W_OK):
        raise UsageError(f"cannot write the weights to {target}; give --out FILE")
    with closing(_cache()) as cache:
        word_judge, _ = _judge(cache)
        with progress_bars(not json_out) as progress:
            advance = progress("read", len(labelled))
            features = []
            for x in labelled:
                features.append(word_judge.features(x.item))
                advance(1)
    labels = [x.label for x in labelled]
    weights = fit_weights(features, labels, fitted_on=f"{path.name}: {len(labels)} fit lines")
    loo = leave_one_out(features, labels)
    target.write_text(json.dumps(weights.to_json(), indent=2) + "\n", encoding="utf-8")
    accuracy = round(sum(a == b for a, b in zip(labels, loo, strict=True)) / len(labels), 4)
    kappa = round(cohen_kappa(labels, loo), 4)
    if json_out:
        print_json(
            {
                "lines": len(labels),
                "weights": str(target),
                "leave_one_out": {"accuracy": accuracy, "kappa": kappa},
            }
        )
    else:
        console.print(
            f"fitted on {len(labels)} lines, leave-one-out accuracy {accuracy}, kappa "
            f"{kappa}; weights written to {target}"
        )
