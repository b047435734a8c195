"""Warm per-request retrieval latency, split by stage, on the built shop and on a generated
large catalog. The baseline in the same run is a popularity-only request (no MF, no vectors):
the ratio says what personalisation costs on this machine."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from retrieval.catalog_view import CatalogView
from retrieval.embeddings import Encoder
from retrieval.mf import MFModel, recency_popularity
from retrieval.params import FusionParams, MFParams
from retrieval.records import EventKind, Interaction, Product
from retrieval.retriever import RetrievalRequest, Retriever
from retrieval.sources import MFSource, PopularitySource, VectorSource
from retrieval.store import Store
from retrieval.vector_index import ChromaIndex

WARMUP = 30  # untimed requests before a run: caches, first-call costs

QUERIES = (
    "comedy",
    "space adventure",
    "romantic drama",
    "war film",
    "animated family movie",
    "dark thriller",
    "classic western",
    "horror night",
    "documentary",
    "musical",
)
SYNTH_CATEGORIES = (
    "Outdoor",
    "Kitchen",
    "Books",
    "Toys",
    "Garden",
    "Audio",
    "Office",
    "Fitness",
    "Beauty",
    "Pets",
    "Games",
    "Tools",
    "Lighting",
    "Travel",
    "Music",
    "Art",
    "Baby",
    "Shoes",
    "Bags",
    "Watches",
)
SYNTH_WORDS = (
    "classic",
    "compact",
    "deluxe",
    "eco",
    "vintage",
    "smart",
    "portable",
    "pro",
    "mini",
    "premium",
    "wooden",
    "steel",
    "silk",
    "cotton",
    "wireless",
    "folding",
    "handmade",
    "organic",
    "rugged",
    "modern",
)


@dataclass(frozen=True)
class LatencyReport:
    p50_ms: float
    p99_ms: float
    mean_ms: float
    requests: int
    stages_ms: dict[str, float]  # mean per stage
    baseline_p50_ms: float  # popularity-only request, same run
    ratio_vs_baseline: float


def distinct_queries(n: int, seed: int) -> list[str]:
    """``n`` different search strings: the encoder's cache keeps the embedding of every
    string it has seen, so a repeated query would time a dictionary lookup, not a search."""
    combos = [f"{w} {q}" for q in QUERIES for w in SYNTH_WORDS]
    combos += [f"{q} for {c.lower()}" for q in QUERIES for c in SYNTH_CATEGORIES]
    combos += [f"{w} {c.lower()}" for w in SYNTH_WORDS for c in SYNTH_CATEGORIES]
    order = np.random.default_rng(seed).permutation(len(combos))
    # Past the 800 combinations, a round number keeps each string new.
    return [
        combos[order[i % len(combos)]] + (f" {i // len(combos)}" if i >= len(combos) else "")
        for i in range(n)
    ]


def benchmark_requests(
    retriever: Retriever, n: int, seed: int, queries: Iterator[str] | None = None
) -> list[RetrievalRequest]:
    """A mix like a storefront's: known shoppers, searches, anonymous sessions. Every
    search has its own query string, from ``queries`` (several runs sharing an encoder must
    share one iterator: the encoder's cache outlives a run)."""
    rng = np.random.default_rng(seed)
    queries = queries if queries is not None else iter(distinct_queries(n, seed))
    shoppers = sorted(retriever.mf.model.user_index) if retriever.mf else []
    ids = retriever.catalog.ids
    out = []
    for _ in range(n):
        roll = rng.random()
        if roll < 0.6 and shoppers:
            out.append(RetrievalRequest(shopper_id=str(rng.choice(shoppers))))
        elif roll < 0.85 and shoppers:
            out.append(RetrievalRequest(shopper_id=str(rng.choice(shoppers)), query=next(queries)))
        else:
            recent = tuple(str(x) for x in rng.choice(ids, size=3, replace=False))
            out.append(RetrievalRequest(recent_product_ids=recent))
    return out


def measure(
    retriever: Retriever,
    n: int = 300,
    warmup: int = WARMUP,
    seed: int = 1,
    queries: Iterator[str] | None = None,
) -> LatencyReport:
    """``queries``: see :func:`benchmark_requests`."""
    reqs = benchmark_requests(retriever, n + warmup, seed, queries)
    for r in reqs[:warmup]:  # warm: caches, query embeddings, first-call costs
        retriever.retrieve(r)
    lat: list[float] = []
    stages: dict[str, float] = {}
    for r in reqs[warmup:]:
        t = time.perf_counter()
        res = retriever.retrieve(r)
        lat.append((time.perf_counter() - t) * 1000)
        for k, v in res.timings_ms.items():
            stages[k] = stages.get(k, 0.0) + v
    base = Retriever(
        catalog=retriever.catalog,
        mf=None,
        vector=None,
        popular=retriever.popular,
        fusion=retriever.fusion,
        mf_params=retriever.mf_params,
        store=retriever.store,
        now=retriever.now,
    )
    base_lat = []
    for r in reqs[warmup:]:
        t = time.perf_counter()
        base.retrieve(r)
        base_lat.append((time.perf_counter() - t) * 1000)
    p50 = float(np.percentile(lat, 50))
    base_p50 = float(np.percentile(base_lat, 50))
    return LatencyReport(
        p50_ms=round(p50, 2),
        p99_ms=round(float(np.percentile(lat, 99)), 2),
        mean_ms=round(float(np.mean(lat)), 2),
        requests=n,
        stages_ms={k: round(v / n, 2) for k, v in stages.items()},
        baseline_p50_ms=round(base_p50, 2),
        ratio_vs_baseline=round(p50 / base_p50, 2) if base_p50 > 0 else 0.0,
    )


def synthetic_catalog(
    folder: Path,
    encoder: Encoder,
    size: int = 100_000,
    shoppers: int = 5_000,
    events_per_shopper: int = 30,
    mf: MFParams | None = None,
    fusion: FusionParams | None = None,
    progress: Callable[[str, int], Callable[[int], None]] | None = None,
    seed: int = 5,
    chroma_url: str | None = None,
) -> Retriever:
    """A generated shop of ``size`` products with real MiniLM embeddings of phrase parts,
    Zipf-popular synthetic events, ALS and a Chroma index (in ``folder``, or on the Chroma
    server at ``chroma_url``); cached, and re-indexed only when the index lacks the catalog."""
    mf = mf or MFParams()
    fusion = fusion or FusionParams()
    rng = np.random.default_rng(seed)
    products = []
    for i in range(size):
        cats = tuple(rng.choice(SYNTH_CATEGORIES, size=int(rng.integers(1, 3)), replace=False))
        pair = rng.choice(SYNTH_WORDS, size=2, replace=False)
        title = f"{pair[0].title()} {pair[1]} {cats[0].lower()} item {i}"
        products.append(
            Product(
                f"p{i}",
                title,
                tuple(str(c) for c in cats),
                price=float(3 + (i * 7919) % 200),
                in_stock=i % 11 != 0,
            )
        )
    # Embedding 100k titles with MiniLM on 2 cores takes minutes; titles are built from a few
    # parts, so each product's vector is the normalised sum of its parts' real embeddings.
    parts = sorted({w for w in SYNTH_WORDS} | {c.lower() for c in SYNTH_CATEGORIES})
    part_vec = dict(zip(parts, encoder.encode(parts), strict=True))
    vecs = np.zeros((size, encoder.dim), dtype=np.float32)
    for i, p in enumerate(products):
        words = p.title.lower().split()[:3]
        v = sum(part_vec[w] for w in words) + 0.05 * rng.standard_normal(encoder.dim)
        vecs[i] = v / np.linalg.norm(v)
    catalog = CatalogView(products, vecs)

    key = hashlib.sha1(json.dumps([size, shoppers, events_per_shopper, seed]).encode()).hexdigest()
    fresh = not ((folder / "key").is_file() and (folder / "key").read_text() == key)
    if fresh and folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    store = Store(f"sqlite:///{(folder / 'shop.db').resolve()}")
    # On a server, a collection of its own: never the shop's products.
    index = (
        ChromaIndex(url=chroma_url, collection=f"bench_catalog_{size}")
        if chroma_url
        else ChromaIndex(path=folder / "chroma")
    )
    if fresh:
        weights = 1.0 / np.arange(1, size + 1) ** 0.8
        weights /= weights.sum()
        events = [
            Interaction(f"u{s}", f"p{j}", EventKind.PURCHASE, 1.7e9 + s * 100 + n)
            for s in range(shoppers)
            for n, j in enumerate(
                rng.choice(size, size=events_per_shopper, replace=False, p=weights)
            )
        ]
        store.ingest(products, events)
        MFModel.train(store.all_events(), catalog.ids, mf, store.last_event_id()).save(
            folder / "mf"
        )
        (folder / "key").write_text(key)
    if fresh or index.collection.count() != size:  # a server may be new, or hold another
        advance = progress("indexing synthetic catalog", size) if progress else None
        for start in range(0, size, 5000):
            index.upsert(products[start : start + 5000], vecs[start : start + 5000])
            if advance:
                advance(min(5000, size - start))
    model = MFModel.load(folder / "mf")
    stored = store.all_events()
    return Retriever(
        catalog=catalog,
        mf=MFSource(model, catalog),
        vector=VectorSource(index, encoder, catalog),
        popular=PopularitySource(recency_popularity(stored, catalog.ids, mf), catalog),
        fusion=fusion,
        mf_params=mf,
        store=store,
        now=max(e.timestamp for e in stored),
    )
