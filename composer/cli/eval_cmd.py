"""`composer eval SUITE`: prompt/backend/model variants over an evaluation suite."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from composer.cli.output import console, print_json, progress_bars, table
from composer.settings import BackendName

if TYPE_CHECKING:
    from composer.evaluation.harness import EvalOutcome


def _split(values: list[str] | None) -> list[str]:
    """Repeatable options that also take comma-separated lists."""
    return [v.strip() for raw in values or [] for v in raw.split(",") if v.strip()]


app = typer.Typer()


@app.command("eval")
def eval_suite(
    suite: Annotated[str, typer.Argument(help="Suite name in evals/ (or a YAML file).")],
    prompt: Annotated[
        list[str] | None,
        typer.Option(
            help="Prompt variant(s): a name in prompts/ or a .j2 file; repeat or comma-separate."
        ),
    ] = None,
    backend: Annotated[
        list[str] | None, typer.Option(help="Backend(s): transformers, vllm, rules.")
    ] = None,
    model: Annotated[list[str] | None, typer.Option(help="Model(s) (default: setting).")] = None,
    baseline: Annotated[
        Path | None, typer.Option(help="Gate against this baseline: exit 1 on a regression.")
    ] = None,
    save_baseline: Annotated[
        Path | None, typer.Option(help="Write this run as a baseline file.")
    ] = None,
    report: Annotated[Path | None, typer.Option(help="Write a self-contained HTML report.")] = None,
    report_examples: Annotated[
        int, typer.Option(min=1, help="Requests shown page by page in the report.")
    ] = 120,
    judge: Annotated[
        bool, typer.Option(help="Pairwise LLM judge of each variant against the first.")
    ] = False,
    judge_backend: Annotated[BackendName | None, typer.Option(help="Backend of the judge.")] = None,
    judge_words: Annotated[
        bool,
        typer.Option(
            help="Label every shown title and headline good/clumsy/nonsense with the word "
            "judge (a 1.5B model, fetched on first use); on for suites listing `words`."
        ),
    ] = False,
    words: Annotated[
        Path | None,
        typer.Option(help="Write every shown field (text, writer, theme, label) as JSONL."),
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=64,
            help="Parallel requests (vllm, rules; in-process transformers runs one at a time).",
        ),
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N requests.")] = None,
    cache: Annotated[
        Path | None, typer.Option(help="Generation cache file (default: CACHE_DIR/eval/).")
    ] = None,
    use_cache: Annotated[
        bool, typer.Option("--cache-generations/--no-cache", help="Replay cached generations.")
    ] = True,
    deadline: Annotated[
        float, typer.Option(min=1, help="Page deadline in seconds during the eval.")
    ] = 600.0,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON for machines.")] = False,
) -> None:
    """Run prompt variants over a suite; compare them; gate against a baseline (exit 1)."""
    from composer.evaluation.harness import EvalOptions, run_eval
    from composer.settings import Settings

    options = EvalOptions(
        suite=suite,
        prompts=_split(prompt),
        backends=_split(backend),
        models=_split(model),
        baseline=baseline,
        save_baseline=save_baseline,
        report=report,
        judge=judge,
        judge_backend=judge_backend,
        judge_words=judge_words,
        words_out=words,
        concurrency=concurrency,
        limit=limit,
        cache=cache,
        use_cache=use_cache,
        deadline_s=deadline,
        report_examples=report_examples,
    )
    with progress_bars(not json_out) as progress:
        outcome = run_eval(Settings(), options, progress)
    data = outcome.to_json()
    if json_out:
        print_json(data)
    else:
        _print(outcome, data)
        if save_baseline:
            console.print(f"baseline written to {save_baseline}")
        if report:
            console.print(f"report written to {report}")
    if outcome.regressions:
        # One plain line each, for CI logs and grep.
        sys.stderr.write("".join(f"regression: {r}\n" for r in outcome.regressions))
        raise typer.Exit(1)


def _print(outcome: EvalOutcome, data: dict[str, Any]) -> None:
    names = list(data["variants"])
    rows = []
    for m in outcome.metrics:
        row: list[object] = [m.name, "↑" if m.higher_is_better else "↓"]
        for n in names:
            e = outcome.aggregates[n][m.name]
            row.append(f"{e.value:.4g} [{e.low:.3g}, {e.high:.3g}]")
        rows.append(row)
    cache = data["cache"]
    table(
        f"{data['suite']}: {data['examples']} requests, {data['seconds']} s "
        f"(cache: {cache['hits']} hits, {cache['misses']} generated)",
        ["metric", "", *names],
        rows,
    )
    for title, deltas in (
        (f"against {names[0]}", outcome.deltas),
        ("against the baseline", outcome.check.deltas if outcome.check else []),
    ):
        if deltas:
            table(
                title,
                ["variant", "metric", "was", "is", "delta", "95% CI", "verdict"],
                [
                    [
                        d.variant,
                        d.metric.name,
                        d.reference_value,
                        d.value,
                        d.delta.value,
                        f"[{d.delta.low:.3g}, {d.delta.high:.3g}]",
                        d.direction if d.significant else "",
                    ]
                    for d in deltas
                ],
            )
    if outcome.check and not outcome.regressions:
        console.print("no regression beyond the suite's tolerances")
