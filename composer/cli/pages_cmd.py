"""Pages and copy from the command line: `page`, `copy`, `copy batch`."""

from __future__ import annotations

import json
import sys
from contextlib import closing
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from composer.cli.common import JsonOpt, settings
from composer.cli.output import console, err_console, print_json, progress_bars, table
from composer.copywriting import CopyKind, Copywriter
from composer.errors import UsageError, first_error
from composer.layout import Locale, PageKind
from composer.provision import open_store
from composer.settings import BackendName, Settings
from retrieval import Store, load_retriever

app = typer.Typer()
copy_app = typer.Typer(help="Headlines, taglines and descriptions.", invoke_without_command=True)
app.add_typer(copy_app, name="copy")


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
        BackendName | None, typer.Option(help="LLM backend (default: the setting).")
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
    with closing(open_store(s)) as store:
        composer = PageComposer(s, load_retriever(s.retrieval_config(), store))
        # Loading the model is not the page's work: its deadline starts once it is loaded.
        with err_console.status("loading the model"):
            composer.load(request.backend)
        result = composer.compose(request)
    if fmt == "html":
        text = result.html or ""
    else:
        text = json.dumps(result.to_dict(include_html=True), ensure_ascii=False, indent=2)
    if out:
        out.write_text(text, encoding="utf-8")
        console.print(f"wrote {out}")
    else:
        sys.stdout.write(text + "\n")


def _copywriter(s: Settings, store: Store) -> Copywriter:
    from composer.wording import encoder_similarity
    from retrieval import Encoder
    from retrieval.catalog_view import CatalogView

    products = store.products()
    if not products:
        raise UsageError("the catalog is empty; run `composer setup` or `composer ingest`")
    similarity = encoder_similarity(Encoder(s.embedding_model, device=s.device))
    return Copywriter(s, CatalogView(products).by_id(), similarity=similarity)


@copy_app.callback()
def copy_single(
    ctx: typer.Context,
    products: Annotated[str | None, typer.Option(help="Product id(s), comma-separated.")] = None,
    kind: Annotated[CopyKind, typer.Option(help="What to write.")] = CopyKind.HEADLINE,
    tone: Annotated[str, typer.Option(help="Tone of voice.")] = "warm",
    locale: Annotated[Locale, typer.Option(help="Language of the copy.")] = Locale.EN,
    n: Annotated[int, typer.Option(min=1, max=8, help="Distinct variants.")] = 3,
    max_chars: Annotated[int | None, typer.Option(min=10, max=400)] = None,
    backend: Annotated[BackendName | None, typer.Option(help="LLM backend.")] = None,
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
    with closing(open_store(s)) as store:
        result = _copywriter(s, store).write(request)
    if json_out:
        print_json(result)
        return
    table(
        f"{result.kind.value} copy ({result.backend}"
        f"{f', fallback: {result.fallback_reason}' if result.fallback else ''})",
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
    with closing(open_store(s)) as store:
        writer = _copywriter(s, store)
        with progress_bars(not json_out) as progress:
            report = run_batch(writer, in_path, out_path, progress)
    if json_out:
        print_json(report)
        return
    for line in report.failed:
        sys.stderr.write(f"skipped: {line}\n")
    console.print(
        f"done {report.done}, already done {report.skipped}, "
        f"bad lines {len(report.failed)} → {out_path}"
    )
