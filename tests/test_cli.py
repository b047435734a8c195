"""The `composer` program end to end on the real MovieLens shop: JSON shapes, idempotent
set-up, events, evaluation and the benchmark."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from conftest import BuiltShop

from composer.cli import run
from retrieval.benchmark import benchmark_requests


@pytest.fixture
def on_ml_shop(ml_shop: BuiltShop, monkeypatch: pytest.MonkeyPatch) -> BuiltShop:
    monkeypatch.setenv("COMPOSER_ARTIFACTS_DIR", str(ml_shop.settings.artifacts_dir))
    monkeypatch.setenv("COMPOSER_FUSION__TUNE", "false")
    return ml_shop


def json_of(capsys, argv: list[str]) -> dict:  # type: ignore[no-untyped-def]
    code = run(argv)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def test_setup_again_with_nothing_changed_is_fast_and_does_nothing(
    on_ml_shop: BuiltShop,
    capsys,  # type: ignore[no-untyped-def]
) -> None:
    # Other tests add events to this shared shop; the first run absorbs them (a retrain).
    json_of(capsys, ["setup", "--json"])
    t = time.perf_counter()
    report = json_of(capsys, ["setup", "--json"])
    elapsed = time.perf_counter() - t
    assert report["seeded"] is False
    assert report["build"]["embedded"] == 0 and report["build"]["trained"] is False
    assert report["counts"]["products"] == 1682 and report["counts"]["shoppers"] == 943
    assert report["counts"]["events"] >= 100_000
    # Not a timing assertion on speed, a check that nothing heavy ran: no model was loaded,
    # which alone takes longer than this on any machine.
    assert elapsed < 30


def test_retrieve_json_shape(on_ml_shop: BuiltShop, capsys) -> None:  # type: ignore[no-untyped-def]
    out = json_of(capsys, ["retrieve", "--user", "196", "--k", "8", "--json"])
    assert len(out["candidates"]) == 8
    c = out["candidates"][0]
    assert set(c) >= {"product_id", "score", "provenance", "sources", "reason", "theme"}
    assert set(out["timings_ms"]) >= {"context", "mf", "vector", "popular", "fusion"}
    anon = json_of(capsys, ["retrieve", "--recent", "1,71,95", "--query", "cartoon", "--json"])
    assert anon["profile"]["pseudonym"] == "anonymous" and anon["query"] == "cartoon"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["retrieve"], "give --user ID or --recent"),
        (["retrieve", "--recent", "1,nope"], "unknown product id(s): nope"),
        (["retrieve", "--user", "1", "--min-price", "9", "--max-price", "3"], "greater than"),
    ],
)
def test_retrieve_usage_errors_are_one_line(
    on_ml_shop: BuiltShop,
    capsys,
    argv: list[str],
    message: str,  # type: ignore[no-untyped-def]
) -> None:
    assert run(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_events_add_is_seen_by_the_next_retrieval(
    on_ml_shop: BuiltShop,
    capsys,  # type: ignore[no-untyped-def]
) -> None:
    before = json_of(capsys, ["retrieve", "--user", "cli-shopper", "--json"])
    added = json_of(
        capsys,
        [
            "events",
            "add",
            "--shopper",
            "cli-shopper",
            "--product",
            "181",
            "--product",
            "172",
            "--kind",
            "purchase",
            "--json",
        ],
    )
    assert len(added["event_ids"]) == 2
    after = json_of(capsys, ["retrieve", "--user", "cli-shopper", "--json"])
    assert after["profile"]["events"] == 2
    assert [c["product_id"] for c in after["candidates"]] != [
        c["product_id"] for c in before["candidates"]
    ]
    assert "181" not in [c["product_id"] for c in after["candidates"]]
    assert run(["events", "add", "--shopper", "x", "--product", "nope"]) == 2
    assert "unknown product id(s): nope" in capsys.readouterr().err


def test_unbuilt_artifacts_give_a_setup_hint(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert run(["retrieve", "--user", "1"]) == 2
    assert "composer setup" in capsys.readouterr().err


def test_a_bad_setting_in_the_environment_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COMPOSER_LLM_DTYPE", "fp32")
    assert run(["retrieve", "--user", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: setting COMPOSER_LLM_DTYPE: Input should be")
    assert "Traceback" not in err and err.count("\n") == 1
    monkeypatch.setenv("COMPOSER_LLM_DTYPE", "float32")
    monkeypatch.setenv("COMPOSER_API__THREADS", "0")
    assert run(["retrieve", "--user", "1"]) == 2
    assert "setting COMPOSER_API__THREADS:" in capsys.readouterr().err


@pytest.mark.slow
def test_retrieval_eval_json_shape_and_ordering(
    on_ml_shop: BuiltShop,
    capsys,  # type: ignore[no-untyped-def]
) -> None:
    out = json_of(
        capsys, ["retrieval-eval", "--max-users", "300", "--slice-users", "100", "--json"]
    )
    assert set(out) == {"methods", "cold_start", "query", "global_time", "global_time_cut"}
    assert isinstance(out.pop("global_time_cut"), float)
    for block in out.values():
        assert set(block) == {"popularity", "mf", "vector", "hybrid"}
        for metrics in block.values():
            assert set(metrics) >= {"recall@10", "recall@20", "ndcg@10", "coverage"}
            assert 0 <= metrics["ndcg@10"] <= 1
    # Personalisation must beat popularity clearly. A query's relevant items are the
    # shopper's own held-out items of its genre: the query must lift the hybrid above
    # popularity and the query's vector alone.
    assert out["methods"]["mf"]["ndcg@10"] > 1.2 * out["methods"]["popularity"]["ndcg@10"]
    query = out["query"]
    assert query["hybrid"]["ndcg@10"] > max(
        query["popularity"]["ndcg@10"], query["vector"]["ndcg@10"]
    )
    assert out["global_time"]["mf"]["users"] > 0


@pytest.mark.slow
def test_bench_retrieval_json_shape(on_ml_shop: BuiltShop, capsys) -> None:  # type: ignore[no-untyped-def]
    out = json_of(
        capsys, ["bench", "retrieval", "--requests", "20", "--catalog-size", "3000", "--json"]
    )
    assert set(out) == {"ml100k", "catalog_3000"}
    for r in out.values():
        assert r["p50_ms"] > 0 and r["p99_ms"] >= r["p50_ms"]
        assert r["ratio_vs_baseline"] > 0
        # The query's embedding is its own stage (part of "vector"): searches are new strings.
        assert {"mf", "vector", "vector.embed", "fusion"} <= set(r["stages_ms"])
        assert 0 < r["stages_ms"]["vector.embed"] < r["stages_ms"]["vector"]


def test_benchmark_searches_never_repeat_a_query(ml_shop: BuiltShop) -> None:
    # The encoder caches every string it has embedded: a repeated query would be timed
    # as a dictionary lookup.
    requests = benchmark_requests(ml_shop.retriever, 1000, seed=1)
    queries = [r.query for r in requests if r.query]
    assert len(queries) > 150 and len(set(queries)) == len(queries)


def test_the_first_cli_page_does_not_spend_its_deadline_loading_the_model(
    on_ml_shop: BuiltShop,
    capsys,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Loading the model is not the page's work. A real first load is sometimes shorter
    than a page and sometimes not, so a backend whose construction outlasts the whole
    deadline stands in for a slow first load; it answers at once when asked."""
    from fault_injection import ScriptedBackend

    from composer.backends import BackendRegistry

    def slow_make(self: BackendRegistry, name: str, model: str) -> ScriptedBackend:
        time.sleep(2.5)
        return ScriptedBackend(name, texts=["Stories that stay with you"] * 40)

    monkeypatch.setattr(BackendRegistry, "_make", slow_make)
    monkeypatch.setenv("COMPOSER_PAGE_DEADLINE_S", "2")
    page = json_of(capsys, ["page", "--user", "196", "--backend", "transformers"])
    assert page["trace"]["fallback"] is False, page["trace"]["fallback_reason"]
    assert page["trace"]["timings_ms"]["total"] < 2000
    assert not any("deadline" in str(w) for w in page["trace"]["words"])
