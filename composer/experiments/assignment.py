"""Which variant a shopper sees: deterministic and sticky (a hash of the experiment's salt and
the shopper's pseudonym or anonymous session), independent across experiments (each has its
own salt), with QA overrides that are served but excluded from analysis."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from composer.experiments.spec import HOLDOUT, Experiment


@dataclass(frozen=True)
class Assignment:
    experiment: str
    variant: str  # a variant's name, or HOLDOUT
    analysed: bool  # False for a QA override


def unit_position(salt: str, unit: str) -> float:
    """A uniform number in [0, 1) fixed by (salt, unit): 64 bits of SHA-256."""
    digest = hashlib.sha256(f"{salt}\x00{unit}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign(experiment: Experiment, unit: str) -> Assignment:
    """``unit``: the shopper's pseudonym, or the anonymous session's id."""
    pinned = experiment.overrides.get(unit)
    if pinned is not None:
        return Assignment(experiment.name, pinned, analysed=False)
    x = unit_position(experiment.assignment_salt, unit)
    if x < experiment.holdout:
        return Assignment(experiment.name, HOLDOUT, analysed=True)
    # The rest of [0, 1) is split by weight, in the file's order.
    x = (x - experiment.holdout) / (1 - experiment.holdout)
    total = sum(v.weight for v in experiment.variants)
    edge = 0.0
    for variant in experiment.variants:
        edge += variant.weight / total
        if x < edge:
            return Assignment(experiment.name, variant.name, analysed=True)
    return Assignment(experiment.name, experiment.variants[-1].name, analysed=True)
