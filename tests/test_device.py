"""COMPOSER_DEVICE: auto is CUDA where torch sees a GPU and the CPU elsewhere; asking for
cuda where there is none is a clear error at every place that would compute there (the
embedding model, ALS, the in-process LLM), never a silent CPU run. CI has no GPU: the GPU
paths themselves are measured on a GPU machine when one is lent (README)."""

from __future__ import annotations

import pytest
import torch
from conftest import CACHE, BuiltShop

from composer.cli import run
from composer.llm import LLMError, TransformersBackend, resolve_model
from composer.settings import DEFAULT_MODEL, Settings, resolved_dtype
from retrieval.device import resolve_device
from retrieval.errors import DeviceUnavailable
from retrieval.mf import MFModel
from retrieval.params import MFParams
from retrieval.records import EventKind, Interaction

needs_no_gpu = pytest.mark.skipif(
    torch.cuda.is_available(), reason="checks what happens where there is no GPU"
)


def test_auto_follows_what_torch_sees() -> None:
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(DeviceUnavailable, match="unknown device"):
        resolve_device("tpu")


def test_auto_dtype_is_float32_on_a_cpu_and_bfloat16_on_a_gpu() -> None:
    assert resolved_dtype("auto", "cpu") == "float32"
    assert resolved_dtype("auto", "cuda") == "bfloat16"
    assert resolved_dtype("float32", "cuda") == "float32"
    assert Settings().llm_dtype == "auto" and Settings().device == "auto"


@needs_no_gpu
def test_cuda_without_a_gpu_is_refused_everywhere_it_would_compute() -> None:
    with pytest.raises(DeviceUnavailable, match="no CUDA device"):
        resolve_device("cuda")
    events = [Interaction("u", "a", EventKind.PURCHASE, 1.0)]
    with pytest.raises(DeviceUnavailable):
        MFModel.train(events, ["a", "b"], MFParams(factors=4, iterations=1), device="cuda")
    model = resolve_model(DEFAULT_MODEL, CACHE)
    with pytest.raises(LLMError, match="no CUDA device"):
        TransformersBackend(model, device="cuda")


@needs_no_gpu
def test_the_cli_says_so_in_one_line(
    ml_shop: BuiltShop, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COMPOSER_ARTIFACTS_DIR", str(ml_shop.settings.artifacts_dir))
    monkeypatch.setenv("COMPOSER_DEVICE", "cuda")
    assert run(["retrieve", "--user", "196"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: COMPOSER_DEVICE=cuda") and "\n" not in err


def test_the_in_process_model_on_a_cpu_keeps_float32() -> None:
    backend = TransformersBackend(resolve_model(DEFAULT_MODEL, CACHE), device="auto")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert backend.device == expected
    assert backend.dtype == resolved_dtype("auto", expected)
