"""`composer bench api` against a real server process: shape, no cache answers, loopback only."""

from __future__ import annotations

import json

import pytest
from conftest import BuiltShop

from composer.api_bench import check_loopback
from composer.cli import run
from composer.errors import UsageError


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
            assert r["errors"] == 0 and r["pages_per_s"] > 0
            assert r["p99_ms"] >= r["p50_ms"] > 0
    assert report["distinct_shoppers"] == 20 + 20 + 1 + 4
