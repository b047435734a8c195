"""Trained models as versions: `train` (a new version from the store, served at once),
`models list`, `models rollback [VERSION]`. Serving processes pick up the served version
without a restart (see composer.api.model_watch)."""

from __future__ import annotations

import time
from contextlib import closing
from typing import Annotated

import typer

from composer.cli.common import JsonOpt, settings
from composer.cli.output import console, print_json, progress_bars, table
from composer.provision import open_store
from retrieval import build
from retrieval.versions import ModelVersions

app = typer.Typer()
models_app = typer.Typer(help="Trained model versions: list, roll back.", no_args_is_help=True)
app.add_typer(models_app, name="models")


@app.command("train")
def train(json_out: JsonOpt = False) -> None:
    """Train MF and popularity and tune the fusion weights on the store's events now, as a
    new model version beside the old ones, and serve it (new products are embedded first)."""
    s = settings()
    t = time.perf_counter()
    with closing(open_store(s)) as store, progress_bars(not json_out) as progress:
        report = build(s.retrieval_config(), store, progress=progress, force=True)
    seconds = round(time.perf_counter() - t, 2)
    served_since = round(time.time(), 3)  # CURRENT named the version by this moment
    if json_out:
        print_json(
            {
                "model_version": report.model_version,
                "served_since": served_since,
                "seconds": seconds,
                **vars(report),
            }
        )
        return
    console.print(f"trained model version {report.model_version} in {seconds} s; now served")


@models_app.command("list")
def list_versions(json_out: JsonOpt = False) -> None:
    """Every trained version, oldest first; the served one marked."""
    versions = ModelVersions(settings().retrieval_config().index_dir)
    current = versions.current_name()
    rows = []
    for v in versions.all():
        info = v.info
        rows.append(
            {
                "version": v.name,
                "served": v.name == current,
                "created_at": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(v.created_at)),
                "trained_through_event": info.get("trained_through_event"),
                "events": info.get("events"),
                "products": info.get("products"),
            }
        )
    if json_out:
        print_json(rows)
        return
    table(
        "Model versions (* served)",
        ["version", "created (UTC)", "through event", "events", "products"],
        [
            [("* " if r["served"] else "  ") + str(r["version"]), r["created_at"],
             r["trained_through_event"], r["events"], r["products"]]
            for r in rows
        ],
    )  # fmt: skip


@models_app.command("rollback")
def rollback(
    version: Annotated[
        str | None, typer.Argument(help="The version to serve (default: the one before).")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Serve an earlier version again (serving processes switch within their poll interval)."""
    versions = ModelVersions(settings().retrieval_config().index_dir)
    target = versions.get(version) if version else versions.previous()
    served = versions.activate(target.name)
    if json_out:
        print_json({"model_version": served.name})
        return
    console.print(f"now serving model version {served.name}")
