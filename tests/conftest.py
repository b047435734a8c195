"""Shared fixtures: real components (SQLite, Chroma on temp dirs, the real embedding model)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from composer.provision import open_store, seed_movielens
from composer.settings import Settings
from retrieval import Encoder, FusionParams, Retriever, Store, build, load_retriever

REPO = Path(__file__).resolve().parents[1]
# Downloads and converted models are shared across tests and with `composer setup`;
# everything a test writes otherwise goes to its own temp folder.
CACHE = Path(os.environ.get("COMPOSER_CACHE_DIR", REPO / "artifacts" / "cache")).resolve()


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in list(os.environ):
        if var.startswith("COMPOSER_"):
            monkeypatch.delenv(var)
    artifacts = tmp_path / "artifacts"
    monkeypatch.setenv("COMPOSER_ARTIFACTS_DIR", str(artifacts))
    monkeypatch.setenv("COMPOSER_CACHE_DIR", str(CACHE))
    return artifacts


@pytest.fixture(scope="session")
def encoder() -> Encoder:
    return Encoder()


@dataclass
class BuiltShop:
    settings: Settings
    store: Store
    retriever: Retriever


@pytest.fixture(scope="session")
def ml_shop(tmp_path_factory: pytest.TempPathFactory, encoder: Encoder) -> BuiltShop:
    """MovieLens-100K ingested and built once per session (weights untuned, for speed)."""
    folder = tmp_path_factory.mktemp("ml-shop")
    settings = Settings(artifacts_dir=folder, cache_dir=CACHE, fusion=FusionParams(tune=False))
    store = open_store(settings)
    seed_movielens(settings, store)
    build(settings.retrieval_config(), store, encoder_factory=lambda: encoder)
    retriever = load_retriever(settings.retrieval_config(), store, encoder)
    yield BuiltShop(settings, store, retriever)
    store.close()
