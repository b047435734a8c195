"""`composer eval` as CI runs it: the real transformers backend and the real 135M model on
the set-up MovieLens shop, `pages-smoke` against the baseline committed in `evals/`.

The shop is the one `composer setup` builds in `artifacts/` (scripts/test.sh runs set-up
before pytest; here it is a no-op that only makes sure): the committed baseline was measured
on it, tuned fusion weights included. The test reads it and never writes to it; the
generation cache is a temp file, so the first run really generates.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import html5lib
import pytest
from conftest import CACHE, REPO

from composer.cli import run
from composer.provision import run_setup
from composer.settings import Settings

pytestmark = pytest.mark.slow

BASELINE = REPO / "evals" / "baselines" / "pages-smoke.json"
ARTIFACTS = REPO / "artifacts"


@dataclass
class CliRun:
    code: int
    out: str
    err: str

    def json(self) -> dict:
        return json.loads(self.out)


def _env() -> dict[str, str]:
    return {"COMPOSER_ARTIFACTS_DIR": str(ARTIFACTS), "COMPOSER_CACHE_DIR": str(CACHE)}


@contextlib.contextmanager
def _canonical_env() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        for var in list(os.environ):
            if var.startswith("COMPOSER_"):
                mp.delenv(var)
        for k, v in _env().items():
            mp.setenv(k, v)
        yield


def composer(*argv: str) -> CliRun:
    out, err = io.StringIO(), io.StringIO()
    with _canonical_env(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run(list(argv))
    return CliRun(code, out.getvalue(), err.getvalue())


def _default_prompt() -> str:
    with _canonical_env():
        return Settings().prompt


@pytest.fixture(scope="module")
def gen_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    with _canonical_env():
        run_setup(Settings(), lambda _d, _t: lambda _n: None)
    return tmp_path_factory.mktemp("eval") / "generations.sqlite"


@pytest.fixture(scope="module")
def first_run(gen_cache: Path) -> CliRun:
    return composer(
        "eval", "pages-smoke", "--baseline", str(BASELINE), "--cache", str(gen_cache), "--json"
    )


def test_smoke_suite_holds_against_the_committed_baseline(first_run: CliRun) -> None:
    assert first_run.code == 0, first_run.err
    data = first_run.json()
    assert data["regressions"] == []
    assert data["examples"] == 8
    default = _default_prompt()  # the baseline holds page_v4 and page_v3
    variant = data["variants"][default]
    # The real model wrote the words: no page fell back, and none copied the prompt.
    assert variant["fallback_rate"] == 0.0 and variant["words_replaced_rate"] < 0.5
    assert variant["prompt_copy_rate"] <= 0.1 and variant["nonsense_shown"] == 0.0
    for key in (
        "valid_rate",
        "grounding_errors",
        "fallback_rate",
        "page_ndcg@10",
        "retrieval_ndcg@10",
        "distinct_2",
        "tokens_p50",
        "latency_p50_s",
    ):
        assert isinstance(variant[key], float), key
    assert variant["valid_rate"] == 1.0 and variant["grounding_errors_shown"] == 0.0
    assert variant["model"] == "smollm2-135m-instruct" and variant["tokens_p50"] > 0
    assert data["baseline"]["matched"] == {default: default}
    assert data["cache"]["misses"] >= 8 and data["cache"]["hits"] == 0


def test_second_run_replays_every_generation_and_reports(
    first_run: CliRun, gen_cache: Path, tmp_path: Path
) -> None:
    assert first_run.code == 0, first_run.err
    report = tmp_path / "report.html"
    again = composer(
        "eval",
        "pages-smoke",
        "--baseline",
        str(BASELINE),
        "--cache",
        str(gen_cache),
        "--report",
        str(report),
        "--json",
    )
    assert again.code == 0, again.err
    data = again.json()
    assert data["cache"]["misses"] == 0  # no backend call at all
    assert data["cache"]["hits"] == first_run.json()["cache"]["misses"]
    default = _default_prompt()
    first, second = first_run.json()["variants"][default], data["variants"][default]
    for key in ("fallback_rate", "grounding_errors", "page_ndcg@10", "distinct_2", "tokens_p50"):
        assert second[key] == first[key], key

    html = report.read_text(encoding="utf-8")
    html5lib.HTMLParser(strict=True, namespaceHTMLElements=False).parse(html)  # raises on errors
    # Self-contained: nothing is fetched from anywhere.
    assert not re.search(r"""(?:src|href)=["']?(?:https?:)?//""", html)
    assert "<script" not in html
    assert html.count("<iframe") == 8 and html.count("srcdoc=") == 8
    assert "<svg" in html and "page_ndcg@10" in html


def test_broken_prompt_fails_the_gate_and_names_the_regression(gen_cache: Path) -> None:
    # Three English pages are enough to show it; the baseline is compared on those three.
    broken = composer(
        "eval",
        "pages-smoke",
        "--prompt",
        str(Path(__file__).parent / "prompts" / "page_broken_prices.j2"),
        "--limit",
        "3",
        "--baseline",
        str(BASELINE),
        "--cache",
        str(gen_cache),
        "--json",
    )
    assert broken.code == 1, broken.err
    data = broken.json()
    regressed = {(r["variant"], r["metric"]) for r in data["regressions"]}
    assert ("page_broken_prices", "grounding_errors") in regressed
    assert ("page_broken_prices", "unsupported_claims") in regressed
    assert data["baseline"]["matched"] == {"page_broken_prices": "page_v4"}
    # The checks kept every price off the page the shopper would see.
    assert data["variants"]["page_broken_prices"]["grounding_errors_shown"] == 0.0
    assert "regression: page_broken_prices: grounding_errors" in broken.err


def test_the_prompt_that_copies_its_example_fails_the_gate(gen_cache: Path) -> None:
    # page_v3, the default before page_v4: one JSON answer after one fixed example page.
    copied = composer(
        "eval", "pages-smoke", "--prompt", "page_v3", "--limit", "3",
        "--baseline", str(BASELINE), "--cache", str(gen_cache), "--json",
    )  # fmt: skip
    assert copied.code == 1, copied.err
    data = copied.json()
    assert data["variants"]["page_v3"]["prompt_copy_rate"] > 0.5
    regressed = {(r["variant"], r["metric"]) for r in data["regressions"]}
    assert ("page_v3", "prompt_copy_rate") in regressed
    assert "regression: page_v3: prompt_copy_rate" in copied.err


def test_copy_suite_runs_through_the_same_harness(gen_cache: Path) -> None:
    # The rules backend: the copy plumbing and metrics, without minutes of sampling.
    result = composer("eval", "copy-smoke", "--backend", "rules", "--no-cache", "--json")
    assert result.code == 0, result.err
    data = result.json()
    rules = data["variants"]["rules"]
    assert data["examples"] == 6
    assert rules["pass_rate"] == 1.0 and rules["grounding_errors"] == 0.0
    assert 0 < rules["distinct_2"] <= 1 and rules["tokens_p50"] == 0.0


def test_suite_and_prompt_mistakes_are_one_line_errors(gen_cache: Path) -> None:
    unknown = composer("eval", "no-such-suite")
    assert unknown.code == 2 and "known suites" in unknown.err
    assert len(unknown.err.strip().splitlines()) == 1
    prompt = composer("eval", "pages-smoke", "--prompt", "page_v9", "--no-cache")
    assert prompt.code == 2 and "unknown prompt 'page_v9'" in prompt.err


def test_concurrent_requests_give_the_same_results(gen_cache: Path) -> None:
    # Concurrency is for vLLM; the rules backend takes the same path, without a server.
    def run_with(workers: str) -> dict:
        result = composer(
            "eval", "pages-smoke", "--backend", "rules", "--concurrency", workers,
            "--limit", "4", "--no-cache", "--json",
        )  # fmt: skip
        assert result.code == 0, result.err
        return result.json()["variants"]["rules"]

    sequential, concurrent = run_with("1"), run_with("4")
    for key in ("fallback_rate", "page_ndcg@10", "retrieval_ndcg@10", "distinct_2"):
        assert concurrent[key] == sequential[key], key
    assert concurrent["examples"] == 4
