"""`composer topology`: the local copy of the production topology (PostgreSQL, a Chroma server,
vLLM, the page API on several workers, all on loopback), serving or benchmarked."""

from __future__ import annotations

import contextlib
import signal
from pathlib import Path
from typing import Annotated, Any

import typer

from composer.cli.common import JsonOpt, settings
from composer.cli.output import console, err_console, print_json, table
from composer.errors import UsageError

app = typer.Typer()


@app.command("topology")
def topology(
    shop: Annotated[
        str, typer.Option(help="sample (MovieLens) or a packaged shop: electronics, clothing.")
    ] = "sample",
    folder: Annotated[
        Path | None,
        typer.Option("--dir", help="Its folder, kept between runs (default ARTIFACTS/topology)."),
    ] = None,
    workers: Annotated[int, typer.Option(min=1, max=16, help="API worker processes.")] = 2,
    port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="API port (default: a free one).")
    ] = None,
    vllm: Annotated[
        bool, typer.Option(help="Pages from a vLLM server (else the in-process model).")
    ] = True,
    vllm_url: Annotated[
        str | None, typer.Option(help="Use this running vLLM server instead of starting one.")
    ] = None,
    bench: Annotated[
        bool, typer.Option(help="Run `bench api` against it (and the embedded default), then stop.")
    ] = False,
    baseline: Annotated[
        bool, typer.Option(help="With --bench: the embedded default on the same shop first.")
    ] = True,
    rules_requests: Annotated[int, typer.Option(min=16, help="With --bench: per rules run.")] = 400,
    llm_requests: Annotated[
        int, typer.Option(min=0, help="With --bench: LLM requests at c1 (×4 at c16).")
    ] = 4,
    swap: Annotated[
        bool, typer.Option(help="With --bench: a model swap under load on the topology too.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Start PostgreSQL, a Chroma server, vLLM and the page API on loopback, set the shop up in
    them (once), and serve until Ctrl-C, or with --bench measure and stop."""
    from composer.topology import LocalTopology, TopologyPlan

    s = settings()
    if vllm_url and not vllm:
        raise UsageError("--vllm-url needs --vllm", field="vllm_url")
    plan = TopologyPlan(
        folder=folder or s.artifacts_dir / "topology",
        shop=shop,
        workers=workers,
        port=port,
        vllm=vllm,
        vllm_url=vllm_url,
    )
    say = (lambda line: err_console.print(line)) if json_out else (lambda line: console.print(line))

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt  # unwinds every `with`: each server started is stopped

    # SIGTERM and SIGHUP stop it like Ctrl-C does, in both modes.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupt)
    if bench:
        from composer.bench.topology import run_bench

        report = run_bench(s, plan, rules_requests, llm_requests, swap, baseline, say)
        if json_out:
            print_json(report)
            return
        _print_bench(report)
        return
    with LocalTopology(s, plan, say) as running:
        assert running.api is not None
        ready = {"components": running.components, "key": running.api.key, "env": running.env}
        if json_out:
            print_json(ready)
        else:
            table("Local topology (Ctrl-C stops it)", ["part", "where"],
                  list(running.components.items()))  # fmt: skip
            console.print(f"admin key for this run: {running.api.key}", soft_wrap=True)
            console.print(
                "composer commands act on this shop with: "
                + " ".join(f"{k}={v}" for k, v in running.env.items()),
                soft_wrap=True,
                highlight=False,
            )
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                signal.pause()
    say("topology stopped")


def _print_bench(report: dict[str, Any]) -> None:
    rows = []
    for where in ("embedded", "topology"):
        for group in ("rules", "llm"):
            for c in ("c1", "c16"):
                r = report.get(where, {}).get(group, {}).get(c)
                if r:
                    backend = group if group == "rules" else report[where][group]["backend"]
                    p99 = "n<100" if r["p99_ms"] is None else r["p99_ms"]
                    failed = r["non_200"] + r["errors"]
                    rows.append([where, backend, c, r["answered_200"], r["pages_per_s"],
                                 r["p50_ms"], p99, r["fallback_rate"], failed])  # fmt: skip
    table(
        f"Page API under load: {report['shop']} shop, {report['workers']} workers",
        ["where", "backend", "concurrency", "pages", "pages/s", "p50 ms", "p99 ms",
         "fallback rate", "not 200"],
        rows,
    )  # fmt: skip
    swap = report.get("topology", {}).get("swap")
    if swap:
        table("Model swap under load (topology)", ["what", "value"], list(swap.items()))
