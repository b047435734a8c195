"""`composer experiment simulate` end to end: a real API server (two worker processes) on a
copy of the MovieLens shop that knows only each shopper's earlier events, synthetic shoppers
clicking what they bought later. A/A runs and an A/B run (ranked against shuffled pages)
through page requests and events, exposures written by the server, the report from them.

How often A/A runs are called different is measured over 300 runs in
test_experiment_stats.py (the same test, on simulated numbers); here a few runs prove the
loop, and the A/B run must find the difference it was built with."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import BuiltShop

from composer.cli import run
from composer.settings import Settings
from retrieval.exposures import ExposureStore


def test_simulate_runs_aa_and_ab_through_the_real_api(
    ml_shop: BuiltShop, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:  # fmt: skip
    monkeypatch.setenv("COMPOSER_ARTIFACTS_DIR", str(ml_shop.settings.artifacts_dir))
    monkeypatch.setenv("COMPOSER_FUSION__TUNE", "false")
    html = tmp_path / "report.html"
    argv = ["experiment", "simulate", "--aa-runs", "3", "--aa-pages", "150",
            "--ab-pages", "6000", "--json", "--html", str(html)]  # fmt: skip
    code = run(argv)
    out = capsys.readouterr()
    assert code == 0, out.err
    found = json.loads(out.out)

    aa, ab = found["aa"], found["ab"]
    assert aa["runs"] == 3 and aa["alpha"] == 0.05
    assert aa["false_positive_rate"] == aa["false_positives"] / 3
    assert len(aa["p_values"]) == 3 and all(0 <= p <= 1 for p in aa["p_values"])
    # Ranked pages against pages drawn at random from retrieval's pool: found, and the
    # right way round, within the budget.
    assert ab["detected"] and ab["decision"] == "treatment is worse than control"
    assert ab["pages_needed"] is not None and ab["pages_needed"] <= 6000
    assert ab["upper"] < 0 and ab["p_value"] <= 0.05

    report = found["ab_report"]
    arms = {a["name"]: a for a in report["arms"]}
    assert set(arms) == {"control", "treatment"}
    assert not report["srm"]["mismatch"]
    # Clicks named their page and slot; purchases were given to the shopper's last page.
    assert report["attribution"]["events_naming_a_page"] > 0
    assert report["attribution"]["given_to_last_page"] > 0
    assert arms["control"]["slots"][0]["pages"] == arms["control"]["pages"]
    assert "<svg" in html.read_text()

    # What the server logged is in the world's store, every page of the A/B run.
    world = Settings(artifacts_dir=ml_shop.settings.artifacts_dir / "simulation")
    from composer.provision import open_store

    store = open_store(world)
    try:
        pages = ExposureStore(store.engine).for_experiment(report["experiment"])
    finally:
        store.close()
    assert len(pages) == ab["pages"] == report["pages"]
