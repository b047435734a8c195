"""Copy generation: checks, distinct variants, fallback, and the resumable batch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import CACHE, BuiltShop

from composer.cli import run
from composer.copywriting import CopyRequest, Copywriter
from composer.copywriting.checks import copy_checks
from composer.layout import Locale
from composer.settings import Settings


def writer_for(shop: BuiltShop, **overrides) -> Copywriter:  # type: ignore[no-untyped-def]
    settings = Settings(artifacts_dir=shop.settings.artifacts_dir, cache_dir=CACHE, **overrides)
    return Copywriter(settings, shop.retriever.catalog.by_id())


def test_copy_checks_report_each_failure_separately() -> None:
    checks = copy_checks("Cheap thrills, now 20% off!", Locale.EN, 20, ["cheap"], ["Heat"])
    assert checks == {
        "not_empty": True,
        "length": False,
        "banned_words": False,
        "grounded": False,
        "locale_script": True,
        "not_just_title": True,
    }
    assert copy_checks("Heat", Locale.EN, 60, [], ["Heat"])["not_just_title"] is False
    # An English title inside Chinese copy is the catalog's, not the copy's script.
    assert copy_checks("发现《Star Wars》", Locale.ZH, 60, [], ["Star Wars"])["locale_script"]


def test_rules_copy_gives_distinct_checked_variants(ml_shop: BuiltShop) -> None:
    result = writer_for(ml_shop).write(
        CopyRequest(products=["50"], kind="tagline", n=3, backend="rules")
    )
    texts = [v.text for v in result.variants]
    assert len(texts) == 3 and len(set(texts)) == 3
    assert all(v.passed and all(v.checks.values()) for v in result.variants)
    assert all("Star Wars" in t for t in texts)


@pytest.mark.slow
def test_real_model_copy_variants_are_distinct_and_checked(ml_shop: BuiltShop) -> None:
    result = writer_for(ml_shop).write(
        CopyRequest(products=["1"], kind="headline", n=3, max_chars=60, seed=3)
    )
    assert result.backend in ("transformers", "rules")
    texts = [v.text.lower() for v in result.variants]
    assert len(texts) == 3 and len(set(texts)) == 3
    for v in result.variants:
        assert len(v.text) <= 60  # the schema bounds length during decoding
        assert set(v.checks) >= {"length", "banned_words", "grounded", "locale_script"}
        assert v.passed == all(v.checks.values())
    assert result.tokens > 0


def test_batch_skips_bad_lines_and_resumes(
    ml_shop: BuiltShop,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys,  # type: ignore[no-untyped-def]
) -> None:
    monkeypatch.setenv("COMPOSER_ARTIFACTS_DIR", str(ml_shop.settings.artifacts_dir))
    monkeypatch.setenv("COMPOSER_LLM_BACKEND", "rules")
    lines = [
        {"id": "a", "products": ["1"], "kind": "headline", "n": 2},
        "{not json",
        {"id": "c", "products": ["nope"]},
        {"id": "d", "products": ["50"], "kind": "description", "n": 1, "locale": "zh"},
        {"id": "e", "products": ["181"], "n": 99},
    ]
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    out = tmp_path / "out.jsonl"
    assert run(["copy", "batch", str(src), str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["done"] == 2 and report["skipped"] == 0
    assert [f.split(":")[0] for f in report["failed"]] == [
        "in.jsonl, line 2",
        "in.jsonl, line 3",
        "in.jsonl, line 5",
    ]
    assert "unknown product id(s): nope" in report["failed"][1]
    assert "n: Input should be less than or equal to 8" in report["failed"][2]
    records = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["key"] for r in records] == ["a", "line-2", "c", "d", "e"]
    assert len(records[0]["variants"]) == 2

    # Simulate a run killed mid-write, then add a line: only the new line is worked on.
    out.write_text(out.read_text() + '{"key": "torn', encoding="utf-8")
    src.write_text(src.read_text() + json.dumps({"id": "f", "products": ["7"]}) + "\n")
    assert run(["copy", "batch", str(src), str(out), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["done"] == 1 and again["skipped"] == 5
    keys = [
        json.loads(x)["key"]
        for x in out.read_text().splitlines()
        if x.startswith('{"key": "') and x.endswith("}")
    ]
    assert keys == ["a", "line-2", "c", "d", "e", "f"]
