"""Bring a built retrieval stack up for serving."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from retrieval.build import load_embeddings, open_vector_index
from retrieval.catalog_view import CatalogView
from retrieval.config import RetrievalConfig
from retrieval.embeddings import Encoder
from retrieval.errors import NotBuiltError
from retrieval.exact_search import ExactSearch
from retrieval.mf import MFModel
from retrieval.retriever import DEFAULT_WEIGHTS, Retriever
from retrieval.sources import MFSource, PopularitySource, VectorSource
from retrieval.store import Store
from retrieval.vector_index import VectorSearch
from retrieval.versions import ModelVersion, ModelVersions


def load_retriever(
    config: RetrievalConfig, store: Store, encoder: Encoder | None = None
) -> Retriever:
    """A retriever over the current catalog; fails with a set-up hint if nothing is built."""
    products = store.products()
    if not products:
        raise NotBuiltError("the catalog is empty; run `composer setup` or `composer ingest`")
    ids, _hashes, vectors = load_embeddings(config)
    position = {pid: i for i, pid in enumerate(ids)}
    if any(p.product_id not in position for p in products):
        raise NotBuiltError(
            "the vector index is older than the catalog; run `composer setup` to update it"
        )
    embeddings = vectors[[position[p.product_id] for p in products]]
    catalog = CatalogView(products, embeddings)
    search: VectorSearch = (
        ExactSearch(catalog)
        if len(catalog) <= config.exact_search_max_products
        else open_vector_index(config)
    )
    models = load_current_models(config, catalog)
    now = store.last_event_time() or 0.0
    return Retriever(
        catalog=catalog,
        mf=models.mf,
        vector=VectorSource(
            search, encoder or Encoder(config.embedding_model, device=config.device), catalog
        ),
        popular=models.popular,
        fusion=config.fusion,
        mf_params=config.mf,
        weights=models.weights,
        model_version=models.version,
        store=store,
        salt=config.pseudonym_salt,
        # The data's own clock: MovieLens ends in 1998, and "days since" should say so.
        now=now,
    )


@dataclass(frozen=True)
class LoadedModels:
    """One model version in memory, over the served catalog: what a swap replaces."""

    version: str
    mf: MFSource
    popular: PopularitySource
    weights: dict[str, dict[str, float]]


def load_models(version: ModelVersion, catalog: CatalogView) -> LoadedModels:
    model = MFModel.load(version.mf_dir)
    pop = np.load(version.popularity_file)
    pop_by_id = dict(zip(pop["ids"].tolist(), pop["scores"].tolist(), strict=True))
    popularity = np.asarray([pop_by_id.get(pid, 0.0) for pid in catalog.ids], dtype=np.float32)
    tuned = json.loads(version.fusion_file.read_text()) if version.fusion_file.is_file() else {}
    return LoadedModels(
        version.name,
        MFSource(model, catalog),
        PopularitySource(popularity, catalog),
        {**DEFAULT_WEIGHTS, **tuned},
    )


def load_current_models(config: RetrievalConfig, catalog: CatalogView) -> LoadedModels:
    return load_models(ModelVersions(config.index_dir).current(), catalog)
