"""`composer bench api` against a real server process: shape, no cache answers, loopback only."""

from __future__ import annotations

import json
from contextlib import closing
from pathlib import Path

import pytest
from conftest import CACHE, BuiltShop
from test_model_versions import versioned_shop

from composer.bench.api import CacheAnswered, check_loopback, percentile, run_swap
from composer.bench.api import run as bench_run
from composer.bench.revisits import MAX_EVENTS_PER_VISIT, build_trace, prepare_world
from composer.cli import run
from composer.errors import UsageError
from composer.provision import open_store
from composer.topology import ApiServer
from retrieval import AheadStore, Encoder
from retrieval.versions import ModelVersions


def test_only_loopback_targets_are_accepted() -> None:
    check_loopback("http://127.0.0.1:8000")
    check_loopback("http://localhost:9")
    check_loopback("http://[::1]:8000")
    for url in ("http://10.0.0.5:8000", "http://example.com", "http://192.168.1.2"):
        with pytest.raises(UsageError, match="loopback"):
            check_loopback(url)


@pytest.mark.slow
def test_bench_api_json_shape(
    ml_shop: BuiltShop,
    monkeypatch: pytest.MonkeyPatch,
    capsys,  # type: ignore[no-untyped-def]
) -> None:
    monkeypatch.setenv("COMPOSER_ARTIFACTS_DIR", str(ml_shop.settings.artifacts_dir))
    monkeypatch.setenv("COMPOSER_LLM_BACKEND", "rules")
    code = run(
        [
            "bench",
            "api",
            "--rules-requests",
            "20",
            "--llm-requests",
            "1",
            "--backend",
            "rules",
            "--json",
        ]
    )
    out = capsys.readouterr()
    assert code == 0, out.err
    report = json.loads(out.out)
    for group in ("rules", "llm"):
        for c in ("c1", "c16"):
            r = report[group][c]
            assert r["errors"] == r["non_200"] == r["cache_hits"] == 0 and r["pages_per_s"] > 0
            assert r["answered_200"] == r["requests"]
            # 20 answers back a p90, not a p99; one answer backs no percentile at all.
            assert (r["p50_ms"] is None) == (r["requests"] < 2)
            assert (r["p90_ms"] is None) == (r["requests"] < 10) and r["p99_ms"] is None
    assert report["distinct_shoppers"] == 20 + 20 + 1 + 4


@pytest.mark.slow
def test_a_run_answered_from_the_page_cache_fails(
    ml_shop: BuiltShop, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COMPOSER_ARTIFACTS_DIR", str(ml_shop.settings.artifacts_dir))
    monkeypatch.setenv("COMPOSER_LLM_BACKEND", "rules")
    shoppers = [str(n) for n in range(1, 40)]
    with ApiServer(1) as server:
        first = bench_run(server.url, server.key, "rules", 16, 0, shoppers, seed_base=1)
        assert first["rules"]["c1"]["cache_hits"] == 0
        # The same shoppers and seeds again (by default a run's seeds come from the clock):
        # every page is in the server's cache, and the run refuses to report figures.
        with pytest.raises(CacheAnswered, match="page cache"):
            bench_run(server.url, server.key, "rules", 16, 0, shoppers, seed_base=1)


def test_percentiles_need_enough_samples() -> None:
    assert percentile([5.0], 50) is None and percentile([5.0, 7.0], 50) == 6.0
    assert percentile(list(range(99)), 99) is None
    assert percentile([float(v) for v in range(100)], 99) == 98.0


@pytest.mark.slow
def test_swap_run_trains_a_new_version_under_load_without_a_failed_request(
    tmp_path: Path, encoder: Encoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    shop = versioned_shop(tmp_path, encoder)
    old = shop.retriever.model_version
    shoppers = sorted({e.shopper_id for e in shop.store.all_events()})
    shop.store.close()
    monkeypatch.setenv("COMPOSER_ARTIFACTS_DIR", str(tmp_path))
    monkeypatch.setenv("COMPOSER_CACHE_DIR", str(CACHE))
    monkeypatch.setenv("COMPOSER_FUSION__TUNE", "false")
    monkeypatch.setenv("COMPOSER_LLM_BACKEND", "rules")
    monkeypatch.setenv("COMPOSER_API__MODEL_POLL_S", "0.2")
    # Two server processes, each swapping on its own; `composer train` a real subprocess.
    with ApiServer(workers=2) as server:
        swap = run_swap(server.url, server.key, shoppers, settle_pages=100)
    versions = ModelVersions(tmp_path / "index")
    assert swap["failed"] == 0 and swap["answered_200"] == swap["requests"] > 100
    assert swap["swapped"] and swap["old_version"] == old
    assert swap["new_version"] == versions.current_name() != old
    assert set(swap["pages_by_version"]) == {old, swap["new_version"]}
    assert swap["pages_by_version"][swap["new_version"]] >= 100


# MovieLens' events are from 1997-98; tests of the session post others, at today's time.
MOVIELENS_END = 1e9


def test_the_revisits_trace_keeps_returning_shoppers_visits_in_order(ml_shop: BuiltShop) -> None:
    events = [e for e in ml_shop.store.all_events() if e.timestamp < MOVIELENS_END]
    trace = build_trace(events, days=14, seconds=360)
    start = trace.window_start
    first_seen: dict[str, float] = {}
    for e in events:
        first_seen[e.shopper_id] = min(first_seen.get(e.shopper_id, e.timestamp), e.timestamp)
    # Only shoppers who had visited before the window: their pages can be known ahead.
    assert trace.shoppers and all(first_seen[s] < start for s in trace.shoppers)
    assert [v.at_s for v in trace.visits] == sorted(v.at_s for v in trace.visits)
    assert trace.visits[0].at_s >= 0 and trace.visits[-1].at_s <= 360
    assert all(1 <= len(v.events) <= MAX_EVENTS_PER_VISIT for v in trace.visits)
    summary = trace.summary()
    assert summary["visits"] == len(trace.visits) > summary["shoppers"] == len(trace.shoppers)
    assert summary["compression"] == 14 * 86400 / 360


@pytest.mark.slow
def test_bench_api_trace_revisits_compares_on_request_with_compose_ahead(
    ml_shop: BuiltShop,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys,  # type: ignore[no-untyped-def]
) -> None:
    """The real in-process model in both modes, on a one-day trace (8 shoppers)."""
    # A copy of the session's shop with MovieLens' events only (the trace is their last day).
    shop = prepare_world(ml_shop.settings, tmp_path / "shop", MOVIELENS_END)
    monkeypatch.setenv("COMPOSER_ARTIFACTS_DIR", str(shop.artifacts_dir))
    monkeypatch.setenv("COMPOSER_CACHE_DIR", str(CACHE))
    monkeypatch.setenv("COMPOSER_FUSION__TUNE", "false")
    argv = ["bench", "api", "--trace", "revisits", "--trace-days", "1", "--trace-seconds", "20"]
    code = run([*argv, "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    report = json.loads(out.out)
    assert report["trace"]["shoppers"] == 8 and report["trace"]["visits"] == 11
    on_request, ahead = report["on_request"], report["compose_ahead"]
    for mode in (on_request, ahead):
        assert mode["page_views"] == mode["answered_200"] == 11
        assert mode["errors"] == mode["events_refused"] == 0
        assert 0 <= mode["llm_share"] <= 1 and mode["p50_ms"] > 0
    assert on_request["ahead"] == {} and "previous_visits" not in on_request
    # Every shopper's page was composed after their previous visit, and served as it was.
    assert ahead["previous_visits"]["all_composed"]
    assert ahead["composes"]["kept"] >= 8
    assert ahead["ahead"]["kept"] >= 1 and ahead["page_age_s_p50"] > 0
    assert set(report["ratios"]) == {
        "llm_share_ahead_over_on_request", "p99_ahead_over_on_request",
        "p50_ahead_over_on_request",
    }  # fmt: skip
    # The store the replay wrote to was a copy of the copy: this one has no compose-ahead rows.
    with closing(open_store(shop)) as store:
        assert AheadStore(store.engine).outcomes() == {}
