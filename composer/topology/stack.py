"""A local copy of the production topology, all on loopback: a PostgreSQL cluster (the
store), a Chroma server (the vectors), a vLLM server (the page words) and the page API on
several worker processes, each a process of its own like the machines they stand for.

Everything lives in one folder per shop (``<folder>/<shop>/``: ``postgres/``, ``chroma/``,
``shop/`` with the models and the profile, ``logs/``) and is kept between runs: the second
start finds the cluster, the vectors and the trained models there and only starts the
processes. The shop is the sample shop or one of the packaged shops of real public data.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from composer.errors import ComposerError, UsageError
from composer.llm.vllm_server import VLLMServer, free_port
from composer.settings import BackendName, Settings
from composer.topology.api_server import ApiServer
from composer.topology.chroma import ChromaServer
from composer.topology.postgres import PostgresCluster
from composer.topology.process import console_script, last_line, shop_env
from retrieval.datasets import PACKAGED_SHOPS

SAMPLE_SHOP = "sample"
SHOPS = (SAMPLE_SHOP, *sorted(PACKAGED_SHOPS))
DATABASE = "composer"


class TopologyError(ComposerError):
    """A part of the topology did not come up."""


@dataclass
class TopologyPlan:
    folder: Path
    shop: str = SAMPLE_SHOP
    workers: int = 2
    port: int | None = None
    vllm: bool = True
    vllm_url: str | None = None  # a vLLM server already running, instead of starting one

    def __post_init__(self) -> None:
        self.folder = self.folder.resolve()  # every process of the topology finds it
        if self.shop not in SHOPS:
            raise UsageError(f"no shop {self.shop!r}; known: {', '.join(SHOPS)}", field="shop")

    @property
    def root(self) -> Path:
        return self.folder / self.shop


def shop_command(shop: str) -> list[str]:
    """The set-up of ``shop`` in the folder the environment names (idempotent)."""
    composer = console_script("composer")
    if shop == SAMPLE_SHOP:
        return [composer, "setup", "--json"]
    return [composer, "init", "--packaged", shop, "--json"]


def set_up_shop(
    shop: str, env: dict[str, str], log: Path, progress: Callable[[str], None]
) -> dict[str, Any]:
    """``shop`` set up in its own process with the settings ``env`` names (a second run finds
    everything done and takes seconds); the set-up's JSON report."""
    progress(f"setting up the {shop} shop in {env['COMPOSER_ARTIFACTS_DIR']} (log {log})")
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as progress_log:  # written as it goes: minutes on a first run
        done = subprocess.run(
            shop_command(shop), env=shop_env(env), stdout=subprocess.PIPE, stderr=progress_log,
            text=True,
        )  # fmt: skip
    if done.returncode != 0:
        raise TopologyError(
            f"setting up the {shop} shop failed: {last_line(log.read_text())} ({log})"
        )
    try:
        report: dict[str, Any] = json.loads(done.stdout)
    except json.JSONDecodeError:
        raise TopologyError(
            f"setting up the {shop} shop gave no JSON report (output: "
            f"{last_line(done.stdout)!r}); see {log}"
        ) from None
    return report


class LocalTopology:
    """Start with ``with``; :attr:`api` is the page API, :attr:`env` the settings every
    process of it runs with (a `composer` command with them acts on this shop)."""

    def __init__(
        self,
        settings: Settings,
        plan: TopologyPlan,
        progress: Callable[[str], None] = lambda _line: None,
    ) -> None:
        self.settings = settings
        self.plan = plan
        self.progress = progress
        self.env: dict[str, str] = {}
        self.setup: dict[str, Any] = {}
        self.components: dict[str, str] = {}
        self.api: ApiServer | None = None
        self._stack = ExitStack()

    @property
    def shop_settings(self) -> Settings:
        """These settings as the topology's processes read them from :attr:`env`."""
        return self.settings.model_copy(
            update={
                "artifacts_dir": Path(self.env["COMPOSER_ARTIFACTS_DIR"]),
                "cache_dir": self.settings.resolved_cache_dir(),
                "database_url": self.env["COMPOSER_DATABASE_URL"],
                "chroma_url": self.env["COMPOSER_CHROMA_URL"],
                "chroma_path": None,
                "shop_profile": None,
            }
        )

    def __enter__(self) -> LocalTopology:
        try:
            self._start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def _start(self) -> None:
        root, logs = self.plan.root, self.plan.root / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        cluster = self._stack.enter_context(PostgresCluster(root / "postgres"))
        database = cluster.database(DATABASE)
        self.progress(f"PostgreSQL on 127.0.0.1:{cluster.port} ({root / 'postgres'})")
        chroma = self._stack.enter_context(ChromaServer(root / "chroma"))
        self.progress(f"Chroma server on {chroma.url} ({root / 'chroma'})")
        self.env = {
            "COMPOSER_ARTIFACTS_DIR": str(root / "shop"),
            "COMPOSER_CACHE_DIR": str(self.settings.resolved_cache_dir().resolve()),
            "COMPOSER_DATABASE_URL": database,
            "COMPOSER_CHROMA_URL": chroma.url,
        }
        self.components = {"postgresql": cluster.admin_url, "chroma": chroma.url}
        vllm_url = self.plan.vllm_url
        if self.plan.vllm and vllm_url is None:
            server = VLLMServer.from_settings(
                self.settings, port=free_port(), log_file=logs / "vllm.log", beside_api=True
            )
            self.progress(f"vLLM starting (log {server.log_file}; a minute or two)")
            server.start()
            self._stack.callback(server.stop)
            vllm_url = server.url
        if self.plan.vllm:
            assert vllm_url is not None
            self.env |= {"COMPOSER_LLM_BACKEND": BackendName.VLLM, "COMPOSER_VLLM_URL": vllm_url}
            self.components["vllm"] = vllm_url
            self.progress(f"vLLM on {vllm_url}")
        self.setup = set_up_shop(self.plan.shop, self.env, logs / "setup.log", self.progress)
        self.api = ApiServer(
            self.plan.workers,
            env=shop_env(self.env),
            port=self.plan.port,
            log=logs / "api.log",
            key_id="topology",
        )
        self._stack.enter_context(self.api)
        self.components["api"] = self.api.url
        self.progress(f"page API on {self.api.url} ({self.plan.workers} workers)")
