"""`composer experiment list|report|resume|simulate`: experiments on live traffic (files in
ARTIFACTS/experiments, read by the server while it runs; see composer.experiments)."""

from __future__ import annotations

from contextlib import closing
from pathlib import Path
from typing import Annotated, Any

import typer

from composer.cli.common import JsonOpt, settings
from composer.cli.output import console, print_json, table
from composer.errors import UsageError
from composer.experiments import ExperimentRegistry
from composer.experiments.analysis import report_from_store
from composer.provision import open_store
from composer.settings import Settings
from retrieval.exposures import ExposureStore

app = typer.Typer()
experiment_app = typer.Typer(
    help="Experiments on live traffic: list, report, resume a paused variant, simulate.",
    no_args_is_help=True,
)
app.add_typer(experiment_app, name="experiment")

HtmlOpt = Annotated[
    Path | None, typer.Option("--html", help="Also write a self-contained HTML report here.")
]


def _registry(s: Settings) -> ExperimentRegistry:
    registry = ExperimentRegistry(s.resolved_experiments_dir())
    registry.reload()
    return registry


@experiment_app.command("list")
def list_experiments(json_out: JsonOpt = False) -> None:
    """The experiment files: those that load (live now or not), those refused and why, and
    the paused variants."""
    s = settings()
    snapshot = _registry(s).snapshot
    with closing(open_store(s)) as store:
        pauses = ExposureStore(store.engine).pauses()
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = [
        {
            "name": e.name,
            "live": e.live(now),
            "variants": [v.name for v in e.variants],
            "holdout": e.holdout,
            "kinds": [k.value for k in e.kinds],
            "primary_metric": e.primary_metric.value,
        }
        for e in snapshot.experiments
    ]
    paused = [vars(p) for p in pauses]
    if json_out:
        print_json({"experiments": rows, "refused": snapshot.errors, "paused": paused})
        return
    table(
        f"Experiments in {s.resolved_experiments_dir()}",
        ["name", "live", "variants", "holdout", "page kinds", "metric"],
        [[r["name"], r["live"], ", ".join(r["variants"]), r["holdout"], ", ".join(r["kinds"]),
          r["primary_metric"]] for r in rows],
    )  # fmt: skip
    for name, error in snapshot.errors.items():
        console.print(f"[red]refused[/red] {name}: {error}")
    for p in pauses:
        console.print(f"[yellow]paused[/yellow] {p.experiment}/{p.variant}: {p.reason}")


def experiment_report(s: Settings, name: str) -> dict[str, Any]:
    registry = _registry(s)
    experiment = registry.snapshot.get(name)
    if experiment is None:
        refused = [f"{file}: {err}" for file, err in registry.snapshot.errors.items()]
        hint = f"; refused files: {'; '.join(refused)}" if refused else ""
        raise UsageError(
            f"no experiment named {name!r} in {s.resolved_experiments_dir()}{hint}",
            field="name",
        )
    with closing(open_store(s)) as store:
        return report_from_store(
            experiment, store, s.pseudonym_salt, s.experiments.attribution_window_s
        )


@experiment_app.command("report")
def report(
    name: Annotated[str, typer.Argument(help="The experiment's name.")],
    json_out: JsonOpt = False,
    html: HtmlOpt = None,
) -> None:
    """Per arm: pages, click-through per page and per slot, add-to-cart, purchase, revenue
    per page with intervals; each arm against the control with an always-valid sequential
    test; the sample-ratio check; guardrails and paused variants."""
    s = settings()
    found = experiment_report(s, name)
    if html is not None:
        from composer.experiments.html_report import render_html

        html.write_text(render_html(found), encoding="utf-8")
    if json_out:
        print_json(found)
        return
    _print_report(found)
    if html is not None:
        console.print(f"report written to {html}")


def _print_report(r: dict[str, Any]) -> None:
    metric = r["primary_metric"]
    table(
        f"{r['experiment']} ({r['status']}): {r['units']} units, {r['pages']} pages",
        ["arm", "units", "pages", "click-through", "add to cart", "purchase", "revenue/page",
         "paused"],
        [[a["name"], a["units"], a["pages"], _ci(a["metrics"]["click_through"]),
          _ci(a["metrics"]["add_to_cart"]), _ci(a["metrics"]["purchase"]),
          _ci(a["metrics"]["revenue_per_page"]),
          a["paused"]["reason"] if a["paused"] else ""] for a in r["arms"]],
    )  # fmt: skip
    for c in r["comparisons"]:
        console.print(
            f"{c['variant']} vs {c['against']} on {metric}: {c['decision']} "
            f"(difference {_num(c['difference'])}, always-valid interval "
            f"[{_num(c['lower'])}, {_num(c['upper'])}], p = {_num(c['p_value'])})"
        )
    srm = r["srm"]
    if srm["mismatch"]:
        console.print(
            f"[red]sample ratio mismatch[/red]: units {srm['observed_units']} against shares "
            f"{srm['expected_share']} (p = {srm['p_value']:.2g}); do not trust the comparison"
        )
    for b in r["guardrails"]["breaches"]:
        console.print(
            f"[yellow]guardrail[/yellow] {b['variant']}: {b['guardrail']} {b['value']:.3g} > "
            f"{b['limit']:.3g}"
        )


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4g}"


def _ci(m: dict[str, float | None]) -> str:
    if m["value"] is None:
        return "n/a"
    return f"{m['value']:.4g} [{_num(m['lower'])}, {_num(m['upper'])}]"


@experiment_app.command("resume")
def resume(
    name: Annotated[str, typer.Argument(help="The experiment's name.")],
    variant: Annotated[str, typer.Argument(help="The paused variant.")],
) -> None:
    """Serve a variant a guardrail paused again (every server process within its poll)."""
    s = settings()
    with closing(open_store(s)) as store:
        if not ExposureStore(store.engine).resume(name, variant):
            raise UsageError(f"{name}/{variant} is not paused", field="variant")
    console.print(f"{name}/{variant} resumed")


@experiment_app.command("simulate")
def simulate(
    aa_runs: Annotated[
        int, typer.Option(min=1, help="A/A experiments run one after another.")
    ] = 20,
    aa_pages: Annotated[int, typer.Option(min=50, help="Page views per A/A run.")] = 400,
    ab_pages: Annotated[
        int, typer.Option(min=100, help="Most page views of the A/B run (it stops on a decision).")
    ] = 4000,
    workers: Annotated[int, typer.Option(min=1, help="API server processes.")] = 2,
    min_events: Annotated[
        int,
        typer.Option(
            min=2,
            help="Shoppers with at least this many events are simulated (their latest 20% "
            "held out); lower it for a shop of few events per shopper.",
        ),
    ] = 5,
    seed: Annotated[int, typer.Option(help="The shoppers' random seed.")] = 7,
    json_out: JsonOpt = False,
    html: HtmlOpt = None,
) -> None:
    """Drive the real API with synthetic shoppers whose clicks come from their held-out
    purchases: an A/B run (ranked against shuffled pages: the pages needed to tell them
    apart), then A/A runs (the false-positive rate of the sequential test)."""
    from composer.experiments.simulator import simulate as run_simulation

    s = settings()

    def progress(kind: str, run: Any) -> None:
        if not json_out:
            c = run.comparison
            console.print(
                f"{kind} {run.name}: {run.pages} pages, {c['decision']} (p = {_num(c['p_value'])})"
            )

    log = s.artifacts_dir / "logs" / "simulate.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    found = run_simulation(s, aa_runs, aa_pages, ab_pages, workers=workers, seed=seed,
                           min_events=min_events, log=log, on_run=progress)  # fmt: skip
    if html is not None:
        from composer.experiments.html_report import render_html

        html.write_text(render_html(found["ab_report"], simulation=found), encoding="utf-8")
    if json_out:
        print_json(found)
        return
    aa, ab = found["aa"], found["ab"]
    console.print(
        f"A/A: {aa['false_positives']} of {aa['runs']} runs called different "
        f"(false-positive rate {aa['false_positive_rate']:.3f}, alpha {aa['alpha']})"
    )
    console.print(
        f"A/B: {ab['decision']} after {ab['pages_needed']} pages"
        if ab["detected"]
        else f"A/B: not detected in {ab['pages']} pages"
    )
    if html is not None:
        console.print(f"report written to {html}")
