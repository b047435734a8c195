"""`composer bench api` against a real server process: shape, no cache answers, loopback only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import CACHE, BuiltShop
from test_model_versions import versioned_shop

from composer.bench.api import CacheAnswered, check_loopback, percentile, run_swap
from composer.bench.api import run as bench_run
from composer.cli import run
from composer.errors import UsageError
from composer.topology import ApiServer
from retrieval import Encoder
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
