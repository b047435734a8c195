"""Build (or bring up to date) everything retrieval serves from: vectors, MF, popularity,
fusion weights. Only what changed is redone, so a second run with nothing new takes seconds.
A training writes a new model version and makes it the served one (:mod:`retrieval.versions`)."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from retrieval.catalog_view import CatalogView
from retrieval.config import RetrievalConfig
from retrieval.embeddings import Encoder
from retrieval.evaluation import EvalWorld, tune_weights
from retrieval.mf import MFModel, recency_popularity
from retrieval.records import Product
from retrieval.store import Store
from retrieval.vector_index import ChromaIndex, VectorIndex, product_metadata
from retrieval.versions import ModelVersions

# (stage, total units) -> advance(n) callback; the CLI draws it as a progress bar.
ProgressFactory = Callable[[str, int], Callable[[int], None]]


def _no_progress(_stage: str, _total: int) -> Callable[[int], None]:
    return lambda _n: None


@dataclass
class BuildReport:
    products: int = 0
    embedded: int = 0
    trained: bool = False
    tuned: bool = False
    weights: dict[str, dict[str, float]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    model_version: str = ""  # the version served after the build


def text_hash(model: str, p: Product) -> str:
    return hashlib.sha1(f"{model}\n{p.text()}".encode()).hexdigest()


def metadata_hash(p: Product) -> str:
    return hashlib.sha1(json.dumps(product_metadata(p), sort_keys=True).encode()).hexdigest()


def open_vector_index(config: RetrievalConfig) -> ChromaIndex:
    return ChromaIndex(path=config.chroma_path, url=config.chroma_url)


def load_embeddings(config: RetrievalConfig) -> tuple[list[str], list[str], np.ndarray]:
    """Product ids, their state hashes and embedding rows, as last built."""
    if not config.embeddings_file.is_file():
        return [], [], np.zeros((0, 0), dtype=np.float32)
    data = np.load(config.embeddings_file)
    return list(data["ids"]), list(data["hashes"]), data["vectors"]


def update_embeddings(
    config: RetrievalConfig,
    products: list[Product],
    index: VectorIndex,
    encoder_factory: Callable[[], Encoder],
    progress: ProgressFactory = _no_progress,
) -> tuple[np.ndarray, int]:
    """Embed new or re-worded products and upsert them; products whose filterable metadata
    (price, stock, categories) changed are upserted with their old vector. Returns the matrix
    aligned with ``products`` and how many were embedded."""
    old_ids, old_hashes, old_vectors = load_embeddings(config)
    old = {pid: (h, i) for i, (pid, h) in enumerate(zip(old_ids, old_hashes, strict=True))}
    hashes = [f"{text_hash(config.embedding_model, p)}:{metadata_hash(p)}" for p in products]
    embed, refresh = [], []
    for i, p in enumerate(products):
        prev = old.get(p.product_id)
        if prev is None or prev[0].split(":")[0] != hashes[i].split(":")[0]:
            embed.append(i)
        elif prev[0] != hashes[i]:
            refresh.append(i)
    # An index that lost its data (deleted folder, new server) is refilled from scratch.
    if index.count() < len(products) - len(embed):
        embed, refresh = list(range(len(products))), []
    dim = old_vectors.shape[1] if old_ids else 0
    encoder = encoder_factory() if embed or not old_ids else None
    if encoder is not None:
        dim = encoder.dim
    vectors = np.zeros((len(products), dim), dtype=np.float32)
    for i, p in enumerate(products):
        prev = old.get(p.product_id)
        if prev is not None and old_vectors.shape[1] == dim:
            vectors[i] = old_vectors[prev[1]]
    if embed and encoder is not None:
        advance = progress("embedding products", len(embed))
        vectors[embed] = encoder.encode([products[i].text() for i in embed], progress=advance)
    touched = sorted(embed + refresh)
    if touched:
        index.upsert([products[i] for i in touched], vectors[touched])
    config.index_dir.mkdir(parents=True, exist_ok=True)
    # A name of its own: `composer embed` and `composer train` may run at the same time, and
    # each must replace the file with a whole one of its own.
    fd, name = tempfile.mkstemp(dir=config.index_dir, prefix="embeddings.", suffix=".part.npz")
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            np.savez(
                out,
                ids=np.asarray([p.product_id for p in products]),
                hashes=np.asarray(hashes),
                vectors=vectors,
            )
        tmp.replace(config.embeddings_file)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return vectors, len(embed)


def _mf_key(config: RetrievalConfig, store: Store, products: list[Product]) -> str:
    ids = hashlib.sha1("\n".join(p.product_id for p in products).encode()).hexdigest()
    return json.dumps(
        {
            "events": store.last_event_id(),
            "products": ids,
            "mf": config.mf.model_dump(),
            "fusion_tune": config.fusion.tune,
        },
        sort_keys=True,
    )


def _memoised(factory: Callable[[], Encoder]) -> Callable[[], Encoder]:
    made: list[Encoder] = []

    def get() -> Encoder:
        if not made:
            made.append(factory())
        return made[0]

    return get


def _default_encoder(config: RetrievalConfig) -> Callable[[], Encoder]:
    return _memoised(lambda: Encoder(config.embedding_model, device=config.device))


def _embed_catalog(
    config: RetrievalConfig,
    store: Store,
    encoder_factory: Callable[[], Encoder],
    progress: ProgressFactory,
    report: BuildReport,
) -> tuple[list[Product], ChromaIndex, np.ndarray]:
    t = time.perf_counter()
    products = store.products()
    report.products = len(products)
    index = open_vector_index(config)
    vectors, report.embedded = update_embeddings(config, products, index, encoder_factory, progress)
    report.seconds["embeddings"] = round(time.perf_counter() - t, 2)
    return products, index, vectors


def embed(
    config: RetrievalConfig,
    store: Store,
    encoder_factory: Callable[[], Encoder] | None = None,
    progress: ProgressFactory = _no_progress,
) -> BuildReport:
    """Bring the vector index up to the store's catalog and nothing else: products that are
    new or whose text changed are embedded, changed metadata is rewritten, the rest kept
    (the re-embedding job, runnable on its own schedule; `build` does it first)."""
    report = BuildReport()
    _embed_catalog(config, store, encoder_factory or _default_encoder(config), progress, report)
    return report


def build(
    config: RetrievalConfig,
    store: Store,
    encoder_factory: Callable[[], Encoder] | None = None,
    progress: ProgressFactory = _no_progress,
    force: bool = False,
) -> BuildReport:
    report = BuildReport()
    encoder_factory = _memoised(encoder_factory) if encoder_factory else _default_encoder(config)
    products, index, vectors = _embed_catalog(config, store, encoder_factory, progress, report)

    versions = ModelVersions(config.index_dir)
    key = _mf_key(config, store, products)
    # Nothing changed since some version was trained: keep serving what is served (a version
    # rolled back to stays served; `composer train` forces a new one).
    if not force and any(v.info.get("mf_key") == key for v in versions.all()):
        served = versions.current()
        report.weights = json.loads(served.fusion_file.read_text())
        report.model_version = served.name
        return report

    t = time.perf_counter()
    events = store.all_events()
    ids = [p.product_id for p in products]
    advance = progress("training MF (ALS)", 1)
    trained_through = store.last_event_id()
    model = MFModel.train(events, ids, config.mf, trained_through, device=config.device)
    popularity = recency_popularity(events, ids, config.mf)
    advance(1)
    report.trained = True
    report.seconds["mf"] = round(time.perf_counter() - t, 2)

    t = time.perf_counter()
    weights: dict[str, dict[str, float]] = {}
    if config.fusion.tune and events:
        world = EvalWorld(
            CatalogView(products, vectors), index, encoder_factory(), config.mf, config.fusion
        )
        weights = tune_weights(world, events, progress=progress("tuning fusion weights", 800))
        report.tuned = True
    report.weights = weights
    report.seconds["fusion"] = round(time.perf_counter() - t, 2)

    def fill(folder: Path) -> None:
        model.save(folder / "mf")
        np.savez(folder / "popularity.npz", ids=np.asarray(ids), scores=popularity)
        (folder / "fusion.json").write_text(json.dumps(weights, indent=2))

    info = {
        "mf_key": key,
        "trained_through_event": trained_through,
        "events": len(events),
        "products": len(ids),
        "shoppers": len(model.user_index),
    }
    report.model_version = versions.activate(versions.write(info, fill).name).name
    return report
