"""`composer topology --bench`: `bench api` against the local production topology (PostgreSQL,
a Chroma server, vLLM, several API workers), beside the embedded default (SQLite, embedded
Chroma, the in-process model, the same workers) measured in the same run on the same shop.

The baseline runs first and alone: the topology's servers would otherwise take its cores.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from composer.bench.api import run, run_swap, shoppers_with_events, train_in_subprocess
from composer.settings import BackendName, Settings
from composer.topology.api_server import ApiServer
from composer.topology.process import shop_env
from composer.topology.stack import LocalTopology, TopologyPlan, set_up_shop


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def run_bench(
    settings: Settings,
    plan: TopologyPlan,
    rules_requests: int,
    llm_requests: int,
    swap: bool,
    baseline: bool = True,
    progress: Callable[[str], None] = lambda _line: None,
) -> dict[str, Any]:
    report: dict[str, Any] = {"shop": plan.shop, "workers": plan.workers}
    if baseline:
        folder = plan.root / "embedded"
        env = {"COMPOSER_ARTIFACTS_DIR": str(folder),
               "COMPOSER_CACHE_DIR": str(settings.resolved_cache_dir().resolve())}  # fmt: skip
        set_up_shop(plan.shop, env, plan.root / "logs" / "setup-embedded.log", progress)
        embedded = settings.for_shop_folder(folder)
        progress("embedded default: bench api (SQLite, embedded Chroma, in-process model)")
        with ApiServer(plan.workers, env=shop_env(env)) as api:  # the in-process model
            report["embedded"] = run(
                api.url, api.key, BackendName.TRANSFORMERS, rules_requests, llm_requests,
                shoppers_with_events(embedded),
            )  # fmt: skip
    with LocalTopology(settings, plan, progress) as topology:
        assert topology.api is not None
        progress("topology: bench api")
        llm = BackendName.VLLM if plan.vllm else BackendName.TRANSFORMERS
        shoppers = shoppers_with_events(topology.shop_settings)
        topo = run(topology.api.url, topology.api.key, llm, rules_requests, llm_requests, shoppers)
        if swap:
            progress("topology: a model swap under load (`composer train` beside it)")
            train = partial(train_in_subprocess, env=shop_env(topology.env))
            topo["swap"] = run_swap(topology.api.url, topology.api.key, shoppers, train)
        report["topology"] = topo
        report["components"] = topology.components
    if baseline:
        report["ratios"] = {
            f"{group}_{c}_{what}": _ratio(
                report["topology"][group].get(c, {}).get(what),
                report["embedded"][group].get(c, {}).get(what),
            )
            for group in ("rules", "llm")
            for c in ("c1", "c16")
            for what in ("pages_per_s", "p50_ms", "p99_ms")
        }
    return report
