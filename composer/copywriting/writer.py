"""Headlines, taglines and descriptions: N distinct variants under the same checks."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Mapping
from typing import Any

from composer.backends import BackendRegistry
from composer.copywriting.checks import copy_checks
from composer.copywriting.model import CopyRequest, CopyResult, CopyVariant
from composer.errors import UsageError
from composer.layout import Locale
from composer.layout.model import ZH_CHARS
from composer.llm.base import DEADLINE, GenerationRequest, LLMBackend, LLMError, generate_batch
from composer.prompting import PromptLibrary, clean_fact
from composer.settings import BackendName, Settings
from composer.shop import ProfileFile, ShopProfile
from composer.validation import copies, mentions
from composer.wording.themes import title_words
from composer.wording.writer import Similarity
from retrieval import Product

_KIND_TEXT = {
    "headline": "headline",
    "tagline": "one-sentence tagline",
    "description": "short product description (two sentences at most)",
}
_LANGUAGE = {Locale.EN: "English", Locale.ZH: "Simplified Chinese (简体中文)"}
logger = logging.getLogger(__name__)
TRIES_PER_VARIANT = 3  # distinct, passing variants are sampled; give up after this many each


class Copywriter:
    def __init__(
        self,
        settings: Settings,
        catalog: Mapping[str, Product],
        backends: BackendRegistry | None = None,
        prompts: PromptLibrary | None = None,
        similarity: Similarity | None = None,
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.backends = backends or BackendRegistry(settings)
        self.prompts = prompts or PromptLibrary()
        # Copy that names none of its products' words must be close to them in meaning.
        self.similarity = similarity
        self.profile_file = ProfileFile(settings.resolved_profile_path())

    def variables(self, request: CopyRequest) -> dict[str, Any]:
        missing = [p for p in request.products if p not in self.catalog]
        if missing:
            raise UsageError(f"unknown product id(s): {', '.join(missing[:5])}", field="products")
        products = [self.catalog[p] for p in request.products]
        return {
            "task": "copy",
            "kind": request.kind.value,
            "kind_text": _KIND_TEXT[request.kind.value],
            "max_chars": request.limit(),
            "tone": clean_fact(request.tone, 80),
            "brand_voice": self.settings.brand_voice,
            "banned_words": self.settings.banned_words,
            "language": _LANGUAGE[request.locale],
            "locale": request.locale.value,
            "products": [
                {
                    "title": clean_fact(p.title),
                    "categories": [clean_fact(c, 24) for c in p.categories[:3]],
                    "year": p.year,
                }
                for p in products
            ],
        }

    def write(self, request: CopyRequest) -> CopyResult:
        t0 = time.perf_counter()
        variables = self.variables(request)
        backend = self.backends.get(request.backend, self.settings.copy_model)
        titles = [p["title"] for p in variables["products"]]
        profile = self._profile()
        examples = profile.example_texts() if profile else []
        words = [w for p in variables["products"] for w in _product_words(p)]

        banned = [*self.settings.banned_words, *(profile.banned_words if profile else [])]

        def checked(text: str) -> CopyVariant:
            checks = copy_checks(text, request.locale, request.limit(), banned, titles)
            checks["not_an_example"] = copies(text, examples) is None
            if request.locale == Locale.EN:
                checks["on_topic"] = self._on_topic(text, words, titles, variables)
            return CopyVariant(text=text, checks=checks, passed=all(checks.values()))

        result = CopyResult(
            id=request.id,
            kind=request.kind,
            locale=request.locale,
            products=request.products,
            variants=[],
            backend=backend.name,
        )
        seen: set[str] = set()
        failing: list[CopyVariant] = []
        completions = backend.reads_prompt and self.prompts.has_block(
            self.settings.copy_prompt, "copy"
        )
        deadline = t0 + self.settings.copy_deadline_s
        try:
            if completions:
                texts = self._completions(request, variables, backend, profile, result, deadline)
            else:
                texts = self._json_variants(request, variables, backend, result, deadline)
            for text in texts:
                if len(result.variants) >= request.n:
                    break
                if text is None or text.lower() in seen:
                    continue
                seen.add(text.lower())
                variant = checked(text)
                (result.variants if variant.passed else failing).append(variant)
        except LLMError as exc:
            result.fallback, result.fallback_reason = True, str(exc)
            result.backend = BackendName.RULES
        if len(result.variants) < request.n:
            # The model could not find enough distinct, clean variants: top up from templates.
            rules = self.backends.get(BackendName.RULES)
            for k in range(3):
                if len(result.variants) >= request.n:
                    break
                text = _text_of(
                    rules.generate(
                        GenerationRequest(messages=(), context=variables, seed=request.seed + k)
                    )[0].text
                )
                if text and text.lower() not in seen:
                    seen.add(text.lower())
                    result.variants.append(checked(text))
                    if backend.name != BackendName.RULES:
                        result.fallback = True
                        result.fallback_reason = result.fallback_reason or "too few clean variants"
        # Variants that failed a check are never shown; they are kept, with the checks they
        # failed, for whoever tunes the prompt.
        result.rejected = failing
        result.seconds = round(time.perf_counter() - t0, 3)
        return result

    def _json_variants(
        self,
        request: CopyRequest,
        variables: dict[str, Any],
        backend: LLMBackend,
        result: CopyResult,
        deadline: float,
    ) -> Iterator[str | None]:
        """copy_v1 (and the rules backend, which reads no prompt): one JSON answer per call,
        a new seed per variant, none started after ``deadline``."""
        messages = (
            self.prompts.render(self.settings.copy_prompt, variables)
            if backend.reads_prompt
            else ()
        )
        schema = {
            "type": "object",
            "properties": {
                "text": {"type": "string", "minLength": 3, "maxLength": request.limit()}
            },
            "required": ["text"],
            "additionalProperties": False,
        }
        for attempt in range(request.n * TRIES_PER_VARIANT):
            if result.tokens >= self.settings.copy_token_budget:
                return  # the budget holds for this path too; templates top up the rest
            if time.perf_counter() > deadline:
                result.fallback_reason = self._late()
                return
            generation = backend.generate(
                GenerationRequest(
                    messages=messages,
                    json_schema=schema,
                    max_tokens=max(32, request.limit()),
                    temperature=0.8,
                    seed=request.seed + attempt,
                    context=variables,
                )
            )[0]
            result.tokens += generation.tokens
            yield _text_of(generation.text)

    def _completions(
        self,
        request: CopyRequest,
        variables: dict[str, Any],
        backend: LLMBackend,
        profile: ShopProfile | None,
        result: CopyResult,
        deadline: float,
    ) -> Iterator[str | None]:
        """copy_v2: candidates as one sampled batch, continuing copy written for the shop;
        those unfinished at ``deadline`` are dropped."""
        bank = (
            profile.for_locale(request.locale).copy_.get(request.kind.value, []) if profile else []
        )
        products = variables["products"]
        first = products[0]
        shown = [e for e in bank if e.product.lower() != first["title"].lower()][:3]
        if len(shown) < 2:
            result.fallback_reason = (
                f"the shop profile has fewer than 2 {request.locale.value} "
                f"{request.kind.value} examples"
            )
            return
        prompt = self.prompts.render_block(
            self.settings.copy_prompt,
            "copy",
            {
                "shop_name": profile.name if profile else "",
                "sells": profile.sells if profile else "",
                "examples": shown,
                "label": request.kind.value.capitalize(),
                "product": " / ".join(p["title"] for p in products),
                "category": ", ".join(first["categories"][:2]),
            },
        )
        top = request.limit() - 1
        if request.locale == Locale.ZH:
            regex = f" ?[{ZH_CHARS}《》]{{2,{top}}}\\n"
        else:  # one line of words: no markup, pipes or semicolons
            regex = f" ?[A-Z0-9][A-Za-z0-9 ,.'’&!?:-]{{2,{top}}}\\n"
        max_tokens = max(16, request.limit() // 2)
        # Twice the variants asked for (some fail their checks), within the token budget;
        # what the budget leaves out is topped up from the rules templates.
        budget = max(1, self.settings.copy_token_budget // max_tokens)
        [generations] = generate_batch(
            backend,
            [
                GenerationRequest(
                    messages=(),
                    prompt=prompt,
                    regex=regex,
                    stop=("\n",),
                    max_tokens=max_tokens,
                    temperature=0.8,
                    seed=request.seed,
                    n=min(8, request.n * 2, budget),
                )
            ],
            deadline,
        )
        result.tokens += sum(g.tokens for g in generations)
        if not generations or any(g.finish_reason == DEADLINE for g in generations):
            result.fallback_reason = self._late()
        for g in generations:
            if g.finish_reason in ("length", DEADLINE):
                continue  # cut off mid-sentence
            text = " ".join(g.text.split())
            yield text or None

    def _late(self) -> str:
        return f"copy deadline of {self.settings.copy_deadline_s:g} s reached"

    def _on_topic(
        self, text: str, words: list[str], titles: list[str], variables: dict[str, object]
    ) -> bool:
        if mentions(text, words):
            return True
        if self.similarity is None:
            return True  # nothing to measure meaning with: naming is not required
        about = "; ".join(titles)
        return self.similarity(text, about) >= self.settings.words.theme_fit_min

    def _profile(self) -> ShopProfile | None:
        """The shop's profile; a broken one is as good as none (rules copy, with a log
        line), since a shop's typo must not turn every copy request into an error."""
        try:
            return self.profile_file.current()
        except UsageError as exc:
            logger.warning("copy without the shop profile: %s", exc)
            return None


def _product_words(product: dict[str, object]) -> list[str]:
    cats = list(product.get("categories") or [])  # type: ignore[call-overload]
    return [*cats, *title_words(str(product.get("title", "")))]


def _text_of(raw: str) -> str | None:
    try:
        data = json.loads(raw)
    except json.JSONDecodeError:
        return None
    text = data.get("text") if isinstance(data, dict) else None
    return text.strip() if isinstance(text, str) and text.strip() else None
