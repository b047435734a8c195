"""Fuzz the API from its own OpenAPI schema (schemathesis, in-process over ASGI), with a key of
every scope: whatever the body, path or query, no answer is a 5xx, and every documented
answer matches its schema. The `rules` backend composes pages; requests that
name a model backend get a fault injector that fails at once (a fallback, not a model run).
Events go to a copy of the shop's database, so the fuzzer cannot change other tests' shoppers.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from conftest import BuiltShop
from hypothesis import HealthCheck, settings
from litestar import Litestar
from schemathesis.specs.openapi.checks import response_schema_conformance
from test_api import ADMIN_KEY, ScriptedBackend, settings_for

from composer.api import Services, create_app
from composer.backends import BackendRegistry
from composer.settings import Settings
from retrieval import Store

AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}  # every scope: the fuzzer reaches every route
MAX_EXAMPLES = 25  # per operation; about half a minute in all on two cores


@pytest.fixture(scope="module")
def fuzz_app(ml_shop: BuiltShop, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Litestar]:
    folder = tmp_path_factory.mktemp("fuzz-shop")
    source = sqlite3.connect(ml_shop.settings.artifacts_dir / "shop.db")
    target = sqlite3.connect(folder / "shop.db")
    with target:
        source.backup(target)
    source.close()
    target.close()
    store = Store(f"sqlite:///{Path(folder / 'shop.db').resolve()}")
    settings_ = settings_for(ml_shop, database_url=store.url)
    retriever = dataclasses.replace(ml_shop.retriever, store=store)
    registry = BackendRegistry(settings_)
    for name in ("transformers", "vllm"):
        registry.register(ScriptedBackend(name, error="fuzzing: no model behind this backend"))
    yield create_app(settings_, Services.from_parts(settings_, store, retriever, registry))
    store.close()


# The schema is static: read it from an app that never starts (nothing is loaded), and send
# every generated request to the fuzz app.
schema = schemathesis.openapi.from_dict(
    create_app(Settings(llm_backend="rules")).openapi_schema.to_schema()
)


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_5xx_for_any_request(case, fuzz_app: Litestar) -> None:  # type: ignore[no-untyped-def]
    response = case.call(app=fuzz_app, headers=AUTH)
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:500]}"
    )
    assert response.headers.get("x-request-id")
    # Every answer the schema documents has the documented shape.
    case.validate_response(response, checks=[response_schema_conformance])
