"""A generation cache behind the :class:`LLMBackend` protocol, and a record of every call.

Evaluations re-run the same prompts over the same inputs again and again. Wrapping a backend
(rather than touching the pipeline) makes every generation of a run re-playable. The key is
the backend, the model's identity and the whole request: the rendered messages (the prompt
file's text applied to the input, repair prompts included), the schema, the decoding
settings and the seed. Keying on the rendered prompt rather than on the file's hash alone
is finer: an edit to a prompt file regenerates exactly the requests whose messages it
changed (an edit inside `{% if locale == "zh" %}` leaves English pages cached). The file's
hash is stored with each row, to tell generations apart when inspecting the cache.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from composer.llm.base import DEADLINE, Generation, GenerationRequest, LLMBackend, generate_batch

CACHE_VERSION = 1  # bump when the meaning of a stored row changes


@dataclass
class CallRecord:
    """One backend call as a page saw it."""

    text: str
    tokens: int
    seconds: float  # how long the generation took when it was made
    live_seconds: float  # how long this call took now: ≈0 for a hit, plus any model load
    hit: bool


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0


_calls: ContextVar[list[CallRecord] | None] = ContextVar("eval_calls", default=None)


@contextmanager
def recording() -> Iterator[list[CallRecord]]:
    """Collect the calls every :class:`CachedBackend` makes in this context (thread)."""
    calls: list[CallRecord] = []
    token = _calls.set(calls)
    try:
        yield calls
    finally:
        _calls.reset(token)


def _record(record: CallRecord) -> None:
    calls = _calls.get()
    if calls is not None:
        calls.append(record)


def request_key(request: GenerationRequest, backend: str, model: str) -> str:
    # `context` is left out: it holds the same facts as the messages, for the rules backend.
    payload = {
        "v": CACHE_VERSION,
        "backend": backend,
        "model": model,
        "messages": [[m.role, m.content] for m in request.messages],
        "schema": request.json_schema,
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "seed": request.seed,
        "n": request.n,
        "min_tokens": request.min_tokens,
    }
    # Only when set, so keys of chat requests made before completions existed still match.
    if request.weights != "full":
        payload["weights"] = request.weights
    for name in ("prompt", "regex", "stop", "avoid"):
        value = getattr(request, name)
        if value:
            payload[name] = list(value) if isinstance(value, tuple) else value
    raw = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()


@dataclass
class CachedEntry:
    generations: list[Generation]
    seconds: float


class GenerationCache:
    """Generations in one SQLite file; safe to share between threads of one process."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS generations (key TEXT PRIMARY KEY, backend TEXT, "
            "model TEXT, prompt TEXT, payload TEXT NOT NULL, seconds REAL, created REAL)"
        )
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS vectors (key TEXT PRIMARY KEY, vector BLOB NOT NULL)"
        )
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS judgements (key TEXT PRIMARY KEY, payload TEXT NOT NULL)"
        )

    def get(self, key: str) -> CachedEntry | None:
        with self._lock:
            row = self._db.execute(
                "SELECT payload, seconds FROM generations WHERE key = ?", (key,)
            ).fetchone()
        if row is None:
            return None
        return CachedEntry([Generation(**g) for g in json.loads(row[0])], float(row[1]))

    def put(self, key: str, backend: str, model: str, prompt: str, entry: CachedEntry) -> None:
        payload = json.dumps([asdict(g) for g in entry.generations], ensure_ascii=False)
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO generations VALUES (?, ?, ?, ?, ?, ?, ?)",
                (key, backend, model, prompt, payload, entry.seconds, time.time()),
            )

    def get_vector(self, key: str) -> bytes | None:
        with self._lock:
            row = self._db.execute("SELECT vector FROM vectors WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def put_vector(self, key: str, vector: bytes) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO vectors VALUES (?, ?)", (key, vector))

    def get_judgement(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT payload FROM judgements WHERE key = ?", (key,)
            ).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def put_judgement(self, key: str, payload: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO judgements VALUES (?, ?)",
                (key, json.dumps(payload, ensure_ascii=False)),
            )

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM generations").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


@dataclass
class CachedBackend:
    """An :class:`LLMBackend` that answers from ``cache`` and asks ``inner`` only on a miss.

    ``inner`` is a factory: a fully cached run never loads the model. ``model`` is the
    model's identity (name plus a fingerprint of its files), part of every key. With
    ``cache=None`` it only records calls. Streams that end early (a deadline) or fail are
    not stored.
    """

    name: str
    model: str
    inner: Callable[[], LLMBackend]
    cache: GenerationCache | None
    namespace: str = ""  # the prompt file's hash, stored with each row
    supports_schema: bool = True
    can_stream: bool = True
    reads_prompt: bool = True
    stats: CacheStats = field(default_factory=CacheStats)
    _stats_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _key(self, request: GenerationRequest) -> str:
        return request_key(request, self.name, self.model)

    def _lookup(self, request: GenerationRequest) -> tuple[str, CachedEntry | None]:
        key = self._key(request)
        entry = self.cache.get(key) if self.cache is not None else None
        with self._stats_lock:  # concurrent pages on vLLM
            if entry is not None:
                self.stats.hits += 1
            else:
                self.stats.misses += 1
        return key, entry

    def _store(self, key: str, entry: CachedEntry) -> None:
        if self.cache is not None:
            self.cache.put(key, self.name, self.model, self.namespace, entry)

    def generate(self, request: GenerationRequest) -> list[Generation]:
        started = time.perf_counter()
        key, entry = self._lookup(request)
        hit = entry is not None
        if entry is None:
            inner = self.inner()  # loading a model is not part of a generation's time
            t = time.perf_counter()
            entry = CachedEntry(inner.generate(request), time.perf_counter() - t)
            self._store(key, entry)
        first = entry.generations[0]
        live = time.perf_counter() - started
        _record(CallRecord(first.text, first.tokens, entry.seconds, live, hit))
        return entry.generations

    def generate_batch(
        self, requests: Sequence[GenerationRequest], deadline: float | None = None
    ) -> list[list[Generation]]:
        """Hits from the cache, the misses as one batch of the inner backend. Each miss is
        stored with an equal share of the batch's time, so a replayed page costs what the
        batch did; answers the deadline cut short are not stored."""
        started = time.perf_counter()
        looked = [self._lookup(r) for r in requests]
        missing = [i for i, (_, entry) in enumerate(looked) if entry is None]
        fresh: dict[int, CachedEntry] = {}
        if missing:
            inner = self.inner()  # loading a model is not part of a generation's time
            t = time.perf_counter()
            answers = generate_batch(inner, [requests[i] for i in missing], deadline)
            share = (time.perf_counter() - t) / len(missing)
            for i, generations in zip(missing, answers, strict=True):
                fresh[i] = CachedEntry(generations, share)
                whole = len(generations) == requests[i].n
                if whole and all(g.finish_reason != DEADLINE for g in generations):
                    self._store(looked[i][0], fresh[i])
        live = (time.perf_counter() - started) / len(requests) if requests else 0.0
        out: list[list[Generation]] = []
        for i, (_, cached) in enumerate(looked):
            entry = cached if cached is not None else fresh[i]
            first = entry.generations[0] if entry.generations else Generation("", 0, DEADLINE)
            _record(CallRecord(first.text, first.tokens, entry.seconds, live, cached is not None))
            out.append(entry.generations)
        return out

    def stream(self, request: GenerationRequest) -> Generator[str, None, Generation]:
        started = time.perf_counter()
        key, entry = self._lookup(request)
        if entry is not None:
            first = entry.generations[0]
            yield first.text
            live = time.perf_counter() - started
            _record(CallRecord(first.text, first.tokens, entry.seconds, live, True))
            return first
        inner = self.inner()  # loading a model is not part of a generation's time
        t = time.perf_counter()
        if inner.can_stream:
            parts: list[str] = []
            summary = yield from _tee(inner.stream(request), parts)
            text = "".join(parts)
            generation = summary if isinstance(summary, Generation) else Generation(text, 0)
        else:
            generation = inner.generate(request)[0]
            yield generation.text
        seconds = time.perf_counter() - t
        self._store(key, CachedEntry([generation], seconds))
        live = time.perf_counter() - started
        _record(CallRecord(generation.text, generation.tokens, seconds, live, False))
        return generation


def _tee(stream: Iterator[str], parts: list[str]) -> Generator[str, None, Generation | None]:
    """Pass deltas through while keeping them; closing this closes ``stream`` too, so a
    deadline still frees the model."""
    try:
        while True:
            try:
                delta = next(stream)
            except StopIteration as stop:
                return stop.value if isinstance(stop.value, Generation) else None
            parts.append(delta)
            yield delta
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()
