"""Product vectors in Chroma (embedded folder or server), with filterable metadata."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from retrieval.records import Product

COLLECTION = "products"


@dataclass(frozen=True)
class VectorFilter:
    """Metadata constraints pushed down into the vector query."""

    min_price: float | None = None
    max_price: float | None = None
    categories: tuple[str, ...] = ()
    in_stock_only: bool = False

    def is_empty(self) -> bool:
        return (
            self.min_price is None
            and self.max_price is None
            and not self.categories
            and not self.in_stock_only
        )


class VectorSearch(Protocol):
    """What serving asks of vectors: the k nearest products (cosine similarity)."""

    def query(
        self, embedding: np.ndarray, k: int, where: VectorFilter | None = None
    ) -> tuple[list[str], np.ndarray]: ...
    def count(self) -> int: ...


class VectorIndex(VectorSearch, Protocol):
    """A vector store that ingest and rebuilds write to."""

    def upsert(self, products: Sequence[Product], embeddings: np.ndarray) -> None: ...
    def delete(self, product_ids: Sequence[str]) -> None: ...


def category_key(category: str) -> str:
    # Chroma metadata values are scalars, so each category becomes a boolean flag.
    return "cat:" + category.lower()


def product_metadata(p: Product) -> dict[str, Any]:
    meta: dict[str, Any] = {"price": float(p.price), "in_stock": bool(p.in_stock)}
    if p.year is not None:
        meta["year"] = int(p.year)
    for c in p.categories:
        meta[category_key(c)] = True
    return meta


def chroma_where(f: VectorFilter | None) -> dict[str, Any] | None:
    if f is None or f.is_empty():
        return None
    clauses: list[dict[str, Any]] = []
    if f.min_price is not None:
        clauses.append({"price": {"$gte": float(f.min_price)}})
    if f.max_price is not None:
        clauses.append({"price": {"$lte": float(f.max_price)}})
    if f.in_stock_only:
        clauses.append({"in_stock": True})
    if f.categories:
        cats = [{category_key(c): True} for c in f.categories]
        clauses.append(cats[0] if len(cats) == 1 else {"$or": cats})
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


# chromadb's HTTP client waits forever (httpx timeout=None, not a setting): a server that
# stops answering would hold a page's thread for good. Queries of a healthy server take
# milliseconds; a bulk upsert of 2,000 vectors well under a minute.
CHROMA_CONNECT_TIMEOUT_S = 2.0
CHROMA_READ_TIMEOUT_S = 15.0


def _bound_http_timeout(client: Any) -> None:
    import httpx

    session = getattr(getattr(client, "_server", None), "_session", None)
    if isinstance(session, httpx.Client):
        session.timeout = httpx.Timeout(CHROMA_READ_TIMEOUT_S, connect=CHROMA_CONNECT_TIMEOUT_S)


class ChromaIndex:
    """Cosine-space collection; we always pass our own embeddings."""

    def __init__(
        self, path: Path | None = None, url: str | None = None, collection: str = COLLECTION
    ) -> None:
        import chromadb
        from chromadb.config import Settings as ChromaSettings

        settings = ChromaSettings(anonymized_telemetry=False)
        if url:
            from urllib.parse import urlparse

            parsed = urlparse(url)
            self.client = chromadb.HttpClient(
                host=parsed.hostname or "localhost",
                port=parsed.port or 8000,
                ssl=parsed.scheme == "https",
                settings=settings,
            )
            _bound_http_timeout(self.client)
        else:
            assert path is not None, "ChromaIndex needs a path or a url"
            path.mkdir(parents=True, exist_ok=True)
            self.client = chromadb.PersistentClient(path=str(path), settings=settings)
        self.collection = self.client.get_or_create_collection(
            collection,
            # No embedding function: Chroma's default would download a model.
            embedding_function=None,
            configuration={"hnsw": {"space": "cosine", "ef_search": 100}},
        )

    def upsert(self, products: Sequence[Product], embeddings: np.ndarray) -> None:
        batch = 2000
        for start in range(0, len(products), batch):
            chunk = products[start : start + batch]
            self.collection.upsert(
                ids=[p.product_id for p in chunk],
                embeddings=embeddings[start : start + len(chunk)],
                metadatas=[product_metadata(p) for p in chunk],
            )

    def delete(self, product_ids: Sequence[str]) -> None:
        if product_ids:
            self.collection.delete(ids=list(product_ids))

    def query(
        self, embedding: np.ndarray, k: int, where: VectorFilter | None = None
    ) -> tuple[list[str], np.ndarray]:
        res = self.collection.query(
            query_embeddings=np.asarray(embedding, dtype=np.float32)[None, :],
            n_results=k,
            where=chroma_where(where),
            include=["distances"],
        )
        ids = res["ids"][0]
        assert res["distances"] is not None  # asked for in include=
        distances = np.asarray(res["distances"][0], dtype=np.float32)
        return list(ids), 1.0 - distances  # cosine distance -> similarity

    def count(self) -> int:
        return self.collection.count()
