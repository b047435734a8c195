"""Experiment files and assignment (composer/experiments): sticky, balanced, independent
across experiments; QA overrides excluded; a bad file refused with its line and field."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from composer.errors import UsageError
from composer.experiments import HOLDOUT, Experiment, Variant, assign, load_experiment

PSEUDONYMS = [f"p{i:05d}" for i in range(10_000)]


def _experiment(name: str, holdout: float = 0.0, weights: tuple[float, ...] = (1, 1)) -> Experiment:
    variants = [Variant(name=f"v{i}", weight=w) for i, w in enumerate(weights)]
    return Experiment(name=name, variants=variants, holdout=holdout)


def _within_sampling_error(counts: Counter[str], shares: dict[str, float], n: int) -> None:
    for name, share in shares.items():
        sd = (n * share * (1 - share)) ** 0.5
        assert abs(counts[name] - n * share) < 4 * sd, (name, counts[name], n * share)


def test_assignment_is_sticky_and_balanced_for_10000_pseudonyms() -> None:
    exp = _experiment("headlines", holdout=0.1, weights=(2, 1))
    first = [assign(exp, p).variant for p in PSEUDONYMS]
    assert first == [assign(exp, p).variant for p in PSEUDONYMS]  # same shopper, same arm
    counts = Counter(first)
    _within_sampling_error(counts, {HOLDOUT: 0.1, "v0": 0.6, "v1": 0.3}, len(PSEUDONYMS))


def test_assignments_of_two_experiments_are_independent() -> None:
    a, b = _experiment("prompt-test"), _experiment("model-test")
    pairs = Counter((assign(a, p).variant, assign(b, p).variant) for p in PSEUDONYMS)
    # Independent halves: each of the four combinations holds a quarter.
    _within_sampling_error(
        Counter({f"{x}/{y}": n for (x, y), n in pairs.items()}),
        {f"{x}/{y}": 0.25 for x in ("v0", "v1") for y in ("v0", "v1")},
        len(PSEUDONYMS),
    )
    # The same salt would put every shopper in the same arm of both.
    same = Experiment(name="model-test", salt="prompt-test", variants=b.variants)
    assert all(assign(a, p).variant == assign(same, p).variant for p in PSEUDONYMS[:500])


def test_a_qa_override_is_served_and_not_analysed() -> None:
    exp = _experiment("qa").model_copy(update={"overrides": {"p00001": "v1", "p00002": HOLDOUT}})
    pinned = assign(exp, "p00001")
    assert (pinned.variant, pinned.analysed) == ("v1", False)
    assert assign(exp, "p00002").variant == HOLDOUT and assign(exp, "p00003").analysed


def test_a_bad_file_names_its_line_and_field(tmp_path: Path) -> None:
    good = tmp_path / "headlines.yaml"
    good.write_text(
        "variants:\n"
        "  - name: control\n"
        "    prompt: page_v4\n"
        "  - name: shorter\n"
        "    prompt: page_v3\n"
        "holdout: 0.1\n"
        "primary_metric: purchase\n"
    )
    exp = load_experiment(good)
    assert exp.name == "headlines" and [v.name for v in exp.variants] == ["control", "shorter"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(good.read_text().replace("    prompt: page_v3\n", "    weight: -1\n"))
    with pytest.raises(UsageError) as err:
        load_experiment(bad)
    assert "line 5" in str(err.value) and "variants.1.weight" in str(err.value)
    assert err.value.field == "variants.1.weight"
    broken = tmp_path / "broken.yaml"
    broken.write_text("variants: [\n")
    with pytest.raises(UsageError, match="not valid YAML"):
        load_experiment(broken)
    clash = tmp_path / "clash.yaml"
    clash.write_text("variants:\n  - name: a\n  - name: a\n")
    with pytest.raises(UsageError, match=r"line 2.*'variants'.*distinct"):
        load_experiment(clash)
