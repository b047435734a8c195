"""Headlines, taglines and descriptions: N distinct variants under the same checks."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping

from composer.backends import BackendRegistry
from composer.copywriting.checks import copy_checks
from composer.copywriting.model import CopyRequest, CopyResult, CopyVariant
from composer.errors import UsageError
from composer.layout import Locale
from composer.llm.base import GenerationRequest, LLMError
from composer.prompting import PromptLibrary, clean_fact
from composer.settings import Settings
from retrieval import Product

_KIND_TEXT = {
    "headline": "headline",
    "tagline": "one-sentence tagline",
    "description": "short product description (two sentences at most)",
}
_LANGUAGE = {Locale.EN: "English", Locale.ZH: "Simplified Chinese (简体中文)"}
TRIES_PER_VARIANT = 3  # distinct, passing variants are sampled; give up after this many each


class Copywriter:
    def __init__(
        self,
        settings: Settings,
        catalog: Mapping[str, Product],
        backends: BackendRegistry | None = None,
        prompts: PromptLibrary | None = None,
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.backends = backends or BackendRegistry(settings)
        self.prompts = prompts or PromptLibrary()

    def variables(self, request: CopyRequest) -> dict[str, object]:
        missing = [p for p in request.products if p not in self.catalog]
        if missing:
            raise UsageError(f"products: unknown product id(s): {', '.join(missing[:5])}")
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
                {"title": clean_fact(p.title), "categories": list(p.categories[:3]), "year": p.year}
                for p in products
            ],
        }

    def write(self, request: CopyRequest) -> CopyResult:
        t0 = time.perf_counter()
        variables = self.variables(request)
        backend = self.backends.get(request.backend)
        messages = self.prompts.render(self.settings.copy_prompt, variables)
        schema = {
            "type": "object",
            "properties": {
                "text": {"type": "string", "minLength": 3, "maxLength": request.limit()}
            },
            "required": ["text"],
            "additionalProperties": False,
        }
        titles = [p["title"] for p in variables["products"]]  # type: ignore[index]

        def checked(text: str) -> CopyVariant:
            checks = copy_checks(
                text, request.locale, request.limit(), self.settings.banned_words, titles
            )
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
        for attempt in range(request.n * TRIES_PER_VARIANT):
            if len(result.variants) >= request.n:
                break
            gen_request = GenerationRequest(
                messages=messages,
                json_schema=schema,
                max_tokens=max(32, request.limit()),
                temperature=0.8,
                seed=request.seed + attempt,
                context=variables,
            )
            try:
                generation = backend.generate(gen_request)[0]
            except LLMError as exc:
                result.fallback, result.fallback_reason = True, str(exc)
                backend = self.backends.get("rules")
                result.backend = "rules"
                continue
            result.tokens += generation.tokens
            text = _text_of(generation.text)
            if text is None or text.lower() in seen:
                continue
            seen.add(text.lower())
            variant = checked(text)
            (result.variants if variant.passed else failing).append(variant)
        if len(result.variants) < request.n and backend.name != "rules":
            # The model could not find enough distinct, clean variants: top up from templates.
            rules = self.backends.get("rules")
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
                    result.fallback = True
                    result.fallback_reason = result.fallback_reason or "too few clean variants"
        # Failing variants are shown last, with the checks they failed, only to fill up to n.
        result.variants += failing[: max(0, request.n - len(result.variants))]
        result.seconds = round(time.perf_counter() - t0, 3)
        return result


def _text_of(raw: str) -> str | None:
    try:
        data = json.loads(raw)
    except json.JSONDecodeError:
        return None
    text = data.get("text") if isinstance(data, dict) else None
    return text.strip() if isinstance(text, str) and text.strip() else None
