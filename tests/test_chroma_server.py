"""The vector index on a real Chroma server (`chroma run`, composer/topology/chroma.py): the shop
is built into it, searches agree with the exact in-process search, pages are served from it,
and when the server goes away mid-service pages still come (popularity and MF), with the
vector source named as missing in the trace, never a 5xx."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import BuiltShop, movielens_shop
from test_api import KeyedClient, app_for

from composer.api.security.redaction import for_caller
from composer.topology import ChromaServer
from retrieval import Encoder
from retrieval.benchmark import distinct_queries, measure, synthetic_catalog
from retrieval.vector_index import ChromaIndex

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server() -> Iterator[ChromaServer]:
    with ChromaServer() as running:
        yield running


@pytest.fixture(scope="module")
def chroma_shop(
    server: ChromaServer, tmp_path_factory: pytest.TempPathFactory, encoder: Encoder
) -> Iterator[BuiltShop]:
    """MovieLens-100K with its vectors on the server; every search asks the server (no
    in-process exact search, which small catalogs get by default)."""
    shop = movielens_shop(
        tmp_path_factory.mktemp("chroma-shop"),
        encoder,
        chroma_url=server.url,
        exact_search_max_products=0,
    )
    yield shop
    shop.store.close()


def test_the_server_holds_the_catalog_and_agrees_with_exact_search(
    chroma_shop: BuiltShop, server: ChromaServer, encoder: Encoder, tmp_path: Path
) -> None:
    index = chroma_shop.retriever.vectors().index
    assert isinstance(index, ChromaIndex) and index.collection.count() == 1682
    # The same collection seen by another client of the server.
    assert ChromaIndex(url=server.url).collection.count() == 1682
    ids = chroma_shop.retriever.catalog.ids
    got = index.collection.get(ids=list(ids), include=["embeddings"])
    vectors = dict(zip(got["ids"], np.asarray(got["embeddings"], dtype=np.float32), strict=True))
    matrix = np.stack([vectors[i] for i in ids])
    for query in ("space adventure", "romantic comedy", "horror night"):
        q = encoder.encode([query])[0]
        exact = [ids[i] for i in np.argsort(-(matrix @ q))[:10]]
        served, _ = index.query(q, 10)
        assert len(set(served) & set(exact)) >= 9, query


def test_bench_retrieval_indexes_its_catalog_on_the_server_beside_the_shop(
    chroma_shop: BuiltShop, server: ChromaServer, encoder: Encoder, tmp_path: Path
) -> None:
    retriever = synthetic_catalog(
        tmp_path / "catalog", encoder, size=2000, shoppers=50, chroma_url=server.url
    )
    assert retriever.vectors().index.collection.count() == 2000  # type: ignore[attr-defined]
    assert ChromaIndex(url=server.url).collection.count() == 1682  # the shop's, untouched
    report = measure(retriever, 20, warmup=3, queries=iter(distinct_queries(40, seed=2)))
    assert report.p50_ms > 0 and "vector" in report.stages_ms


def test_pages_from_the_server_then_without_it(
    chroma_shop: BuiltShop, server: ChromaServer
) -> None:
    with KeyedClient(app_for(chroma_shop)) as client:
        body = {"shopper_id": "42", "kind": "search", "query": "space adventure"}
        before = client.post("/v1/pages", json=body).json()
        assert before["trace"]["sources_missing"] == {}
        assert any("vector" in c["provenance"] for c in before["trace"]["candidates"])

        server.stop(graceful=False)  # the server goes away while the API serves

        after = client.post("/v1/pages", json={**body, "seed": 2})
        assert after.status_code == 200
        trace = after.json()["trace"]
        assert set(trace["sources_missing"]) == {"vector"}
        assert trace["candidates"] and after.json()["layout"]["sections"]
        assert not any("vector" in c["provenance"] for c in trace["candidates"])
        metrics = client.get("/metrics").text
        assert 'composer_retrieval_source_failures_total{source="vector"} 1.0' in metrics
    # An admin sees the error; a storefront the source's name only (errors may name hosts).
    error = trace["sources_missing"]["vector"]
    assert "Connect" in error
    shown = for_caller(after.json(), full=False)["trace"]
    assert shown["sources_missing"] == ["vector"] and error not in json.dumps(shown)
