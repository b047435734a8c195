"""`composer setup`: fetch data and models, ingest the sample shop, build the indexes.

Idempotent: every step checks what is already there, so a second run is fast.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from composer.llm.model_fetch import ensure_default_model, ensure_model
from composer.llm.packaged_models import PACKAGED_MODELS
from composer.settings import DEFAULT_MODEL, BackendName, Settings
from retrieval import BuildReport, Store, build
from retrieval.build import ProgressFactory
from retrieval.datasets.movielens import FILES, fetch_movielens, load_movielens

SEED_KEY = "seed:movielens-100k"


@dataclass
class SetupReport:
    seeded: bool = False
    counts: dict[str, int] = field(default_factory=dict)
    build: BuildReport | None = None
    model_dir: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)


def open_store(settings: Settings) -> Store:
    settings.artifacts_dir.mkdir(parents=True, exist_ok=True)
    return Store(settings.resolved_database_url())


def copy_shop_files(settings: Settings, folder: Path) -> None:
    """A fresh ``folder`` with the shop's index, embedded Chroma and profile (not its store):
    a copy to run against without touching the shop (the vectors do not depend on events)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    shutil.copytree(settings.artifacts_dir / "index", folder / "index")
    if settings.chroma_url is None and settings.resolved_chroma_path().exists():
        shutil.copytree(settings.resolved_chroma_path(), folder / "chroma")
    if settings.resolved_profile_path().exists():
        shutil.copy(settings.resolved_profile_path(), folder / "shop.yaml")


def seed_movielens(settings: Settings, store: Store) -> bool:
    """Ingest MovieLens-100K once (the store remembers the checksums it was seeded from), and
    put the sample shop's profile beside it unless one is there."""
    from composer.shop.setup import SAMPLE_SHOP, install_profile

    install_profile(settings, SAMPLE_SHOP)
    marker = json.dumps(FILES, sort_keys=True)
    if store.get_meta(SEED_KEY) == marker:
        return False
    cache = settings.resolved_cache_dir()
    data_dir = fetch_movielens(cache / "data" / "ml-100k", cache / "downloads")
    shop = load_movielens(data_dir)
    store.ingest(shop.products, shop.interactions, shop.shoppers, meta={SEED_KEY: marker})
    return True


def run_setup(
    settings: Settings,
    progress: ProgressFactory,
    seed_sample_shop: bool = True,
    force: bool = False,
) -> SetupReport:
    report = SetupReport()
    store = open_store(settings)
    try:
        t = time.perf_counter()
        if seed_sample_shop:
            report.seeded = seed_movielens(settings, store)
        report.seconds["data"] = round(time.perf_counter() - t, 2)
        t = time.perf_counter()
        report.build = build(settings.retrieval_config(), store, progress=progress, force=force)
        report.seconds["build"] = round(time.perf_counter() - t, 2)
        if settings.llm_backend != BackendName.RULES and settings.llm_model == DEFAULT_MODEL:
            t = time.perf_counter()
            advance = progress("default LLM (fetch, verify, convert once)", 1)
            report.model_dir = str(ensure_default_model(settings.resolved_cache_dir()))
            advance(1)
            report.seconds["model"] = round(time.perf_counter() - t, 2)
        ahead = settings.ahead.words_model
        if (
            settings.ahead.enabled
            and settings.llm_backend == BackendName.TRANSFORMERS
            and ahead in PACKAGED_MODELS
            and ahead != settings.llm_model
        ):
            # Asked for by a setting only: the stronger writer costs ~1.1 GB to fetch.
            t = time.perf_counter()
            advance = progress(f"words model for pages composed ahead ({ahead})", 1)
            ensure_model(ahead, settings.resolved_cache_dir())
            advance(1)
            report.seconds["ahead_model"] = round(time.perf_counter() - t, 2)
        report.counts = store.counts()
    finally:
        store.close()
    return report
