"""In-process LLM: transformers on CPU, JSON-schema-constrained decoding with xgrammar.

A hand-written decoding loop (KV cache, one token at a time) instead of ``model.generate``:
it gives streaming, grammar masking, ``min_tokens`` and per-phase timings in one place.
"""

from __future__ import annotations

import copy
import json
import os
import threading
import time
import warnings
from collections.abc import Generator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import xgrammar as xgr
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from composer.llm.base import (
    DEADLINE,
    ChatMessage,
    Generation,
    GenerationRequest,
    LLMError,
    one_by_one,
)
from composer.settings import BackendName, resolved_dtype
from retrieval.device import resolve_device
from retrieval.errors import DeviceUnavailable
from retrieval.lru import LRU

# Measured on a 2-core AVX2 CPU (no native bf16), 800-token prompt + 100 tokens: float32
# 11 s, bfloat16 26 s. bfloat16 decodes no faster with one thread and at most ~1.6x faster
# with two (half the memory traffic), but prefills ~6x slower.
DEFAULT_DTYPE = "auto"


GRAMMAR_CACHE_SIZE = 16
MIN_PREFIX_REUSE = 32  # below this, copying a cache costs about what it saves


@dataclass
class _Run:
    """What one decoding pass leaves behind besides its tokens."""

    token_ids: list[int] = field(default_factory=list)
    finish_reason: str = "length"
    prefill_ms: float = 0.0
    reused_prefix: int = 0
    decode_ms: float = 0.0
    grammar_ms: float = 0.0
    forced_tokens: int = 0  # taken from the grammar without sampling
    forward_passes: int = 0  # the prefill included
    stop_text: str | None = None  # the text up to a stop string, when one ended the run


@dataclass(frozen=True)
class _Avoid:
    """Banned token sequences, by the length of all but their last token: a step looks up
    the text's tail once per length instead of comparing every sequence."""

    by_prefix: dict[int, dict[tuple[int, ...], set[int]]]

    def __bool__(self) -> bool:
        return bool(self.by_prefix)

    def after(self, token_ids: list[int]) -> set[int]:
        banned: set[int] = set()
        for length, prefixes in self.by_prefix.items():
            if length <= len(token_ids):
                tail = tuple(token_ids[len(token_ids) - length :])
                banned |= prefixes.get(tail, set())
        return banned


@contextmanager
def _as_llm_error(model: str) -> Iterator[None]:
    """Callers fall back on LLMError; anything else escaping would crash a page request."""
    try:
        yield
    except LLMError:
        raise
    except Exception as exc:
        raise LLMError(f"{model} failed: {type(exc).__name__}: {exc}") from exc


def _quantised(lm: torch.nn.Module) -> torch.nn.Module:
    """A copy with int8 linear layers, activations quantised per step (fbgemm).

    Decoding a 135M model on CPU is bound by reading fp32 weights, and a batch of two rows
    costs twice one (the sgemm packs the weights per call); int8 reads a quarter and batches
    for free: one thread, 2 rows, 159 -> 65 ms a step, prefill of 100 tokens 518 -> 312 ms.
    torch.ao's API is deprecated in favour of torchao, whose CPU int8 kernels measured 3x
    slower than fp32 here (237 ms a step); torch is pinned, so the fast path stays.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the deprecation notice, see above
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.ao.quantization.quantize_dynamic(lm, {torch.nn.Linear}, dtype=torch.qint8)


class TransformersBackend:
    """A local causal LM on CPU; concurrent callers queue on one lock."""

    name = BackendName.TRANSFORMERS
    supports_schema = True
    can_stream = True
    reads_prompt = True

    def __init__(
        self,
        model_path: str | Path,
        *,
        threads: int | None = None,
        dtype: str = DEFAULT_DTYPE,
        device: str = "cpu",
    ) -> None:
        self.model = Path(model_path).name if Path(model_path).is_dir() else str(model_path)
        # torch's pool is process-wide. Decoding a small model is memory-bound, so a second
        # thread gains little on an idle machine, while a busy core makes spinning workers
        # collapse (2 cores: 1 thread 11-13 tok/s, 2 threads 2-12 tok/s when retrieval or
        # anything else runs). Hence one core is left to the rest of the process.
        self.threads = threads or max(1, len(os.sched_getaffinity(0)) - 1)
        torch.set_num_threads(self.threads)
        try:
            self.device = resolve_device(device)
        except DeviceUnavailable as exc:
            raise LLMError(str(exc)) from None
        dtype = resolved_dtype(dtype, self.device)
        self.dtype = dtype
        torch_dtype = getattr(torch, dtype, None)
        if not isinstance(torch_dtype, torch.dtype):
            raise LLMError(f"unknown dtype {dtype!r}; use 'float32' or 'bfloat16'")
        try:
            self._tokenizer: PreTrainedTokenizerBase = AutoTokenizer.from_pretrained(
                str(model_path)
            )
            # On a GPU only the forward passes run there (see _forward): sampling, the
            # grammar's bitmask and the bookkeeping stay on the CPU; a step's logits come back.
            placement = {} if self.device == "cpu" else {"device_map": self.device}
            self._lm = AutoModelForCausalLM.from_pretrained(
                str(model_path), dtype=torch_dtype, **placement
            )
        except Exception as exc:  # OSError, ValueError, hub and safetensors errors alike
            raise LLMError(
                f"could not load a transformers model from {model_path}: {exc}. Use a folder "
                "with config.json, safetensors weights and a tokenizer (the default model is "
                "built by composer.llm.ensure_default_model), or a hub id where a hub is "
                "reachable."
            ) from exc
        self._lm.eval()
        # Requests choose their weights (GenerationRequest.weights): the int8 copy is made
        # on first use; each set of weights keeps the KV cache of its own last prompt.
        self._models: dict[str, torch.nn.Module] = {"full": self._lm}
        self._prefixes: dict[str, tuple[torch.Tensor, Any]] = {}
        self._weights = "full"  # of the request being decoded (set under the lock)
        if not self._tokenizer.chat_template:
            raise LLMError(f"{model_path} has no chat template; use an instruction-tuned model")
        self._eos_ids = self._stop_token_ids()
        self._vocab_size = int(self._lm.config.vocab_size)
        self._context = int(getattr(self._lm.config, "max_position_embeddings", 2048))
        self._compiler = xgr.GrammarCompiler(
            xgr.TokenizerInfo.from_huggingface(
                self._tokenizer, vocab_size=self._vocab_size, stop_token_ids=self._eos_ids
            ),
            max_threads=self.threads,
            cache_enabled=False,  # bounded LRU below instead of xgrammar's unbounded cache
        )
        self._grammars: LRU[str, xgr.CompiledGrammar] = LRU(GRAMMAR_CACHE_SIZE)
        self._avoids: LRU[tuple[str, ...], _Avoid] = LRU(GRAMMAR_CACHE_SIZE)
        self._lock = threading.Lock()

    def _stop_token_ids(self) -> list[int]:
        configured = self._lm.generation_config.eos_token_id
        ids = configured if isinstance(configured, list) else [configured]
        ids = [int(i) for i in ids if i is not None]
        if self._tokenizer.eos_token_id is not None:
            ids.append(int(self._tokenizer.eos_token_id))
        if not ids:
            raise LLMError("the model defines no eos token; set eos_token_id in its config")
        return sorted(set(ids))

    # -- public API ------------------------------------------------------------------------

    def generate(self, request: GenerationRequest) -> list[Generation]:
        """``request.n`` completions; greedy ones are computed once and repeated."""
        if request.n < 1:
            raise LLMError(f"n must be at least 1, got {request.n}")
        if request.n > 1 and request.temperature > 0 and request.json_schema is None:
            # Short sampled candidates (headlines) decode as one batch over one prefill.
            return self.generate_batch([request])[0]
        prompt = self._encode(request)
        rng = self._rng(request)
        out: list[Generation] = []
        with self._lock, _as_llm_error(self.model):
            self._use(request.weights)
            for _ in range(request.n if request.temperature > 0 else 1):
                run = _Run()
                for _token in self._tokens(prompt, request, rng, run):
                    pass
                out.append(self._to_generation(run))
        while len(out) < request.n:
            out.append(self._copy(out[0]))
        return out

    def generate_batch(
        self, requests: Sequence[GenerationRequest], deadline: float | None = None
    ) -> list[list[Generation]]:
        """Every request's ``n`` completions decoded side by side over one prefill of their
        common prefix. On one CPU thread a step of eight rows costs ~1.5x a step of two
        and ~2x one row (the weights are read once per step), so a page's headlines and
        title together cost about what one field did alone. JSON-schema requests (which
        jump forward over forced tokens) and ``min_tokens`` ones go one after another."""
        if not requests:
            return []
        if any(r.json_schema is not None or r.min_tokens for r in requests):
            return one_by_one(self, requests, deadline)
        if any(r.n < 1 for r in requests):
            raise LLMError("n must be at least 1 for every request of a batch")
        if len({r.weights for r in requests}) > 1:
            raise LLMError("a batch decodes with one set of weights; split it by weights")
        prompts = [self._encode(r)[0] for r in requests]
        shared = _common_prefix(prompts)
        if shared == 0:
            # Rows padded in the middle need a shared prefix to attend to (a row of pads
            # alone would attend to nothing); unrelated prompts are rare: one by one.
            return one_by_one(self, requests, deadline)
        with self._lock, _as_llm_error(self.model):
            self._use(requests[0].weights)
            return self._decode_batch(requests, prompts, shared, deadline)

    def stream(self, request: GenerationRequest) -> Generator[str, None, Generation]:
        """Text deltas of one completion, then (as the generator's return value) its
        :class:`Generation` summary; the lock is held until the iterator ends or closes."""
        prompt = self._encode(request)
        rng = self._rng(request)
        run = _Run()
        with self._lock, _as_llm_error(self.model):
            self._use(request.weights)
            yield from _until_stop(
                self._deltas(self._tokens(prompt, request, rng, run)), request.stop
            )
        return self._to_generation(run)

    # -- pieces ----------------------------------------------------------------------------

    def _use(self, weights: str) -> None:
        """Decode the current request with ``weights`` (called under the lock)."""
        if weights not in self._models:
            if weights != "int8":
                raise LLMError(f"unknown weights {weights!r}; use 'full' or 'int8'")
            if self.device != "cpu":
                raise LLMError("int8 words are a CPU copy (fbgemm); on a GPU use full weights")
            self._models[weights] = _quantised(self._lm)
        self._weights = weights

    def _encode(self, request: GenerationRequest) -> torch.Tensor:
        if request.prompt is not None:
            if not request.prompt.strip():
                raise LLMError("a completion request needs a non-empty prompt")
            ids = self._tokenizer.encode(request.prompt, add_special_tokens=False)
            return torch.tensor([ids], dtype=torch.long)
        return self._encode_chat(request.messages)

    def _encode_chat(self, messages: tuple[ChatMessage, ...]) -> torch.Tensor:
        if not messages:
            raise LLMError("a request needs at least one message")
        try:
            encoded: Any = self._tokenizer.apply_chat_template(
                [{"role": m.role, "content": m.content} for m in messages],
                add_generation_prompt=True,
                return_tensors="pt",
                return_dict=True,
            )
        except Exception as exc:  # jinja errors from the model's own template
            raise LLMError(
                f"the chat template of {self.model} rejected the messages: {exc}"
            ) from exc
        return encoded["input_ids"]

    @staticmethod
    def _rng(request: GenerationRequest) -> torch.Generator:
        rng = torch.Generator()
        if request.seed is None:
            rng.seed()
        else:
            rng.manual_seed(request.seed)
        return rng

    def _grammar(self, request: GenerationRequest) -> xgr.CompiledGrammar | None:
        if request.json_schema is not None:
            # Keys keep their order: the grammar emits properties in schema order, and a
            # layout may rely on that (e.g. a reason before the products it justifies).
            key = "json:" + json.dumps(request.json_schema, separators=(",", ":"))
        elif request.regex is not None:
            key = "regex:" + request.regex
        else:
            return None
        cached = self._grammars.get(key)
        if cached is not None:
            return cached
        try:
            if request.json_schema is not None:
                # Compact separators as vLLM's disable_any_whitespace: any_whitespace=False
                # alone still emits ", " and ": ", i.e. more tokens for nothing.
                compiled = self._compiler.compile_json_schema(
                    key.removeprefix("json:"), any_whitespace=False, separators=(",", ":")
                )
            else:
                compiled = self._compiler.compile_regex(key.removeprefix("regex:"))
        except Exception as exc:  # xgrammar raises RuntimeError/ValueError variants
            raise LLMError(
                f"xgrammar cannot compile the constraint: {exc}. Keep layouts flat: enums, "
                "bounded strings and arrays, no $ref cycles; regexes without look-arounds."
            ) from exc
        self._grammars.put(key, compiled)
        return compiled

    def _tokens(
        self, prompt: torch.Tensor, request: GenerationRequest, rng: torch.Generator, run: _Run
    ) -> Iterator[int]:
        """Decode one completion token by token; fills ``run`` as it goes."""
        if request.max_tokens < 1:
            raise LLMError(f"max_tokens must be at least 1, got {request.max_tokens}")
        if prompt.shape[1] + request.max_tokens > self._context:
            raise LLMError(
                f"prompt ({prompt.shape[1]} tokens) plus max_tokens ({request.max_tokens}) "
                f"exceeds the model context of {self._context}; shorten the prompt"
            )
        matcher: xgr.GrammarMatcher | None = None
        bitmask: torch.Tensor | None = None
        started = time.perf_counter()
        grammar = self._grammar(request)
        if grammar is not None:
            matcher = xgr.GrammarMatcher(grammar)
            bitmask = xgr.allocate_token_bitmask(1, self._vocab_size)
            run.grammar_ms = (time.perf_counter() - started) * 1000
        eos = torch.tensor(self._eos_ids)
        avoid = self._avoid_sequences(request.avoid)
        # What the grammar forces before any choice (`{"sections":[{"kind":"hero",…`) is
        # prefilled with the prompt instead of decoded token by token.
        opening = self._jump_forward(matcher, request.max_tokens - 1) if matcher else []
        run.token_ids.extend(opening)
        run.forced_tokens += len(opening)

        started = time.perf_counter()
        past, logits, run.reused_prefix = self._prefill(
            torch.cat([prompt, torch.tensor([opening], dtype=prompt.dtype)], dim=1)
            if opening
            else prompt
        )
        run.prefill_ms = (time.perf_counter() - started) * 1000
        run.forward_passes = 1
        yield from opening

        while True:
            started = time.perf_counter()
            if matcher is not None and bitmask is not None:
                matcher.fill_next_token_bitmask(bitmask)
                xgr.apply_token_bitmask_inplace(logits, bitmask)
            if avoid:
                self._ban(logits[0], run.token_ids, avoid)
            if len(run.token_ids) < request.min_tokens:
                kept = logits[:, eos].clone()
                logits[:, eos] = -float("inf")
                if not torch.isfinite(logits).any():  # the grammar allows only the end: it wins
                    logits[:, eos] = kept
            token = self._pick(logits, request.temperature, rng)
            if matcher is not None and not matcher.accept_token(token):
                raise LLMError(f"grammar matcher rejected token {token}; this is a bug")
            run.token_ids.append(token)
            if token in self._eos_ids:
                run.finish_reason = "stop"
                run.decode_ms += (time.perf_counter() - started) * 1000
                return
            if request.stop and self._stopped(run, request.stop, 0):
                run.finish_reason = "stop"
                run.decode_ms += (time.perf_counter() - started) * 1000
                yield token
                return
            step = [token]
            if matcher is not None and bitmask is not None:
                step += self._jump_forward(matcher, request.max_tokens - len(run.token_ids))
                run.token_ids.extend(step[1:])
                run.forced_tokens += len(step) - 1
                if self._only_stop_allowed(matcher, bitmask):
                    # The grammar is complete: the model could only pick an end token, so
                    # take it without another forward pass.
                    run.token_ids.append(self._eos_ids[0])
                    run.finish_reason = "stop"
                    run.decode_ms += (time.perf_counter() - started) * 1000
                    yield from step
                    return
            if len(run.token_ids) >= request.max_tokens:
                run.finish_reason = "length"
                run.decode_ms += (time.perf_counter() - started) * 1000
                yield from step
                return
            # Forced tokens go through the model in the same pass as the sampled one: on a
            # CPU, eight positions cost about two single steps.
            past, logits = self._forward(torch.tensor([step]), past)
            run.forward_passes += 1
            run.decode_ms += (time.perf_counter() - started) * 1000
            yield from step

    def _decode_batch(
        self,
        requests: Sequence[GenerationRequest],
        prompts: list[torch.Tensor],
        shared: int,
        deadline: float | None,
    ) -> list[list[Generation]]:
        """All rows (``n`` per request) decoded side by side. The common prefix (``shared``
        leading tokens, at least one) is prefilled once (and kept for the next page); each
        prompt's own tail follows, right-aligned, with pads in between that the attention
        mask hides. No jump-forward: a regex over free words forces next to nothing."""
        for prompt, request in zip(prompts, requests, strict=True):
            if request.max_tokens < 1:
                raise LLMError(f"max_tokens must be at least 1, got {request.max_tokens}")
            if len(prompt) + request.max_tokens > self._context:
                raise LLMError(
                    f"prompt ({len(prompt)} tokens) plus max_tokens ({request.max_tokens}) "
                    f"exceeds the model context of {self._context}; shorten the prompt"
                )
        owner = [i for i, r in enumerate(requests) for _ in range(r.n)]  # request of a row
        rows = len(owner)
        started = time.perf_counter()
        past, _, reused = self._prefill(prompts[0][:shared].unsqueeze(0))
        # Each prompt's tail is prefilled once, then its cache and logits are copied to the
        # request's n rows (a third of the tail work with three candidates).
        past.batch_repeat_interleave(len(requests))
        tails = [prompt[shared:] for prompt in prompts]
        width = max(len(t) for t in tails)
        pad = self._eos_ids[0]
        step_ids = torch.full((len(requests), width), pad, dtype=torch.long)
        mask = torch.ones(len(requests), shared + width, dtype=torch.long)
        positions = torch.full((len(requests), width), shared, dtype=torch.long)
        for i, tail in enumerate(tails):
            gap = width - len(tail)
            step_ids[i, gap:] = tail
            mask[i, shared : shared + gap] = 0
            positions[i, gap:] = torch.arange(shared, shared + len(tail))
        past, logits = self._forward(step_ids, past, mask, positions)
        rows_of = torch.tensor(owner)
        past.batch_select_indices(rows_of.to(self.device))
        logits, mask, positions = logits[rows_of], mask[rows_of], positions[rows_of]
        prefill_ms = (time.perf_counter() - started) * 1000
        following = positions[:, -1:] + 1
        passes = 1  # of the whole batch: every row shares them

        grammars = [self._grammar(r) for r in requests]
        matchers = [
            None if (grammar := grammars[i]) is None else xgr.GrammarMatcher(grammar) for i in owner
        ]
        bitmask = (
            xgr.allocate_token_bitmask(rows, self._vocab_size)
            if any(m is not None for m in matchers)
            else None
        )
        rngs = [self._rng(r) for r in requests]
        avoid = [self._avoid_sequences(r.avoid) for r in requests]
        runs = [_Run(prefill_ms=prefill_ms, reused_prefix=reused) for _ in owner]
        done = [False] * rows
        started = time.perf_counter()
        for _step in range(max(r.max_tokens for r in requests)):
            if deadline is not None and time.perf_counter() > deadline:
                for row in range(rows):
                    if not done[row]:
                        runs[row].finish_reason = DEADLINE
                break
            if bitmask is not None:
                bitmask.fill_(-1)  # every token allowed, for rows without a grammar
                for row, matcher in enumerate(matchers):
                    if matcher is not None and not done[row]:
                        matcher.fill_next_token_bitmask(bitmask, row)
                xgr.apply_token_bitmask_inplace(logits, bitmask)
            for row, request_index in enumerate(owner):
                if avoid[request_index] and not done[row]:
                    self._ban(logits[row], runs[row].token_ids, avoid[request_index])
            picked = self._pick_rows(logits, requests, owner, rngs)
            for row, token in enumerate(picked):
                if done[row]:
                    picked[row] = pad
                    continue
                run, request, matcher = runs[row], requests[owner[row]], matchers[row]
                if matcher is not None and not matcher.accept_token(token):
                    raise LLMError(f"grammar matcher rejected token {token}; this is a bug")
                run.token_ids.append(token)
                if (
                    token in self._eos_ids
                    or (matcher is not None and matcher.is_terminated())
                    or (request.stop and self._stopped(run, request.stop, 0))
                ):
                    run.finish_reason, done[row] = "stop", True
                elif len(run.token_ids) >= request.max_tokens:
                    run.finish_reason, done[row] = "length", True
            if all(done):
                break
            mask = torch.cat([mask, torch.ones(rows, 1, dtype=torch.long)], dim=1)
            past, logits = self._forward(torch.tensor(picked).unsqueeze(1), past, mask, following)
            passes += 1
            following = following + 1
        decode_ms = (time.perf_counter() - started) * 1000
        out: list[list[Generation]] = [[] for _ in requests]
        for row, run in enumerate(runs):
            run.decode_ms = decode_ms
            run.forward_passes = passes
            out[owner[row]].append(self._to_generation(run))
        return out

    @staticmethod
    def _pick_rows(
        logits: torch.Tensor,
        requests: Sequence[GenerationRequest],
        owner: list[int],
        rngs: list[torch.Generator],
    ) -> list[int]:
        """One token per row: greedy or sampled at its request's temperature, from its
        request's generator (a request's samples do not depend on the rest of the batch's
        draws)."""
        picked = [0] * len(owner)
        for i, request in enumerate(requests):
            rows = [row for row, o in enumerate(owner) if o == i]
            chosen = logits[rows]
            if request.temperature <= 0:
                tokens = torch.argmax(chosen, dim=-1)
            else:
                probs = torch.softmax(chosen / request.temperature, dim=-1)
                tokens = torch.multinomial(probs.nan_to_num(0.0) + 1e-12, 1, generator=rngs[i])
            for row, token in zip(rows, tokens.flatten().tolist(), strict=True):
                picked[row] = int(token)
        return picked

    def _avoid_sequences(self, texts: tuple[str, ...]) -> _Avoid:
        """Token sequences of ``texts`` as written at the start of a line and after a space
        (the two tokenisations vLLM's ``bad_words`` covers too); built once per set of
        texts, which a shop's pages share."""
        if not texts:
            return _Avoid({})
        known = self._avoids.get(texts)
        if known is not None:
            return known
        by_prefix: dict[int, dict[tuple[int, ...], set[int]]] = {}
        for text in texts:
            for form in (text.strip(), " " + text.strip()):
                ids = self._tokenizer.encode(form, add_special_tokens=False)
                if ids:
                    prefix = tuple(ids[:-1])
                    by_prefix.setdefault(len(prefix), {}).setdefault(prefix, set()).add(ids[-1])
        avoid = _Avoid(by_prefix)
        self._avoids.put(texts, avoid)
        return avoid

    @staticmethod
    def _ban(logits: torch.Tensor, token_ids: list[int], avoid: _Avoid) -> None:
        """Disallow (in place, one row) each token that would complete a sequence of
        ``avoid`` after ``token_ids``; unless that leaves nothing the grammar allows."""
        banned = avoid.after(token_ids)
        if not banned:
            return
        index = torch.tensor(sorted(banned))
        kept = logits[index].clone()
        logits[index] = -float("inf")
        if not torch.isfinite(logits).any():
            logits[index] = kept

    def _stopped(self, run: _Run, stops: tuple[str, ...], start: int) -> bool:
        """Whether the text generated so far contains a stop string; it is cut there."""
        text = self._text(run.token_ids[start:])
        cut = _stop_at(text, stops)
        if cut < 0:
            return False
        run.stop_text = text[:cut]
        return True

    def _jump_forward(self, matcher: xgr.GrammarMatcher, budget: int) -> list[int]:
        """Tokens the grammar forces next (JSON keys, punctuation, the rest of an enum value
        once its first token is chosen), accepted into ``matcher``; [] when nothing is forced.

        The forced text is tokenised on its own, which may split it differently from how the
        model would have; xgrammar checks every token, and on a mismatch nothing is forced.
        """
        forced = matcher.find_jump_forward_string()
        if not forced or budget < 1:
            return []
        ids = self._tokenizer.encode(forced, add_special_tokens=False)[:budget]
        for accepted, token_id in enumerate(ids):
            if not matcher.accept_token(token_id):
                matcher.rollback(accepted)
                return []
        return ids

    def _only_stop_allowed(self, matcher: xgr.GrammarMatcher, bitmask: torch.Tensor) -> bool:
        if not matcher.is_completed():
            return False
        matcher.fill_next_token_bitmask(bitmask)
        probe = torch.zeros(1, self._vocab_size)
        xgr.apply_token_bitmask_inplace(probe, bitmask)
        allowed = torch.isfinite(probe[0]).nonzero().flatten().tolist()
        return bool(allowed) and set(allowed) <= set(self._eos_ids)

    def _prefill(self, prompt: torch.Tensor) -> tuple[Any, torch.Tensor, int]:
        """Prefill, reusing the KV cache of the previous prompt's common prefix.

        Prompts put their static text first (rules, voice, example), so consecutive requests
        share hundreds of leading tokens; vLLM's prefix caching does this server-side, this
        is the in-process equivalent for the most recent prompt. Returns the cache, the last
        logits and how many prompt tokens were reused.
        """
        ids = prompt[0]
        reuse = 0
        prefix = self._prefixes.get(self._weights)
        if prefix is not None:
            cached_ids, _ = prefix
            n = min(len(cached_ids), len(ids) - 1)  # at least one token must be computed
            same = (cached_ids[:n] == ids[:n]).to(torch.int8)
            reuse = n if bool(same.all()) else int(torch.argmin(same).item())
        if prefix is not None and reuse >= MIN_PREFIX_REUSE:
            past = copy.deepcopy(prefix[1])
            drop = len(prefix[0]) - reuse
            if drop:
                past.crop(-drop)  # transformers 5 crops by a negative count from the end
            past, logits = self._forward(prompt[:, reuse:], past)
        else:
            reuse = 0
            past, logits = self._forward(prompt, None)
        # Decoding extends ``past`` in place; keep a copy of the prompt's own cache.
        self._prefixes[self._weights] = (ids.clone(), copy.deepcopy(past))
        return past, logits, reuse

    def _forward(
        self,
        input_ids: torch.Tensor,
        past: Any,
        mask: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
    ) -> tuple[Any, torch.Tensor]:
        """One model step; returns the updated KV cache and the last position's logits.
        ``mask`` (over cache and input) and ``positions`` for rows padded in the middle."""
        if self.device != "cpu":
            input_ids = input_ids.to(self.device)
            mask = mask.to(self.device) if mask is not None else None
            positions = positions.to(self.device) if positions is not None else None
        try:
            # no_grad rather than inference_mode: the logits are masked in place afterwards,
            # which inference tensors forbid outside inference mode. logits_to_keep=1 skips
            # the vocabulary projection of every prompt position (a fifth of prefill work).
            with torch.no_grad():
                output = self._models[self._weights](
                    input_ids=input_ids,
                    past_key_values=past,
                    attention_mask=mask,
                    position_ids=positions,
                    use_cache=True,
                    logits_to_keep=1,
                )
        except RuntimeError as exc:
            raise LLMError(f"{self.model} failed while decoding: {exc}") from exc
        return output.past_key_values, output.logits[:, -1, :].float().cpu()

    @staticmethod
    def _pick(logits: torch.Tensor, temperature: float, rng: torch.Generator) -> int:
        if temperature <= 0:
            return int(torch.argmax(logits, dim=-1).item())
        probs = torch.softmax(logits / temperature, dim=-1)
        return int(torch.multinomial(probs, 1, generator=rng).item())

    def _text(self, token_ids: list[int]) -> str:
        return self._tokenizer.decode(  # type: ignore[return-value]  # a str for one sequence
            token_ids, skip_special_tokens=True, clean_up_tokenization_spaces=False
        )

    def _deltas(self, tokens: Iterator[int]) -> Iterator[str]:
        """Incremental detokenisation; the deltas add up to exactly the final text."""
        ids: list[int] = []
        sent = ""
        for token in tokens:
            ids.append(token)
            text = self._text(ids)
            # A trailing U+FFFD is half a multi-byte character; wait for the rest.
            if text.endswith("\ufffd") or not text.startswith(sent):
                continue
            if len(text) > len(sent):
                yield text[len(sent) :]
                sent = text
        text = self._text(ids)
        if text != sent and text.startswith(sent):
            yield text[len(sent) :]

    def _to_generation(self, run: _Run) -> Generation:
        timings = {"prefill": run.prefill_ms, "decode": run.decode_ms}
        if run.grammar_ms:
            timings["grammar"] = run.grammar_ms
        return Generation(
            text=run.stop_text if run.stop_text is not None else self._text(run.token_ids),
            tokens=len(run.token_ids),
            finish_reason=run.finish_reason,
            timings_ms=timings,
            cached_tokens=run.reused_prefix,
            forced_tokens=run.forced_tokens,
            forward_passes=run.forward_passes,
        )

    @staticmethod
    def _copy(gen: Generation) -> Generation:
        return replace(gen, timings_ms=dict(gen.timings_ms))


def _stop_at(text: str, stops: tuple[str, ...]) -> int:
    """Where the first stop string in ``text`` begins; -1 when there is none."""
    return min((text.find(s) for s in stops if s and s in text), default=-1)


def _until_stop(deltas: Iterator[str], stops: tuple[str, ...]) -> Iterator[str]:
    """``deltas`` up to the first stop string, which is left out as in ``generate`` (and as
    a server leaves it out); a stop split across deltas is held back until it is whole."""
    if not any(stops):
        yield from deltas
        return
    hold = max(len(s) for s in stops) - 1
    text, sent = "", 0
    for delta in deltas:
        text += delta
        cut = _stop_at(text, stops)
        if cut >= 0:
            if cut > sent:
                yield text[sent:cut]
            for _ in deltas:  # let decoding finish (it ends at the stop) and free the lock
                pass
            return
        safe = len(text) - hold
        if safe > sent:
            yield text[sent:safe]
            sent = safe
    if len(text) > sent:
        yield text[sent:]


def _common_prefix(prompts: Sequence[torch.Tensor]) -> int:
    """Leading tokens all prompts share, leaving each at least one of its own."""
    limit = min(len(p) for p in prompts) - 1
    shared = limit
    for prompt in prompts[1:]:
        same = (prompts[0][:shared] == prompt[:shared]).to(torch.int8)
        shared = shared if bool(same.all()) else int(torch.argmin(same).item())
    return max(shared, 0)
