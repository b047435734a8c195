"""`composer bench …`: benchmarks that report ratios against a baseline in the same run."""

from __future__ import annotations

from contextlib import closing
from enum import StrEnum
from typing import Annotated, Any

import typer

from composer.cli.common import JsonOpt, settings
from composer.cli.output import console, err_console, print_json, progress_bars, table
from composer.errors import UsageError
from composer.provision import open_store
from composer.settings import BackendName
from retrieval import load_retriever

app = typer.Typer(
    help="Benchmarks that report ratios against a same-run baseline.", no_args_is_help=True
)


class Trace(StrEnum):
    """Visit patterns `composer bench api --trace` replays."""

    REVISITS = "revisits"


class BenchBackend(StrEnum):
    # The figures (batching, server-side prefix cache, server metrics) are a serving
    # engine's; the in-process backend is measured inside the run as the comparison.
    VLLM = "vllm"


@app.command("retrieval")
def bench_retrieval(
    requests: Annotated[int, typer.Option(min=10, help="Timed requests per catalog.")] = 300,
    catalog_size: Annotated[int, typer.Option(min=1000, help="Generated catalog size.")] = 100_000,
    chroma_url: Annotated[
        str | None,
        typer.Option(help="Index the generated catalog on this Chroma server (http://host:port)."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Warm retrieval latency p50/p99 by stage: MovieLens-100K and a generated catalog
    (embedded Chroma, or a Chroma server with --chroma-url)."""
    from retrieval.benchmark import WARMUP, distinct_queries, measure, synthetic_catalog

    s = settings()
    # One encoder serves both catalogs, and its cache keeps every query it embedded: the
    # two runs draw from one stream of distinct queries.
    queries = iter(distinct_queries(2 * (requests + WARMUP), seed=1))
    with closing(open_store(s)) as store:
        retriever = load_retriever(s.retrieval_config(), store)
        encoder = retriever.vectors().encoder
        if encoder is None:
            raise UsageError("the shop's retriever has no query encoder; run `composer setup`")
        ml = measure(retriever, requests, queries=queries)
        with progress_bars(not json_out) as progress:
            big = synthetic_catalog(
                s.artifacts_dir / "bench" / f"catalog_{catalog_size}",
                encoder,
                size=catalog_size,
                mf=s.mf,
                fusion=s.fusion,
                progress=progress,
                chroma_url=chroma_url,
            )
        large = measure(big, requests, queries=queries)
    key = "catalog_100k" if catalog_size == 100_000 else f"catalog_{catalog_size}"
    key += "_chroma_server" if chroma_url else ""
    report = {"ml100k": ml, key: large}
    if json_out:
        print_json(report)
        return
    stages = sorted({k for r in report.values() for k in r.stages_ms})
    table(
        "Warm retrieval latency (ms)",
        ["catalog", "p50", "p99", "mean", "popularity-only p50", "ratio", *stages],
        [
            [
                name,
                r.p50_ms,
                r.p99_ms,
                r.mean_ms,
                r.baseline_p50_ms,
                r.ratio_vs_baseline,
                *[r.stages_ms.get(k, 0.0) for k in stages],
            ]
            for name, r in report.items()
        ],
    )


@app.command("page")
def bench_page(
    pages: Annotated[int, typer.Option(min=1, help="Pages (one per shopper).")] = 50,
    copies: Annotated[int, typer.Option(min=0, help="Copy requests (one per product).")] = 50,
    backend: Annotated[
        BackendName, typer.Option(help="LLM backend to measure.")
    ] = BackendName.TRANSFORMERS,
    json_out: JsonOpt = False,
) -> None:
    """LLM pages vs the rules baseline: tokens, latency, first section, validity, fallbacks,
    constrained vs unconstrained decoding speed; and copy requests."""
    from composer.bench.page import constrained_ratio, run_copy, run_pages
    from composer.copywriting import Copywriter
    from composer.pipeline import PageComposer

    s = settings()
    with closing(open_store(s)) as store:
        retriever = load_retriever(s.retrieval_config(), store)
        composer_ = PageComposer(s, retriever)
        shoppers = (
            sorted(retriever.mf.model.user_index, key=lambda x: (len(x), x))[:pages]
            if retriever.mf
            else []
        )
        products = retriever.catalog.ids[:copies]
        with progress_bars(not json_out) as progress:
            llm = run_pages(composer_, shoppers, backend, progress(f"{backend} pages", pages))
            rules = run_pages(
                composer_, shoppers, BackendName.RULES, progress("rules pages", pages)
            )
            ratio = constrained_ratio(composer_, shoppers[0], backend)
            # The retriever already holds the catalog; the same backends serve copy.
            writer = Copywriter(
                s, retriever.catalog.by_id(), composer_.backends, similarity=composer_.similarity()
            )
            copy = (
                run_copy(writer, products, backend, progress("copy requests", copies))
                if copies
                else {}
            )
    report = {
        **llm,
        "constrained_speed_ratio": ratio["constrained_speed_ratio"],
        "decoding": ratio,
        "rules": rules,
        "llm_vs_rules_latency_ratio": round(llm["page_p50_s"] / max(rules["page_p50_s"], 1e-6), 1),
        "copy": copy,
    }
    if json_out:
        print_json(report)
        return
    table(
        f"Pages: {backend} vs rules",
        ["metric", backend, "rules"],
        [[k, llm[k], rules[k]] for k in llm],
    )
    console.print(
        f"constrained/unconstrained decoding speed: {ratio['constrained_speed_ratio']} per "
        f"request; {ratio.get('constrained_pass_speed_ratio', 'n/a')} per forward pass "
        f"({ratio.get('constrained_forward_passes', '?')} vs "
        f"{ratio.get('unconstrained_forward_passes', '?')} passes, "
        f"{ratio.get('constrained_forced_tokens', '?')} tokens forced by the grammar)"
    )
    if copy:
        table("Copy", ["metric", "value"], list(copy.items()))


@app.command("api")
def bench_api(
    url: Annotated[
        str | None, typer.Option(help="A running server (loopback); default: start one.")
    ] = None,
    backend: Annotated[
        BackendName, typer.Option(help="LLM backend measured beside rules.")
    ] = BackendName.TRANSFORMERS,
    rules_requests: Annotated[int, typer.Option(min=16, help="Requests per rules run.")] = 400,
    llm_requests: Annotated[int, typer.Option(min=0, help="LLM requests at c1 (×4 at c16).")] = 4,
    workers: Annotated[int, typer.Option(min=1, max=16, help="Workers of a started server.")] = 1,
    key: Annotated[
        str | None,
        typer.Option(envvar="COMPOSER_API_KEY", help="An admin key of the --url server."),
    ] = None,
    swap: Annotated[
        bool,
        typer.Option(
            help="Then rules pages at concurrency 16 while `composer train` (with these "
            "settings: the server's) writes a new model version: failed requests, versions seen."
        ),
    ] = False,
    exposure_cost: Annotated[
        bool,
        typer.Option(
            help="Then rules pages/s with the exposure log off and on (servers of their own, "
            "one after the other, --exposure-rounds times): what logging every page costs."
        ),
    ] = False,
    exposure_rounds: Annotated[
        int, typer.Option(min=1, help="Rounds of --exposure-cost (off and on each round).")
    ] = 3,
    html_stream: Annotated[
        int,
        typer.Option(
            min=0,
            help="Then this many browser pages (`/pages/…`, composed on request by the LLM, "
            "one at a time): when the head, the first section and the end arrived.",
        ),
    ] = 0,
    trace: Annotated[
        Trace | None,
        typer.Option(
            help="Instead: replay the shop's visit pattern (`revisits`: returning shoppers' "
            "visits of the log's last --trace-days, compressed to --trace-seconds) with pages "
            "composed on request, then composed ahead: LLM share of page views, p50/p99."
        ),
    ] = None,
    trace_days: Annotated[float, typer.Option(min=1, help="Days of the log --trace replays.")] = 14,
    trace_seconds: Annotated[
        float, typer.Option(min=10, help="How long the replay of those days lasts.")
    ] = 360,
    trace_shoppers: Annotated[
        int | None,
        typer.Option(min=1, help="--trace: only the shoppers with the most visits, this many."),
    ] = None,
    ahead_budget: Annotated[
        int, typer.Option(min=1, help="--trace: pages composed ahead per minute at most.")
    ] = 60,
    json_out: JsonOpt = False,
) -> None:
    """Pages/s and p50/p99 at concurrency 1 and 16: rules, and the LLM with its fallback rate;
    with --swap, a model swap under load; with --exposure-cost, the exposure log's cost; with
    --trace revisits, on-request pages against pages composed ahead."""
    from composer.bench.api import (
        run,
        run_exposure_cost,
        run_html_stream,
        run_swap,
        shoppers_with_events,
    )
    from composer.topology import ApiServer

    if trace is not None:
        if url or swap or exposure_cost:
            raise UsageError("--trace starts servers of its own: leave out --url, --swap and "
                             "--exposure-cost")  # fmt: skip
        _bench_trace(
            backend, workers, trace_days, trace_seconds, ahead_budget, trace_shoppers, json_out
        )
        return
    shoppers = shoppers_with_events(settings())

    def measure(base: str, admin_key: str) -> dict[str, Any]:
        report = run(base, admin_key, backend, rules_requests, llm_requests, shoppers)
        if swap:
            report["swap"] = run_swap(base, admin_key, shoppers)
        if html_stream:
            # Shoppers the runs above did not ask for: no page from the cache.
            fresh = shoppers[::-1]
            report["html_stream"] = run_html_stream(base, admin_key, fresh, html_stream)
        return report

    if url:
        if exposure_cost:
            raise UsageError("--exposure-cost starts servers of its own: leave out --url")
        if not key:
            raise UsageError("--url needs --key (or COMPOSER_API_KEY): an admin key of that server")
        report = measure(url.rstrip("/"), key)
    else:
        with ApiServer(workers) as server:
            report = measure(server.url, server.key)
        if exposure_cost:
            report["exposure_cost"] = run_exposure_cost(
                workers, rules_requests, shoppers, exposure_rounds
            )
    report["workers"] = workers if not url else None
    if json_out:
        print_json(report)
        return
    rows = []
    for name in ("rules", "llm"):
        for c in ("c1", "c16"):
            r = report[name].get(c)
            if r:
                rows.append(
                    [
                        name if name == "rules" else backend,
                        c,
                        r["answered_200"],
                        r["pages_per_s"],
                        r["p50_ms"],
                        "n<100" if r["p99_ms"] is None else r["p99_ms"],
                        r["fallback_rate"],
                        r["non_200"] + r["errors"],
                    ]
                )
    table(
        "Page API under load (latency of 200 answers; no page from the cache)",
        ["backend", "concurrency", "pages", "pages/s", "p50 ms", "p99 ms", "fallback rate",
         "not 200"],
        rows,
    )  # fmt: skip
    if html_stream:
        table("Browser pages composed on request, streamed (p50)", ["what", "value"],
              list(report["html_stream"].items()))  # fmt: skip
    if swap:
        table("Model swap under load (rules pages, concurrency 16)", ["what", "value"],
              list(report["swap"].items()))  # fmt: skip
    if exposure_cost:
        cost = report["exposure_cost"]
        table(
            "Exposure log: rules pages/s off and on",
            ["concurrency", "off", "on", "on/off per round", "median on/off"],
            [[c, cost[c]["pages_per_s_off"], cost[c]["pages_per_s_on"],
              cost[c]["ratio_per_round"], cost[c]["ratio_on_off"]] for c in ("c1", "c16")],
        )  # fmt: skip


def _bench_trace(
    backend: BackendName,
    workers: int,
    days: float,
    seconds: float,
    budget: int,
    shoppers: int | None,
    json_out: bool,
) -> None:
    from composer.bench.revisits import MODES, run_revisits

    report = run_revisits(settings(), backend, days, seconds, workers, 16, budget, shoppers)
    if json_out:
        print_json(report)
        return
    table("Trace", ["what", "value"], list(report["trace"].items()))
    rows = []
    for mode in MODES:
        r = report[mode]
        rows.append([mode, r["page_views"], r["llm_share"], r["p50_ms"], r["p99_ms"],
                     r["max_ms"], r["rules_page_reasons"], r["non_200"] + r["errors"]])  # fmt: skip
    table(
        f"Page views of the replay ({backend}, concurrency ≤ 16, {workers} worker(s))",
        ["mode", "views", "LLM share", "p50 ms", "p99 ms", "max ms", "rules pages because",
         "not 200"],
        rows,
    )  # fmt: skip
    ahead = report["compose_ahead"]
    table("Compose-ahead", ["what", "value"],
          [*ahead["previous_visits"].items(), ("composes", ahead["composes"]),
           ("served", ahead["ahead"]), ("page age p50 / max s",
            f"{ahead['page_age_s_p50']} / {ahead['page_age_s_max']}")])  # fmt: skip


@app.command("llm")
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
    json_out: JsonOpt = False,
) -> None:
    """Pages/minute sequential vs 8 at once, tokens/s, constrained vs free decoding, prefix
    cache (time to first token, hit rate), and the ratio to the in-process backend."""
    from composer.bench.api import check_loopback
    from composer.bench.llm import run

    if url:
        check_loopback(url)
    s = settings()
    with closing(open_store(s)) as store:
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


@app.command("ingest")
def bench_ingest(
    database_url: Annotated[
        str | None,
        typer.Option(help="An empty database to measure beside SQLite (postgresql+psycopg://…)."),
    ] = None,
    products: Annotated[int, typer.Option(min=100, help="Generated products.")] = 20_000,
    events: Annotated[int, typer.Option(min=100, help="Generated events.")] = 200_000,
    batch: Annotated[int, typer.Option(min=1, help="Events per live add_events call.")] = 10,
    json_out: JsonOpt = False,
) -> None:
    """Products/s and events/s the store writes: SQLite, and another database beside it."""
    from composer.bench.ingest import run

    others = {"other": database_url} if database_url else {}
    if database_url and database_url.startswith("postgresql"):
        others = {"postgresql": database_url}
    report = run(others, products, events, batch)
    if json_out:
        print_json(report)
        return
    names = [n for n in report if isinstance(report[n], dict)]
    table(
        f"Store writes: {products} products, {events} events",
        ["database", "products/s", "events/s (ingest)", f"events/s (live, {batch} a call)"],
        [
            [n, report[n]["products_per_s"], report[n]["events_per_s"],
             report[n]["live_events_per_s"]]
            for n in names
        ],
    )  # fmt: skip
