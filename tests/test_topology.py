"""The local copy of the production topology (composer/topology/stack.py): a real PostgreSQL
cluster, a real `chroma run` server, the session's real vLLM server and the page API on two
worker processes, with the electronics shop (real public data) set up in them."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from conftest import CACHE

from composer.bench.api import run as bench_run
from composer.llm.vllm_server import VLLMServer
from composer.settings import BackendName, Settings
from composer.topology import LocalTopology, TopologyPlan
from retrieval.vector_index import ChromaIndex

pytest_plugins = ["vllm_server_fixture"]
pytestmark = pytest.mark.slow


@pytest.fixture
def folder() -> Iterator[Path]:
    # Not tmp_path: pytest's temp root is private to root, and the cluster runs as `postgres`.
    made = Path(tempfile.mkdtemp(prefix="composer-topology-"))
    made.chmod(0o755)
    yield made
    shutil.rmtree(made, ignore_errors=True)


def test_topology_serves_llm_pages_from_postgres_chroma_and_vllm_and_starts_again_as_it_was(
    vllm_server: VLLMServer, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COMPOSER_FUSION__TUNE", "false")  # set-up runs in its own process
    settings = Settings(cache_dir=CACHE)
    plan = TopologyPlan(folder, shop="electronics", workers=2, vllm_url=vllm_server.url)
    with LocalTopology(settings, plan) as topology:
        api = topology.api
        assert api is not None
        assert topology.setup["products"] == 553 and topology.setup["build"]["trained"]
        auth = {"Authorization": f"Bearer {api.key}"}
        ready = httpx.get(f"{api.url}/readyz", headers=auth, timeout=10).json()
        assert ready["status"] == "ready", ready
        shopper = "customer-19998"
        r = httpx.post(
            f"{api.url}/v1/pages",
            json={"shopper_id": shopper, "backend": "vllm", "format": "json"},
            headers=auth,
            timeout=120,
        )
        assert r.status_code == 200, r.text
        trace = r.json()["trace"]
        # The real model wrote this page: no fallback, and vLLM answered the request.
        assert trace["backend"] == "vllm" and not trace["fallback"], trace["fallback_reason"]
        assert trace["model_version"] and not trace.get("sources_missing")

        # The store is the PostgreSQL database and the vectors are on the Chroma server.
        dsn = topology.env["COMPOSER_DATABASE_URL"].replace("+psycopg", "")
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT count(*) FROM products").fetchone() == (553,)
            rows = conn.execute("SELECT DISTINCT shopper_id FROM events ORDER BY 1").fetchall()
        assert ChromaIndex(url=topology.env["COMPOSER_CHROMA_URL"]).count() == 553

        load = bench_run(api.url, api.key, BackendName.VLLM, 32, 0, [row[0] for row in rows])
        for c in ("c1", "c16"):
            assert load["rules"][c]["answered_200"] == 32 and load["rules"][c]["non_200"] == 0

    # Everything stopped; a second start finds the cluster, the vectors and the models and
    # redoes nothing.
    plan = TopologyPlan(folder, shop="electronics", workers=1, vllm=False)
    with LocalTopology(settings, plan) as again:
        build = again.setup["build"]
        assert (build["embedded"], build["trained"]) == (0, False)
        assert again.api is not None
        r = httpx.post(
            f"{again.api.url}/v1/pages",
            json={"shopper_id": shopper, "backend": "rules", "format": "json"},
            headers={"Authorization": f"Bearer {again.api.key}"},
            timeout=60,
        )
        assert r.status_code == 200 and r.json()["trace"]["model_version"] == trace["model_version"]
