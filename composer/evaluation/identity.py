"""What a cached generation was made by: the model's files by content, the server's own word
for what it serves, and the decoding code. A key that leaves any of these out would replay
an old model's words as the new model's."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import threading
from pathlib import Path

import httpx

from composer.settings import BackendName, Settings, resolved_dtype
from retrieval.device import resolve_device

# The code that turns a request into text: editing the decoding loop must not replay
# generations made by the old one.
_BACKEND_MODULES = {
    BackendName.TRANSFORMERS: "composer.llm.transformers_backend",
    BackendName.VLLM: "composer.llm.vllm_backend",
}
# Files of a model folder that decide its output besides the weights.
_MODEL_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
)
_CHUNK = 1 << 20


class FileDigests:
    """sha256 of files, kept in a JSON file and trusted while a file's size and mtime stay
    the same: hashing the 540 MB of weights takes seconds, every evaluation asks again."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            self._known: dict[str, list[object]] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            self._known = {}

    def digest(self, file: Path) -> str:
        st = file.stat()
        stamp = [st.st_size, st.st_mtime_ns]
        key = str(file.resolve())
        with self._lock:
            known = self._known.get(key)
            if known is not None and known[:2] == stamp:
                return str(known[2])
        h = hashlib.sha256()
        with file.open("rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
        digest = h.hexdigest()
        with self._lock:
            self._known[key] = [*stamp, digest]
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self._known), encoding="utf-8")
            tmp.replace(self.path)
        return digest


def server_identity(url: str, timeout_s: float = 5.0) -> str:
    """What an OpenAI-compatible server says it serves (model ids and roots) and its version;
    a server that does not answer says so (its generations fail anyway)."""
    base = url.rstrip("/")
    try:
        models = httpx.get(f"{base}/models", timeout=timeout_s).json().get("data") or []
        served = sorted(f"{m.get('id')}<{m.get('root')}>" for m in models)
        root = base.removesuffix("/v1")
        answer = httpx.get(f"{root}/version", timeout=timeout_s)
        version = answer.json().get("version") if answer.status_code == 200 else None
    except (httpx.HTTPError, ValueError, AttributeError):
        return "server:unreachable"
    return f"server:{','.join(served)};version:{version}"


def model_identity(settings: Settings, backend: BackendName, model: str) -> str:
    """The model's name plus a fingerprint of its local files by content (weights, config,
    tokenizer), of what a server says it serves, and of the backend's source."""
    digest = hashlib.sha256()
    module = _BACKEND_MODULES.get(backend)
    spec = importlib.util.find_spec(module) if module else None
    if spec is not None and spec.origin:
        digest.update(Path(spec.origin).read_bytes())
    name = model
    if backend == BackendName.TRANSFORMERS:
        from composer.llm import resolve_model

        path = resolve_model(model, settings.resolved_cache_dir())
        if isinstance(path, Path):
            name = path.name
            files = FileDigests(settings.resolved_cache_dir() / "eval" / "file_digests.json")
            owned = [path / f for f in _MODEL_FILES] + sorted(path.glob("*.safetensors"))
            for file in owned:
                if file.is_file():
                    digest.update(f"{file.name}:{files.digest(file)}".encode())
        # Other weights, other words: the dtype as resolved (auto is float32 on a CPU, so an
        # identity computed before "auto" existed still matches there).
        dtype = resolved_dtype(settings.llm_dtype, resolve_device(settings.device))
        digest.update(f"dtype:{dtype}".encode())
    elif backend == BackendName.VLLM:
        digest.update(server_identity(settings.vllm_url).encode())
    return f"{name}#{digest.hexdigest()[:12]}"
