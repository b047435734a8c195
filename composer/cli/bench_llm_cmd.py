"""`composer bench llm`: the vLLM engine on the page workload (see composer/llm_bench.py)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from composer.cli.output import err_console, print_json, progress_bars, table
from composer.settings import Settings


class BenchBackend(StrEnum):
    # The figures (batching, server-side prefix cache, server metrics) are a serving
    # engine's; the in-process backend is measured inside the run as the comparison.
    VLLM = "vllm"


def bench_llm(
    backend: Annotated[
        BenchBackend, typer.Option(help="Serving engine to measure.")
    ] = BenchBackend.VLLM,
    pages: Annotated[
        int, typer.Option(min=2, max=200, help="Page requests (one per shopper) per figure.")
    ] = 20,
    url: Annotated[
        str | None,
        typer.Option(help="A running vLLM server on loopback (default: start one for the run)."),
    ] = None,
    transformers: Annotated[
        bool, typer.Option(help="Also run the pages on the in-process transformers backend.")
    ] = True,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON for machines.")] = False,
) -> None:
    """Pages/minute sequential vs 8 at once, tokens/s, constrained vs free decoding, prefix
    cache (time to first token, hit rate), and the ratio to the in-process backend."""
    from composer.api_bench import check_loopback
    from composer.llm_bench import run
    from composer.provision import open_store
    from retrieval import load_retriever

    if url:
        check_loopback(url)
    s = Settings()
    store = open_store(s)
    try:
        retriever = load_retriever(s.retrieval_config(), store)
        shoppers = (
            sorted(retriever.mf.model.user_index, key=lambda x: (len(x), x))[:pages]
            if retriever.mf
            else []
        )
        with progress_bars(not json_out) as progress:
            report = run(
                s,
                retriever,
                shoppers,
                url=url.rstrip("/") if url else None,
                transformers=transformers,
                progress=progress,
                log=err_console.print,
            )
    finally:
        store.close()
    if json_out:
        print_json(report)
        return
    seq, conc = report["sequential"], report["concurrent8"]
    rows = [
        ["single-stream generated tokens/s", report["single_stream_tokens_per_s"], ""],
        ["pages/minute, sequential", report["sequential_pages_per_min"], ""],
        ["pages/minute, 8 at once", report["concurrent8_pages_per_min"], ""],
        ["8 at once ÷ sequential", report["concurrency_speedup"], "≥ 3"],
        ["constrained ÷ free decoding speed", report["constrained_speed_ratio"], "≥ 0.9"],
        [
            "time to first token, warm prefix ÷ no reuse",
            report["prefix_ttft_ratio"],
            f"{report['prefix_cache']['ttft_warm_ms_p50']} ms vs "
            f"{report['prefix_cache']['ttft_off_ms_p50']} ms",
        ],
        [
            "prefix-cache hit rate (server metrics)",
            report["prefix_hit_rate"],
            f"over {seq['pages']} pages",
        ],
        [
            "fallback rate, sequential / 8 at once",
            f"{seq['fallback_rate']} / {conc['fallback_rate']}",
            "",
        ],
    ]
    if report.get("transformers"):
        rows.append(
            [
                "vLLM ÷ transformers pages/minute (sequential)",
                report["vs_transformers_ratio"],
                f"{report['transformers']['pages_per_min']} pages/min in-process",
            ]
        )
    table(f"vLLM on the page workload ({report['model']})", ["figure", "value", "note"], rows)


def register(bench_app: typer.Typer) -> None:
    bench_app.command("llm")(bench_llm)
