"""A simulator that proves the experiment loop against the real API: synthetic shoppers whose
clicks come from what they bought later (the temporal split's held-out purchases).

The world: a copy of the shop whose store holds only each shopper's earlier events, with the
models retrained on them (the server must not know the purchases the clicks come from: it
would leave bought products off the page). A shown product the shopper later bought is
clicked with ``p_hit`` if its slot is looked at, any other with ``p_miss``; slot k is looked
at with probability ``examine ** k``. A click on a later-bought product is put in the cart
(naming page and slot) with ``p_cart``, and bought with ``p_buy`` in a purchase that names no
page, which attribution gives to the shopper's last page.

A/B first: retrieval's ranking against the same page in shuffled order (products drawn at
random from retrieval's pool), until the test decides or the page budget runs out; the pages
it took are ``pages_needed``. Then A/A: two identical arms under a fresh salt, run after
run; the share of runs the sequential test calls different is its false-positive rate.

Pages are rules pages: the statistics do not depend on who wrote the words, and on a CPU the
LLM would make a run of thousands of pages take hours.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import time
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import yaml

from composer.errors import ComposerError
from composer.experiments.analysis import report_from_store
from composer.experiments.spec import Experiment
from composer.provision import copy_shop_files, open_store
from composer.settings import Settings
from retrieval.evaluation import temporal_split
from retrieval.exposures import ExposureStore
from retrieval.records import Interaction

EXPERIMENT_FILE = "simulation.yaml"
PRISTINE = "shop.pristine.db"


class SimulationError(ComposerError):
    """The simulated world could not be built or the server did not take the experiment."""


@dataclass(frozen=True)
class ClickModel:
    p_hit: float = 0.3
    p_miss: float = 0.01
    examine: float = 0.85
    p_cart: float = 0.5
    p_buy: float = 0.5


@dataclass(frozen=True)
class World:
    folder: Path
    settings: Settings  # the world's shop
    relevant: dict[str, frozenset[str]]  # shopper -> products they bought later


def prepare_world(
    settings: Settings, folder: Path, fraction: float = 0.2, min_events: int = 5
) -> World:
    """The shop with the latest ``fraction`` of the events of each shopper with at least
    ``min_events`` held out (kept from the last call when the shop has not changed since)."""
    with closing(open_store(settings)) as source:
        events = source.all_events()
        products = source.products()
    signature = (
        f"{settings.resolved_database_url()}|{len(events)}|{len(products)}|{fraction}|{min_events}"
    )
    marker = folder / "world.json"
    world_settings = settings.for_shop_folder(folder)
    if marker.exists() and (folder / PRISTINE).exists():
        saved = json.loads(marker.read_text())
        if saved.get("signature") == signature:
            _restore(folder)
            relevant = {k: frozenset(v) for k, v in saved["relevant"].items()}
            return World(folder, world_settings, relevant)
    split = temporal_split(events, fraction, min_events)
    if not split.test:
        raise SimulationError("no shopper has enough events to hold some out; ingest more")
    copy_shop_files(settings, folder)
    from retrieval import build

    with closing(open_store(world_settings)) as store:
        store.ingest(
            products,
            [Interaction(e.shopper_id, e.product_id, e.kind, e.timestamp, e.value)
             for e in split.train],
        )  # fmt: skip
        build(world_settings.retrieval_config(), store, force=True)
    # Every simulation starts from this store: the clicks of the last one are not history.
    shutil.copy(folder / "shop.db", folder / PRISTINE)
    saved_relevant = {k: sorted(v) for k, v in split.test.items()}
    marker.write_text(json.dumps({"signature": signature, "relevant": saved_relevant}))
    return World(folder, world_settings, {k: frozenset(v) for k, v in split.test.items()})


def _restore(folder: Path) -> None:
    for leftover in ("shop.db-wal", "shop.db-shm"):
        (folder / leftover).unlink(missing_ok=True)
    shutil.copy(folder / PRISTINE, folder / "shop.db")


def experiment_text(name: str, treatment_order: str) -> str:
    """The experiment file of one simulated run: control ranked, treatment as given."""
    body = {
        "name": name,
        "variants": [
            {"name": "control", "backend": "rules"},
            {"name": "treatment", "backend": "rules", "order": treatment_order},
        ],
        "kinds": ["home"],
        "primary_metric": "click_through",
    }
    return yaml.safe_dump(body, sort_keys=False)


class Driver:
    """Pages and events through the API, as a storefront and its shoppers would send them."""

    def __init__(self, url: str, key: str, world: World, clicks: ClickModel, seed: int) -> None:
        self.url = url
        self.headers = {"content-type": "application/json", "authorization": f"Bearer {key}"}
        self.world = world
        self.clicks = clicks
        self.rng = random.Random(seed)
        self.pages = 0
        self.events = 0
        self.answers: dict[str, int] = {}  # the experiment each page said it was in

    async def experiment_in_force(self, name: str, timeout_s: float = 30.0) -> None:
        """Wait until every server process has read the experiment file (several answers
        in a row, each from whichever process took the connection)."""
        deadline = time.monotonic() + timeout_s
        in_a_row = 0
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                async with session.get(f"{self.url}/v1/experiments", headers=self.headers) as r:
                    body = await r.json()
                live = [e["name"] for e in body["experiments"] if e["live"]]
                if body["refused"]:
                    raise SimulationError(f"the server refused the experiment: {body['refused']}")
                in_a_row = in_a_row + 1 if live == [name] else 0
                if in_a_row >= 8:
                    return
                await asyncio.sleep(0.1)
        raise SimulationError(f"the server did not take experiment {name!r} in {timeout_s:g} s")

    async def visits(self, shoppers: Sequence[str], pages: int, concurrency: int = 16) -> None:
        """``pages`` page views spread over ``shoppers`` (each a few views in a row)."""
        queue: asyncio.Queue[str] = asyncio.Queue()
        left = pages
        while left > 0:
            shopper = self.rng.choice(shoppers)
            views = min(left, 1 + int(self.rng.expovariate(1 / 2)))
            for _ in range(views):
                queue.put_nowait(shopper)
            left -= views
        connector = aiohttp.TCPConnector(limit=concurrency)
        timeout = aiohttp.ClientTimeout(total=120)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

            async def worker() -> None:
                while not queue.empty():
                    await self._view(session, queue.get_nowait())

            await asyncio.gather(*(worker() for _ in range(concurrency)))

    async def _view(self, session: aiohttp.ClientSession, shopper: str) -> None:
        body = {"shopper_id": shopper, "kind": "home"}
        async with session.post(
            f"{self.url}/v1/pages", data=orjson.dumps(body), headers=self.headers
        ) as r:
            if r.status != 200:
                raise SimulationError(f"a page request answered {r.status}: {await r.text()}")
            page = orjson.loads(await r.read())
        self.pages += 1
        self.answers[page.get("experiment") or ""] = (
            self.answers.get(page.get("experiment") or "", 0) + 1
        )
        bought = self.world.relevant.get(shopper, frozenset())
        for slot, product in enumerate(_slots(page)):
            if self.rng.random() >= self.clicks.examine**slot:
                continue
            later = product in bought
            if self.rng.random() >= (self.clicks.p_hit if later else self.clicks.p_miss):
                continue
            await self._event(session, shopper, product, "click", page["page_id"], slot)
            if later and self.rng.random() < self.clicks.p_cart:
                await self._event(session, shopper, product, "cart", page["page_id"], slot)
                if self.rng.random() < self.clicks.p_buy:
                    await self._event(session, shopper, product, "purchase", None, None)

    async def _event(
        self,
        session: aiohttp.ClientSession,
        shopper: str,
        product: str,
        kind: str,
        page_id: str | None,
        slot: int | None,
    ) -> None:
        body: dict[str, Any] = {"shopper_id": shopper, "product_id": product, "kind": kind}
        if page_id is not None:
            body |= {"page_id": page_id, "slot": slot}
        async with session.post(
            f"{self.url}/v1/events", data=orjson.dumps(body), headers=self.headers
        ) as r:
            if r.status != 201:
                raise SimulationError(f"an event answered {r.status}: {await r.text()}")
        self.events += 1


def _slots(page: dict[str, Any]) -> list[str]:
    """The page's products in reading order (what ``slot`` counts)."""
    by_handle = {c["handle"]: c["product_id"] for c in page["trace"]["candidates"]}
    return [
        by_handle[slot["handle"]]
        for section in page["layout"]["sections"]
        for slot in section["slots"]
    ]


@dataclass(frozen=True)
class RunResult:
    name: str
    pages: int
    report: dict[str, Any]

    @property
    def comparison(self) -> dict[str, Any]:
        return self.report["comparisons"][0]


def analyse(world: World, experiment: Experiment, expected_pages: int) -> dict[str, Any]:
    """The experiment's report from the world's store, once the server wrote its pages."""
    s = world.settings
    with closing(open_store(s)) as store:
        exposures = ExposureStore(store.engine)
        deadline = time.monotonic() + 30
        while True:
            pages = exposures.for_experiment(experiment.name)
            if len(pages) >= expected_pages or time.monotonic() > deadline:
                break
            time.sleep(0.2)  # the exposure log writes in batches
        return report_from_store(
            experiment, store, s.pseudonym_salt, s.experiments.attribution_window_s, pages
        )


def run_one(
    driver: Driver,
    world: World,
    name: str,
    treatment_order: str,
    pages: int,
    chunk: int | None = None,
    stop_when: Callable[[dict[str, Any]], bool] | None = None,
) -> RunResult:
    """One experiment: written, taken by the server, driven with ``pages`` page views (in
    chunks, looking at the report after each one when ``stop_when`` is given)."""
    folder = world.settings.resolved_experiments_dir()
    folder.mkdir(parents=True, exist_ok=True)
    text = experiment_text(name, treatment_order)
    # Written whole and renamed into place: a server rereading the folder mid-write would
    # refuse a half-written file.
    partial = folder / f".{EXPERIMENT_FILE}.partial"
    partial.write_text(text)
    os.replace(partial, folder / EXPERIMENT_FILE)
    experiment = Experiment.model_validate(yaml.safe_load(text))
    asyncio.run(driver.experiment_in_force(name))
    shoppers = sorted(world.relevant)
    served = 0
    last: dict[str, Any] = {}
    step = chunk or pages
    while served < pages:
        n = min(step, pages - served)
        before = driver.answers.get(name, 0)
        asyncio.run(driver.visits(shoppers, n))
        got = driver.answers.get(name, 0) - before
        if got == 0:
            raise SimulationError(f"no page of {n} named experiment {name!r}; see the log")
        served += got
        last = analyse(world, experiment, served)
        if stop_when is not None and stop_when(last):
            break
    return RunResult(name, served, last)


def simulate(
    settings: Settings,
    aa_runs: int = 20,
    aa_pages: int = 400,
    ab_pages: int = 4000,
    chunk: int = 200,
    workers: int = 2,
    seed: int = 7,
    clicks: ClickModel = ClickModel(),
    min_events: int = 5,
    log: Path | None = None,
    on_run: Callable[[str, RunResult], None] | None = None,
) -> dict[str, Any]:
    """One A/B run, then A/A runs, against an API server of the simulated world."""
    from composer.topology.api_server import ApiServer
    from composer.topology.process import shop_env

    t0 = time.perf_counter()
    world = prepare_world(settings, settings.artifacts_dir / "simulation", min_events=min_events)
    # A file a killed run left behind would be taken by the server as it starts.
    (world.settings.resolved_experiments_dir() / EXPERIMENT_FILE).unlink(missing_ok=True)
    env = shop_env(
        {
            "COMPOSER_ARTIFACTS_DIR": str(world.folder.resolve()),
            "COMPOSER_CACHE_DIR": str(settings.resolved_cache_dir().resolve()),
            "COMPOSER_LLM_BACKEND": "rules",
            "COMPOSER_EXPERIMENTS__POLL_S": "0.2",
            # Guardrails are not what is simulated: rules pages breach none.
            "COMPOSER_EXPERIMENTS__GUARDRAIL_CHECK_S": "0",
            "COMPOSER_API__EVENTS_PER_MINUTE_PER_SHOPPER": "100000",
            "COMPOSER_API__EVENTS_PER_MINUTE_PER_KEY": "1000000",
            "COMPOSER_API__REQUESTS_PER_MINUTE_PER_KEY": "1000000",
        }
    )
    stamp = time.strftime("%Y%m%d%H%M%S")
    aa: list[RunResult] = []
    with ApiServer(workers, env, log=log, key_id="simulator") as server:
        driver = Driver(server.url, server.key, world, clicks, seed)
        # The A/B run first, on the store as the split left it: the runs' own purchases
        # become history, and a bought product leaves the shopper's pages, so a run after
        # many others would find less left for ranking to win with. A/A runs have no
        # difference to lose.
        ab = run_one(
            driver, world, f"sim-ab-{stamp}", "shuffled", ab_pages, chunk,
            stop_when=lambda r: r["comparisons"][0]["significant"],
        )  # fmt: skip
        if on_run is not None:
            on_run("ab", ab)
        for n in range(aa_runs):
            # Looked at like the A/B run (after every chunk, stopping at a decision): the
            # false-positive rate of the protocol the A/B run relies on.
            run = run_one(
                driver, world, f"sim-aa-{stamp}-{n}", "ranked", aa_pages, chunk,
                stop_when=lambda r: r["comparisons"][0]["significant"],
            )  # fmt: skip
            aa.append(run)
            if on_run is not None:
                on_run("aa", run)
        (world.settings.resolved_experiments_dir() / EXPERIMENT_FILE).unlink(missing_ok=True)
    alpha = Experiment.model_fields["alpha"].default
    false_positives = sum(r.comparison["significant"] for r in aa)
    c = ab.comparison
    return {
        "shop": str(settings.artifacts_dir),
        "shoppers": len(world.relevant),
        "min_events": min_events,
        "click_model": vars(clicks),
        "aa": {
            "runs": len(aa),
            "pages_per_run": aa_pages,
            "false_positives": false_positives,
            "false_positive_rate": round(false_positives / max(len(aa), 1), 4),
            "alpha": alpha,
            "p_values": [r.comparison["p_value"] for r in aa],
        },
        "ab": {
            "control": "ranked",
            "treatment": "shuffled",
            "detected": c["significant"],
            "pages_needed": c["pages_at_decision"],
            "pages": ab.pages,
            "decision": c["decision"],
            "difference": c["difference"],
            "relative": c["relative"],
            "lower": c["lower"],
            "upper": c["upper"],
            "p_value": c["p_value"],
        },
        "ab_report": ab.report,
        "events_posted": driver.events,
        "seconds": round(time.perf_counter() - t0, 1),
    }
