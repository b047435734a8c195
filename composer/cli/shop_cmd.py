"""Setting a shop up and looking into it: `setup`, `init`, `ingest`, `embed`, `events add`,
`retrieve`, `retrieval-eval`."""

from __future__ import annotations

import time
from contextlib import closing
from pathlib import Path
from typing import Annotated

import typer

from composer.cli.common import JsonOpt, settings
from composer.cli.output import console, print_json, progress_bars, table
from composer.errors import UsageError
from composer.provision import open_store, run_setup
from retrieval import (
    EventKind,
    Interaction,
    RetrievalRequest,
    RowErrors,
    build,
    embed,
    load_retriever,
    read_catalog,
    read_interactions,
    write_rejects,
)

app = typer.Typer()
events_app = typer.Typer(help="Record shopper events.", no_args_is_help=True)
app.add_typer(events_app, name="events")


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
    with closing(open_store(s)) as store:
        with progress_bars(not json_out) as progress:
            if packaged is not None:
                report = init_packaged(s, store, packaged, progress)
            else:
                assert catalog is not None
                report = init_shop(
                    s, store, catalog, interactions, name, sells, currency.upper(), progress
                )
        counts = store.counts()
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
    with closing(open_store(s)) as store:
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
    if json_out:
        print_json(result)
    else:
        table("Ingested", ["what", "count"], list(result.items()))


@app.command("embed")
def embed_catalog(json_out: JsonOpt = False) -> None:
    """Re-embed what changed in the catalog since the last build (new products, changed
    text), as a job of its own: no training (beside serving processes with a Chroma server;
    an embedded index is written by one process at a time)."""
    s = settings()
    t = time.perf_counter()
    with closing(open_store(s)) as store, progress_bars(not json_out) as progress:
        report = embed(s.retrieval_config(), store, progress=progress)
    result = {
        "products": report.products,
        "products_embedded": report.embedded,
        "seconds": round(time.perf_counter() - t, 2),
    }
    if json_out:
        print_json(result)
    else:
        table("Embedded", ["what", "value"], list(result.items()))


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
    with closing(open_store(s)) as store:
        ts = timestamp if timestamp is not None else time.time()
        ids = store.add_events([Interaction(shopper, p, kind, ts) for p in product])
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
    with closing(open_store(s)) as store:
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


@app.command("retrieval-eval")
def retrieval_eval(
    max_users: Annotated[int, typer.Option(min=10, help="Shoppers in the full split.")] = 2000,
    slice_users: Annotated[int, typer.Option(min=10, help="Shoppers per slice.")] = 300,
    json_out: JsonOpt = False,
) -> None:
    """Temporal hold-out: popularity, MF, vector and hybrid on full, cold-start, query slices."""
    from retrieval.evaluation import EvalWorld, evaluate

    s = settings()
    with closing(open_store(s)) as store:
        retriever = load_retriever(s.retrieval_config(), store)
        vectors = retriever.vectors()
        world = EvalWorld(retriever.catalog, vectors.index, vectors.encoder, s.mf, s.fusion)
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
