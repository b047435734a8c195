"""Trained models as versions (retrieval/versions.py): `composer train` writes a new version
beside the old and serves it, `composer models list/rollback`, a shop built before versions
existed, and a page API that swaps versions under load without a failed request."""

from __future__ import annotations

import contextlib
import io
import json
import random
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import CACHE, BuiltShop
from test_api import KeyedClient, app_for

from composer.cli import run
from composer.provision import open_store
from composer.settings import ApiSettings, Settings
from retrieval import Encoder, FusionParams, build, load_retriever
from retrieval.errors import NotBuiltError
from retrieval.records import EventKind, Interaction, Product
from retrieval.versions import LEGACY, ModelVersions

CATEGORIES = ("Audio", "Cameras", "Phones")


def versioned_shop(folder: Path, encoder: Encoder) -> BuiltShop:
    rng = random.Random(3)
    settings = Settings(artifacts_dir=folder, cache_dir=CACHE, fusion=FusionParams(tune=False))
    products = [
        Product(f"p{i}", f"{CATEGORIES[i % 3]} product {i}", (CATEGORIES[i % 3],), price=10.0 + i)
        for i in range(60)
    ]
    events = [
        Interaction(f"u{rng.randrange(40)}", f"p{rng.randrange(60)}", EventKind.VIEW, 1.7e9 + n)
        for n in range(800)
    ]
    store = open_store(settings)
    store.ingest(products, events)
    build(settings.retrieval_config(), store, encoder_factory=lambda: encoder)
    return BuiltShop(settings, store, load_retriever(settings.retrieval_config(), store, encoder))


def _cli(folder: Path, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COMPOSER_ARTIFACTS_DIR", str(folder))
        mp.setenv("COMPOSER_FUSION__TUNE", "false")
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = run(list(argv))
    return code, out.getvalue(), err.getvalue()


def test_train_adds_a_version_and_rollback_serves_the_one_before(
    tmp_path: Path, encoder: Encoder
) -> None:
    shop = versioned_shop(tmp_path, encoder)
    versions = ModelVersions(shop.settings.retrieval_config().index_dir)
    first = versions.current_name()
    assert first is not None and shop.retriever.model_version == first
    shop.store.add_events([Interaction("u1", "p5", EventKind.PURCHASE, 1.8e9)])
    code, out, err = _cli(tmp_path, "train", "--json")
    assert code == 0, err
    second = json.loads(out)["model_version"]
    assert second != first and versions.current_name() == second
    assert [v.name for v in versions.all()] == [first, second]
    newer = versions.get(second)
    assert newer.info["trained_through_event"] == shop.store.last_event_id()
    assert (newer.mf_dir / "mf.npz").is_file() and versions.get(first).mf_dir.is_dir()

    code, out, _ = _cli(tmp_path, "models", "list", "--json")
    listed = json.loads(out)
    assert [(r["version"], r["served"]) for r in listed] == [(first, False), (second, True)]
    code, out, _ = _cli(tmp_path, "models", "rollback", "--json")
    assert code == 0 and json.loads(out)["model_version"] == first
    assert load_retriever(shop.settings.retrieval_config(), shop.store, encoder).model_version == (
        first
    )
    # Set-up with nothing new keeps the version rolled back to (it trained it before).
    kept = build(shop.settings.retrieval_config(), shop.store, encoder_factory=lambda: encoder)
    assert not kept.trained and versions.current_name() == first == kept.model_version
    code, _, err = _cli(tmp_path, "models", "rollback")
    assert code == 2 and "no version before" in err
    code, _, err = _cli(tmp_path, "models", "rollback", "v-nope")
    assert code == 2 and "no model version 'v-nope'" in err and first in err
    shop.store.close()


def test_a_shop_built_before_versions_serves_its_model_as_legacy(
    tmp_path: Path, encoder: Encoder
) -> None:
    shop = versioned_shop(tmp_path, encoder)
    index = shop.settings.retrieval_config().index_dir
    versions = ModelVersions(index)
    built = versions.current()
    # The layout before versions: the one model in index/ itself, no models/ folder.
    (index / "mf").mkdir()
    for file in built.mf_dir.iterdir():
        (index / "mf" / file.name).write_bytes(file.read_bytes())
    (index / "popularity.npz").write_bytes(built.popularity_file.read_bytes())
    (index / "fusion.json").write_text("{}")
    (index / "manifest.json").write_text(json.dumps({"mf_key": "old", "built_at": 1.0}))
    for path in sorted(versions.root.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    versions.root.rmdir()
    assert versions.current_name() == LEGACY
    legacy = load_retriever(shop.settings.retrieval_config(), shop.store, encoder)
    assert legacy.model_version == LEGACY
    assert np.array_equal(legacy.mf.model.item_factors, shop.retriever.mf.model.item_factors)
    report = build(shop.settings.retrieval_config(), shop.store, encoder_factory=lambda: encoder)
    assert report.trained and versions.current_name() == report.model_version != LEGACY
    assert versions.previous().name == LEGACY
    shop.store.close()


def test_no_model_at_all_is_a_setup_hint(tmp_path: Path) -> None:
    with pytest.raises(NotBuiltError, match="composer setup"):
        ModelVersions(tmp_path / "index").current()


def test_pages_under_load_across_a_swap_never_fail(tmp_path: Path, encoder: Encoder) -> None:
    shop = versioned_shop(tmp_path, encoder)
    old = shop.retriever.model_version
    api = ApiSettings(model_poll_s=0.1)
    statuses: list[int] = []
    versions_seen: list[str] = []
    stop = threading.Event()
    with KeyedClient(app_for(shop, api=api)) as client:

        def load(worker: int) -> None:
            n = 0
            while not stop.is_set():
                n += 1
                r = client.post(
                    "/v1/pages", json={"shopper_id": f"u{n % 40}", "seed": worker * 10_000 + n}
                )
                statuses.append(r.status_code)
                if r.status_code == 200:
                    versions_seen.append(r.json()["trace"]["model_version"])

        threads = [threading.Thread(target=load, args=(w,)) for w in range(3)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        shop.store.add_events([Interaction("u1", "p7", EventKind.PURCHASE, 1.8e9)])
        new = build(
            shop.settings.retrieval_config(),
            shop.store,
            encoder_factory=lambda: encoder,
            force=True,
        ).model_version
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (not versions_seen or versions_seen[-1] != new):
            time.sleep(0.1)
        time.sleep(0.5)
        stop.set()
        for t in threads:
            t.join()
        metrics = client.get("/metrics").text
        ready = client.get("/readyz").json()
    assert new != old and statuses and set(statuses) == {200}, set(statuses)
    assert versions_seen[0] == old and versions_seen[-1] == new
    # Once served, the new version stays: no request went back to the old models.
    first_new = versions_seen.index(new)
    assert set(versions_seen[first_new:]) == {new}
    assert "composer_model_swaps_total 1.0" in metrics
    assert ready["checks"]["model_version"] == new
    shop.store.close()
