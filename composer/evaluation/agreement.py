"""How often the word judge agrees with labels read by a person: accuracy and Cohen's
kappa, with bootstrap intervals, overall and per language."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from composer.evaluation.bootstrap import resample_indices
from composer.evaluation.word_judge import LABELS, WordItem, parse_line

SAMPLES = 2000
SEED = 7


@dataclass(frozen=True)
class Labelled:
    item: WordItem
    label: str  # a person's
    locale: str
    writer: str = ""  # "rules", or the model that wrote it


def read_labels(path: Path, split: str | None = None) -> list[Labelled]:
    """JSONL lines of a judge item plus ``label`` (and ``locale``, default en; ``writer``,
    ``split``); only lines of ``split`` when given. Raises ``ValueError`` naming the line
    and field."""
    out = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot be read: {exc}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        row, item = parse_line(number, line)
        label = row.get("label")
        if label not in LABELS:
            raise ValueError(f"line {number}, field 'label': one of {', '.join(LABELS)}")
        if split is not None and row.get("split") != split:
            continue
        out.append(Labelled(item, label, str(row.get("locale", "en")), str(row.get("writer", ""))))
    if not out:
        raise ValueError("holds no labelled items")
    return out


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> float:
    """Agreement beyond chance (Cohen 1960). Written out rather than taken from
    scikit-learn: five lines do not justify that dependency."""
    n = len(a)
    if n == 0:
        return float("nan")
    observed = sum(x == y for x, y in zip(a, b, strict=True)) / n
    expected = sum((list(a).count(lb) / n) * (list(b).count(lb) / n) for lb in LABELS)
    return 1.0 if expected == 1 else (observed - expected) / (1 - expected)


def _part(people: list[str], judge: list[str]) -> dict[str, Any]:
    n = len(people)
    accuracy = sum(x == y for x, y in zip(people, judge, strict=True)) / n
    kappa = cohen_kappa(people, judge)
    draws = resample_indices(n, SAMPLES, SEED)
    accs, kappas = [], []
    for rows in draws:
        p = [people[i] for i in rows]
        j = [judge[i] for i in rows]
        accs.append(sum(x == y for x, y in zip(p, j, strict=True)) / n)
        kappas.append(cohen_kappa(p, j))
    finite = np.asarray([k for k in kappas if k == k])
    return {
        "n": n,
        "accuracy": round(accuracy, 4),
        "accuracy_ci": [round(float(x), 4) for x in np.percentile(accs, [2.5, 97.5])],
        "kappa": round(kappa, 4),
        "kappa_ci": [round(float(x), 4) for x in np.percentile(finite, [2.5, 97.5])],
        "confusion": {
            person: {
                j: sum(1 for x, y in zip(people, judge, strict=True) if x == person and y == j)
                for j in LABELS
            }
            for person in LABELS
        },
    }


def agreement_report(labelled: Sequence[Labelled], judged: Sequence[str]) -> dict[str, Any]:
    """Overall and per locale; ``confusion[person][judge]`` counts."""
    people = [x.label for x in labelled]
    parts = {"all": _part(people, list(judged))}
    groups = {
        locale: [i for i, x in enumerate(labelled) if x.locale == locale]
        for locale in sorted({x.locale for x in labelled})
    }
    groups["model-written"] = [i for i, x in enumerate(labelled) if x.writer not in ("", "rules")]
    for name, rows in groups.items():
        if rows:
            parts[name] = _part([people[i] for i in rows], [judged[i] for i in rows])
    return {"items": len(people), "parts": parts, "judged": list(judged)}
