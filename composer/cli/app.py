"""The `composer` command-line program."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from composer.cli.output import console, print_json, progress_bars, table
from composer.errors import ComposerError, UsageError, first_error
from composer.layout import Locale, PageKind
from composer.provision import open_store, run_setup
from composer.settings import Settings
from retrieval import (
    EventKind,
    Interaction,
    RetrievalError,
    RetrievalRequest,
    RowErrors,
    build,
    load_retriever,
    read_catalog,
    read_interactions,
    write_rejects,
)

app = typer.Typer(
    name="composer",
    help="Personalised, LLM-composed e-commerce pages.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
events_app = typer.Typer(help="Record shopper events.", no_args_is_help=True)
bench_app = typer.Typer(
    help="Benchmarks that report ratios against a same-run baseline.", no_args_is_help=True
)
app.add_typer(events_app, name="events")
app.add_typer(bench_app, name="bench")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for machines.")]


def settings() -> Settings:
    return Settings()


@app.command()
def setup(
    force: Annotated[
        bool, typer.Option(help="Retrain and re-tune even if nothing changed.")
    ] = False,
    sample_shop: Annotated[bool, typer.Option(help="Seed the MovieLens-100K sample shop.")] = True,
    json_out: JsonOpt = False,
) -> None:
    """Fetch data and models, ingest the sample shop, build indexes (idempotent)."""
    s = settings()
    t = time.perf_counter()
    with progress_bars(not json_out) as progress:
        report = run_setup(s, progress, seed_sample_shop=sample_shop, force=force)
    total = round(time.perf_counter() - t, 2)
    if json_out:
        print_json({"artifacts_dir": str(s.artifacts_dir), "seconds": total, **vars(report)})
        return
    b = report.build
    table(
        f"Set-up done in {total} s ({s.artifacts_dir})",
        ["what", "value"],
        [
            ["products", report.counts.get("products")],
            ["shoppers", report.counts.get("shoppers")],
            ["events", report.counts.get("events")],
            ["sample shop ingested now", report.seeded],
            ["products embedded now", b.embedded if b else 0],
            ["MF trained now", b.trained if b else False],
            ["fusion weights tuned now", b.tuned if b else False],
        ],
    )


@app.command("init")
def init(
    catalog: Annotated[
        Path | None, typer.Option(help="Catalog file (CSV, TSV, JSONL, Parquet).")
    ] = None,
    interactions: Annotated[Path | None, typer.Option(help="Interactions file, optional.")] = None,
    folder: Annotated[
        Path | None,
        typer.Option("--dir", help="The shop's own artifacts folder (default: ARTIFACTS_DIR)."),
    ] = None,
    name: Annotated[str, typer.Option(help="The shop's name, for its profile.")] = "My shop",
    sells: Annotated[
        str | None, typer.Option(help="What the shop sells, as a phrase (profile).")
    ] = None,
    currency: Annotated[str, typer.Option(help="ISO 4217 code of catalog prices.")] = "USD",
    packaged: Annotated[
        str | None,
        typer.Option(
            help="Instead of files: a packaged shop of real public data (electronics, clothing)."
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Set a shop up in its own folder: ingest, build indexes, draft its profile (shop.yaml)."""
    from composer.shop.setup import init_packaged, init_shop

    if (catalog is None) == (packaged is None):
        raise UsageError("give --catalog FILE (and --interactions FILE), or --packaged NAME")
    s = settings()
    if folder is not None:
        s = s.for_shop_folder(folder)
    store = open_store(s)
    try:
        with progress_bars(not json_out) as progress:
            if packaged is not None:
                report = init_packaged(s, store, packaged, progress)
            else:
                assert catalog is not None
                report = init_shop(
                    s, store, catalog, interactions, name, sells, currency.upper(), progress
                )
        counts = store.counts()
    finally:
        store.close()
    if json_out:
        data = vars(report) | {"counts": counts}
        data["build"] = vars(report.build) if report.build else None
        print_json(data)
        return
    table(
        f"Shop set up in {report.folder}",
        ["what", "value"],
        [
            ["products in the shop", counts.get("products")],
            ["events in the shop", counts.get("events")],
            ["categories", len(report.categories)],
            ["profile", report.profile + (" (written now)" if report.profile_written else "")],
        ],
    )
    if report.profile_written and packaged is None:
        console.print(
            f"Next: add example headlines for your categories to {report.profile}, then "
            f"COMPOSER_ARTIFACTS_DIR={report.folder} COMPOSER_CACHE_DIR="
            f"{s.resolved_cache_dir()} composer serve"
        )


@app.command()
def ingest(
    catalog: Annotated[
        Path | None, typer.Option(help="Catalog file (CSV, JSONL, Parquet).")
    ] = None,
    interactions: Annotated[
        Path | None, typer.Option(help="Interactions file (CSV, JSONL, Parquet).")
    ] = None,
    rebuild: Annotated[bool, typer.Option(help="Update vectors and MF afterwards.")] = True,
    skip_bad_rows: Annotated[
        bool,
        typer.Option(
            "--skip-bad-rows",
            help="Skip rows that fail validation (up to --max-bad-rows per file) and report "
            "them, instead of rejecting the whole call.",
        ),
    ] = False,
    max_bad_rows: Annotated[
        str | None,
        typer.Option(
            help="With --skip-bad-rows: most bad rows per file, a count (default 100) or a "
            "percentage such as 5%; over it nothing is written."
        ),
    ] = None,
    rejects: Annotated[
        Path | None,
        typer.Option(
            help="With --skip-bad-rows: JSONL report of the rejected rows "
            "(default ARTIFACTS/ingest-rejects.jsonl)."
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Ingest a shop's catalog and/or interactions; all or nothing unless --skip-bad-rows."""
    if catalog is None and interactions is None:
        raise UsageError("give --catalog FILE, --interactions FILE, or both")
    if not skip_bad_rows and (max_bad_rows is not None or rejects is not None):
        raise UsageError("--max-bad-rows and --rejects only apply with --skip-bad-rows")
    cat_errors = ev_errors = None
    if skip_bad_rows:
        try:
            cat_errors, ev_errors = RowErrors(max_bad_rows), RowErrors(max_bad_rows)
        except ValueError as exc:
            raise UsageError(f"--max-bad-rows: {exc}") from None
    s = settings()
    store = open_store(s)
    try:
        products = read_catalog(catalog, cat_errors, s.link_policy()) if catalog else []
        known = store.product_ids() | {p.product_id for p in products}
        events = (
            read_interactions(
                interactions, known, ev_errors, cat_errors.rejected_ids if cat_errors else None
            )
            if interactions
            else []
        )
        report = None
        if cat_errors is not None and ev_errors is not None:
            report = rejects or s.artifacts_dir / "ingest-rejects.jsonl"
            try:
                write_rejects(report, cat_errors, ev_errors)
            except OSError as exc:
                raise UsageError(f"cannot write the rejects report {report}: {exc}") from None
            cat_errors.check(report)  # over the limit: one line, exit 2, store untouched
            ev_errors.check(report)
        change = store.ingest(products, events)
        result: dict[str, object] = {
            "products_added": len(change.added),
            "products_updated": len(change.updated),
            "products_unchanged": change.unchanged,
            "events_added": change.events_added,
            "events_duplicate": change.events_duplicate,
            "rows_rejected_catalog": len(cat_errors.rejected) if cat_errors else 0,
            "rows_rejected_interactions": len(ev_errors.rejected) if ev_errors else 0,
        }
        if report is not None:
            result["rejects_report"] = str(report)
        if rebuild:
            with progress_bars(not json_out) as progress:
                build_report = build(s.retrieval_config(), store, progress=progress)
            result["products_embedded"] = build_report.embedded
            result["mf_trained"] = build_report.trained
    finally:
        store.close()
    if json_out:
        print_json(result)
    else:
        table("Ingested", ["what", "count"], list(result.items()))


@events_app.command("add")
def events_add(
    shopper: Annotated[str, typer.Option(help="Shopper id.")],
    product: Annotated[list[str], typer.Option(help="Product id (repeatable).")],
    kind: Annotated[EventKind, typer.Option(help="Event kind.")] = EventKind.VIEW,
    timestamp: Annotated[float | None, typer.Option(help="Unix seconds; default now.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Append shopper events durably; the next retrieval for that shopper sees them."""
    s = settings()
    store = open_store(s)
    try:
        ts = timestamp if timestamp is not None else time.time()
        ids = store.add_events([Interaction(shopper, p, kind, ts) for p in product])
    finally:
        store.close()
    if json_out:
        print_json({"event_ids": ids})
    else:
        console.print(f"recorded {len(ids)} event(s): ids {', '.join(map(str, ids))}")


@app.command()
def retrieve(
    user: Annotated[str | None, typer.Option(help="Shopper id.")] = None,
    recent: Annotated[
        str | None, typer.Option(help="Anonymous session: comma-separated recent product ids.")
    ] = None,
    query: Annotated[str | None, typer.Option(help="Search text.")] = None,
    k: Annotated[int, typer.Option(min=1, max=200, help="How many candidates.")] = 24,
    min_price: Annotated[float | None, typer.Option(min=0)] = None,
    max_price: Annotated[float | None, typer.Option(min=0)] = None,
    category: Annotated[list[str] | None, typer.Option(help="Keep these categories (any).")] = None,
    include_out_of_stock: bool = False,
    diversity: Annotated[float | None, typer.Option(min=0, max=1)] = None,
    json_out: JsonOpt = False,
) -> None:
    """Ranked, explained candidates for a shopper or an anonymous session."""
    if user is None and not recent:
        raise UsageError("give --user ID or --recent ID,ID,… for an anonymous session")
    if min_price is not None and max_price is not None and min_price > max_price:
        raise UsageError("--min-price is greater than --max-price")
    s = settings()
    store = open_store(s)
    try:
        retriever = load_retriever(s.retrieval_config(), store)
        recent_ids = tuple(r.strip() for r in (recent or "").split(",") if r.strip())
        unknown = [r for r in recent_ids if r not in retriever.catalog.index]
        if unknown:
            raise UsageError(f"--recent names unknown product id(s): {', '.join(unknown[:5])}")
        result = retriever.retrieve(
            RetrievalRequest(
                shopper_id=user,
                recent_product_ids=recent_ids,
                query=query,
                k=k,
                min_price=min_price,
                max_price=max_price,
                categories=tuple(category or ()),
                in_stock_only=not include_out_of_stock,
                diversity=diversity,
            )
        )
    finally:
        store.close()
    if json_out:
        print_json(result)
        return
    cat = retriever.catalog
    rows = []
    for rank, c in enumerate(result.candidates, start=1):
        p = cat.products[cat.index[c.product_id]]
        rows.append(
            [
                rank,
                c.product_id,
                p.title,
                "/".join(p.categories),
                f"{p.price:.2f}",
                "+".join(c.provenance),
                c.theme or "",
                _reason_text(c.reason, cat),
            ]
        )
    prof = result.profile
    table(
        f"Candidates for {prof.pseudonym} ({prof.events} events; likes "
        f"{', '.join(prof.top_categories) or 'n/a'})",
        ["#", "id", "title", "categories", "price", "from", "theme", "why"],
        rows,
    )
    console.print(
        "timings (ms): " + ", ".join(f"{k} {v:.1f}" for k, v in result.timings_ms.items())
    )


def _reason_text(reason, catalog) -> str:
    def title(pid: str) -> str:
        return catalog.products[catalog.index[pid]].title if pid in catalog.index else pid

    if reason.code == "similar_to_history" and reason.product_ids:
        return "like " + " & ".join(title(p) for p in reason.product_ids)
    if reason.code == "matches_profile" and reason.product_ids:
        return "similar to " + " & ".join(title(p) for p in reason.product_ids)
    if reason.code == "matches_query":
        return f"matches “{reason.query}”"
    if reason.code == "popular":
        return f"popular (#{reason.popularity_rank})"
    return reason.code


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code; errors a user can fix become one line."""
    import click

    try:
        result = app(args=argv, standalone_mode=False, prog_name="composer")
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort:
        sys.stderr.write("aborted\n")
        return 130
    except (ComposerError, RetrievalError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    except ValidationError as exc:
        # Any that gets this far is the environment's settings: commands turn their own
        # inputs into UsageError. Name the variable a user sets, not the field.
        first = exc.errors()[0]
        name = "COMPOSER_" + "__".join(str(part) for part in first["loc"]).upper()
        what = f"setting {name}" if exc.title == "Settings" else exc.title
        sys.stderr.write(f"error: {what}: {first['msg']}\n")
        return 2
    return result if isinstance(result, int) else 0


def main() -> None:
    sys.exit(run())


@app.command("retrieval-eval")
def retrieval_eval(
    max_users: Annotated[int, typer.Option(min=10, help="Shoppers in the full split.")] = 2000,
    slice_users: Annotated[int, typer.Option(min=10, help="Shoppers per slice.")] = 300,
    json_out: JsonOpt = False,
) -> None:
    """Temporal hold-out: popularity, MF, vector and hybrid on full, cold-start, query slices."""
    from retrieval.evaluation import EvalWorld, evaluate

    s = settings()
    store = open_store(s)
    try:
        retriever = load_retriever(s.retrieval_config(), store)
        world = EvalWorld(
            retriever.catalog, retriever.vector.index, retriever.vector.encoder, s.mf, s.fusion
        )
        events = store.all_events()
        with progress_bars(not json_out) as progress:
            report = evaluate(
                world,
                events,
                retriever.weights,
                max_users,
                slice_users,
                progress=progress("evaluating", 2 * max_users + 2 * slice_users),
            )
    finally:
        store.close()
    if json_out:
        print_json(report)
        return
    cut = time.strftime("%Y-%m-%d", time.gmtime(report["global_time_cut"]))
    for name, block in (
        ("Full split, each shopper's latest events held out", report["methods"]),
        ("Cold start (3 events)", report["cold_start"]),
        ("Query naming the genre of held-out items", report["query"]),
        (f"One cut-off for everyone ({cut}): later events held out", report["global_time"]),
    ):
        table(
            f"{name}: {next(iter(block.values()))['users']} shoppers",
            ["method", "Recall@10", "Recall@20", "NDCG@10", "coverage"],
            [
                [m, v["recall@10"], v["recall@20"], v["ndcg@10"], v["coverage"]]
                for m, v in block.items()
            ],
        )


@bench_app.command("retrieval")
def bench_retrieval(
    requests: Annotated[int, typer.Option(min=10, help="Timed requests per catalog.")] = 300,
    catalog_size: Annotated[int, typer.Option(min=1000, help="Generated catalog size.")] = 100_000,
    json_out: JsonOpt = False,
) -> None:
    """Warm retrieval latency p50/p99 by stage: MovieLens-100K and a generated catalog."""
    from retrieval.benchmark import WARMUP, distinct_queries, measure, synthetic_catalog

    s = settings()
    store = open_store(s)
    # One encoder serves both catalogs, and its cache keeps every query it embedded: the
    # two runs draw from one stream of distinct queries.
    queries = iter(distinct_queries(2 * (requests + WARMUP), seed=1))
    try:
        retriever = load_retriever(s.retrieval_config(), store)
        ml = measure(retriever, requests, queries=queries)
        with progress_bars(not json_out) as progress:
            big = synthetic_catalog(
                s.artifacts_dir / "bench" / f"catalog_{catalog_size}",
                retriever.vector.encoder,
                size=catalog_size,
                mf=s.mf,
                fusion=s.fusion,
                progress=progress,
            )
        large = measure(big, requests, queries=queries)
    finally:
        store.close()
    key = "catalog_100k" if catalog_size == 100_000 else f"catalog_{catalog_size}"
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


@app.command()
def page(
    user: Annotated[str | None, typer.Option(help="Shopper id (omit for a cold start).")] = None,
    recent: Annotated[
        str | None, typer.Option(help="Anonymous session: comma-separated recent product ids.")
    ] = None,
    kind: Annotated[PageKind, typer.Option(help="Page kind.")] = PageKind.HOME,
    query: Annotated[str | None, typer.Option(help="Search text.")] = None,
    locale: Annotated[Locale, typer.Option(help="Language of the copy.")] = Locale.EN,
    backend: Annotated[
        str | None, typer.Option(help="transformers | vllm | rules (default: setting).")
    ] = None,
    prompt: Annotated[str | None, typer.Option(help="Prompt template name in prompts/.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="json | html")] = "json",
    out: Annotated[Path | None, typer.Option(help="Write the result to this file.")] = None,
    seed: Annotated[int | None, typer.Option(min=0)] = None,
    sections: Annotated[int, typer.Option(min=1, max=4, help="At most this many sections.")] = 3,
) -> None:
    """Compose one page: retrieval, LLM layout, checks, hydration, HTML."""
    from composer.page_request import PageRequest
    from composer.pipeline import PageComposer

    if fmt not in ("json", "html"):
        raise UsageError("--format must be json or html")
    try:
        request = PageRequest(
            shopper_id=user,
            recent_items=[r.strip() for r in (recent or "").split(",") if r.strip()],
            kind=kind,
            query=query,
            locale=locale,
            backend=backend,
            prompt=prompt,
            format="both" if fmt == "json" else "html",
            seed=seed,
            max_sections=sections,
        )
    except ValidationError as exc:
        raise UsageError(first_error(exc)) from None
    s = settings()
    store = open_store(s)
    try:
        composer = PageComposer(s, load_retriever(s.retrieval_config(), store))
        result = composer.compose(request)
    finally:
        store.close()
    if fmt == "html":
        text = result.html or ""
    else:
        import json

        text = json.dumps(result.to_dict(include_html=True), ensure_ascii=False, indent=2)
    if out:
        out.write_text(text, encoding="utf-8")
        console.print(f"wrote {out}")
    else:
        sys.stdout.write(text + "\n")


copy_app = typer.Typer(help="Headlines, taglines and descriptions.", invoke_without_command=True)
app.add_typer(copy_app, name="copy")


def _copywriter(s: Settings, store):
    from composer.copywriting import Copywriter
    from composer.wording import encoder_similarity
    from retrieval import Encoder
    from retrieval.catalog_view import CatalogView

    products = store.products()
    if not products:
        raise UsageError("the catalog is empty; run `composer setup` or `composer ingest`")
    similarity = encoder_similarity(Encoder(s.embedding_model))
    return Copywriter(s, CatalogView(products).by_id(), similarity=similarity)


@copy_app.callback()
def copy_single(
    ctx: typer.Context,
    products: Annotated[str | None, typer.Option(help="Product id(s), comma-separated.")] = None,
    kind: Annotated[str, typer.Option(help="headline | tagline | description")] = "headline",
    tone: Annotated[str, typer.Option(help="Tone of voice.")] = "warm",
    locale: Annotated[Locale, typer.Option(help="Language of the copy.")] = Locale.EN,
    n: Annotated[int, typer.Option(min=1, max=8, help="Distinct variants.")] = 3,
    max_chars: Annotated[int | None, typer.Option(min=10, max=400)] = None,
    backend: Annotated[str | None, typer.Option(help="transformers | vllm | rules")] = None,
    seed: Annotated[int, typer.Option(min=0)] = 0,
    json_out: JsonOpt = False,
) -> None:
    """Copy for one or more products: N distinct variants, each with the checks it passed."""
    from composer.copywriting import CopyRequest

    if ctx.invoked_subcommand is not None:
        return
    if not products:
        raise UsageError("give --products ID[,ID…] (or use `composer copy batch IN OUT`)")
    try:
        request = CopyRequest(
            products=[p for p in products.split(",") if p.strip()],
            kind=kind,
            tone=tone,
            locale=locale,
            n=n,
            max_chars=max_chars,
            backend=backend,
            seed=seed,
        )
    except ValidationError as exc:
        raise UsageError(first_error(exc)) from None
    s = settings()
    store = open_store(s)
    try:
        result = _copywriter(s, store).write(request)
    finally:
        store.close()
    if json_out:
        print_json(result)
        return
    table(
        f"{result.kind.value} copy ({result.backend}"
        f"{', fallback: ' + result.fallback_reason if result.fallback else ''})",
        ["#", "text", "passed", "failed checks"],
        [
            [i, v.text, v.passed, ", ".join(k for k, ok in v.checks.items() if not ok)]
            for i, v in enumerate(result.variants, 1)
        ],
    )


@copy_app.command("batch")
def copy_batch(
    in_path: Annotated[Path, typer.Argument(help="JSONL: one copy request per line.")],
    out_path: Annotated[Path, typer.Argument(help="JSONL results; re-running resumes.")],
    json_out: JsonOpt = False,
) -> None:
    """Many copy requests; finished lines are skipped on re-run, bad lines reported."""
    from composer.copywriting import run_batch

    s = settings()
    store = open_store(s)
    try:
        writer = _copywriter(s, store)
        with progress_bars(not json_out) as progress:
            report = run_batch(writer, in_path, out_path, progress)
    finally:
        store.close()
    if json_out:
        print_json(report)
        return
    for line in report.failed:
        sys.stderr.write(f"skipped: {line}\n")
    console.print(
        f"done {report.done}, already done {report.skipped}, "
        f"bad lines {len(report.failed)} → {out_path}"
    )


@bench_app.command("page")
def bench_page(
    pages: Annotated[int, typer.Option(min=1, help="Pages (one per shopper).")] = 50,
    copies: Annotated[int, typer.Option(min=0, help="Copy requests (one per product).")] = 50,
    backend: Annotated[str, typer.Option(help="LLM backend to measure.")] = "transformers",
    json_out: JsonOpt = False,
) -> None:
    """LLM pages vs the rules baseline: tokens, latency, first section, validity, fallbacks,
    constrained vs unconstrained decoding speed; and copy requests."""
    from composer.copywriting import Copywriter
    from composer.page_bench import constrained_ratio, run_copy, run_pages
    from composer.pipeline import PageComposer

    s = settings()
    store = open_store(s)
    try:
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
            rules = run_pages(composer_, shoppers, "rules", progress("rules pages", pages))
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
    finally:
        store.close()
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


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to bind (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    workers: Annotated[int, typer.Option(min=1, max=64, help="uvicorn worker processes.")] = 1,
    vllm: Annotated[
        bool,
        typer.Option(
            "--vllm", help="Start a local vLLM server, serve pages from it, stop it on exit."
        ),
    ] = False,
) -> None:
    """Serve the page API (Litestar under uvicorn)."""
    from contextlib import nullcontext

    from composer.api.server import serve as run_server
    from composer.cli.vllm_cmd import local_vllm

    with local_vllm(settings()) if vllm else nullcontext(settings()) as s:
        console.print(f"serving on http://{host}:{port} (API schema: /schema, admin key)")
        run_server(
            s,
            host=host,
            port=port,
            workers=workers,
            # One line each, never wrapped: the key and the link are copied from here.
            announce=lambda line: console.print(line, soft_wrap=True, highlight=False),
        )


@bench_app.command("api")
def bench_api(
    url: Annotated[
        str | None, typer.Option(help="A running server (loopback); default: start one.")
    ] = None,
    backend: Annotated[str, typer.Option(help="LLM backend measured beside rules.")] = (
        "transformers"
    ),
    rules_requests: Annotated[int, typer.Option(min=16, help="Requests per rules run.")] = 400,
    llm_requests: Annotated[int, typer.Option(min=0, help="LLM requests at c1 (×4 at c16).")] = 4,
    workers: Annotated[int, typer.Option(min=1, max=16, help="Workers of a started server.")] = 1,
    key: Annotated[
        str | None,
        typer.Option(envvar="COMPOSER_API_KEY", help="An admin key of the --url server."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Pages/s and p50/p99 at concurrency 1 and 16: rules, and the LLM with its fallback rate."""
    from composer.api_bench import LocalServer, run

    s = settings()
    store = open_store(s)
    try:
        shoppers = sorted({e.shopper_id for e in store.all_events()})
    finally:
        store.close()
    if url:
        if not key:
            raise UsageError("--url needs --key (or COMPOSER_API_KEY): an admin key of that server")
        report = run(url.rstrip("/"), key, backend, rules_requests, llm_requests, shoppers)
    else:
        with LocalServer(workers) as server:
            report = run(server.url, server.key, backend, rules_requests, llm_requests, shoppers)
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


# `composer eval`: its own module; the harness's heavy imports happen inside the command.
from composer.cli.eval_cmd import eval_suite  # noqa: E402

app.command("eval")(eval_suite)

# `composer vllm-serve` and `composer bench llm`: their own modules (the vLLM server and its
# benchmark); heavy imports happen inside the commands.
from composer.cli import bench_llm_cmd, vllm_cmd  # noqa: E402

vllm_cmd.register(app)
bench_llm_cmd.register(bench_app)

# `composer keys new` and `composer link`: access to the API.
from composer.cli import access_cmd  # noqa: E402

access_cmd.register(app)
