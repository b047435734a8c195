"""Shared fixtures: real components (SQLite, Chroma on temp dirs, the real embedding model)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from composer.provision import open_store, seed_movielens
from composer.settings import Settings
from composer.topology import PostgresCluster
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


def movielens_shop(folder: Path, encoder: Encoder, **settings: Any) -> BuiltShop:
    """MovieLens-100K ingested and built in ``folder`` (weights untuned, for speed), with
    ``settings`` on top (another database, a Chroma server); the caller closes its store."""
    built = Settings(
        artifacts_dir=folder, cache_dir=CACHE, fusion=FusionParams(tune=False), **settings
    )
    store = open_store(built)
    seed_movielens(built, store)
    build(built.retrieval_config(), store, encoder_factory=lambda: encoder)
    return BuiltShop(built, store, load_retriever(built.retrieval_config(), store, encoder))


@pytest.fixture(scope="session")
def ml_shop(tmp_path_factory: pytest.TempPathFactory, encoder: Encoder) -> Iterator[BuiltShop]:
    """MovieLens-100K ingested and built once per session."""
    shop = movielens_shop(tmp_path_factory.mktemp("ml-shop"), encoder)
    yield shop
    shop.store.close()


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """A real PostgreSQL server for the session (a throwaway cluster on loopback)."""
    with PostgresCluster(durable=False) as cluster:
        yield cluster


@pytest.fixture
def postgres_url(postgres_cluster: PostgresCluster) -> str:
    """An empty database of its own on that server."""
    return postgres_cluster.database(f"t_{uuid.uuid4().hex[:12]}")


@pytest.fixture(scope="session")
def pg_shop(
    postgres_cluster: PostgresCluster, tmp_path_factory: pytest.TempPathFactory, encoder: Encoder
) -> Iterator[BuiltShop]:
    """``ml_shop`` with its store on the PostgreSQL server (Chroma and models as there)."""
    database = postgres_cluster.database("ml_shop")
    shop = movielens_shop(tmp_path_factory.mktemp("pg-shop"), encoder, database_url=database)
    yield shop
    shop.store.close()
