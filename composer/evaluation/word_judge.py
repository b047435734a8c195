"""An independent judge of shown words: each headline or title labelled good, clumsy or
nonsense, given the shop, the section's theme and its products.

Not the writer, and not the writer's checks: a larger model than the default 135M writer
(Qwen2.5-Coder-1.5B-Instruct) reads each line three ways — a rubric with the three labels
(``prompts/word_judge_v1.j2``), one narrow question, does it make sense here
(``word_sense_v1.j2``), and how likely the line is after a plain description of the section
(``word_fluency_v1.j2``) — plus a few facts of the text itself (made-up words, a word
repeated). A multinomial logistic regression, fitted on the `fit` half of the labelled set
(``composer words calibrate``; weights in ``evals/words/judge_weights.json``), turns these
into a label. Nothing is generated: each reading is one forward pass over the item's own
tokens after a prefix computed once. How often it agrees with a person is measured on the
other half, never fitted on (``composer words agreement``).
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from composer.errors import UsageError
from composer.prompting import PromptLibrary, clean_fact
from composer.resources import resource_dir

Label = Literal["good", "clumsy", "nonsense"]
LABELS: tuple[Label, ...] = ("good", "clumsy", "nonsense")
JUDGE_PROMPT = "word_judge_v1"
SENSE_PROMPT = "word_sense_v1"
FLUENCY_PROMPT = "word_fluency_v1"
FEATURES = (
    "rubric_good_vs_clumsy",
    "rubric_good_vs_nonsense",
    "makes_sense",
    "fluency",
    "made_up_words",
    "repeated_word",
    "words",
)


def weights_file() -> Path:
    return resource_dir("evals") / "words" / "judge_weights.json"


class WordItem(BaseModel):
    """One shown text to judge (a line of ``composer words judge``'s input)."""

    model_config = ConfigDict(extra="ignore")

    sells: str = Field(min_length=1, max_length=300, description="What the shop sells.")
    theme: str = Field(min_length=1, max_length=300, description="The section's theme.")
    text: str = Field(min_length=1, max_length=200, description="The headline or title shown.")
    products: list[str] = Field(default_factory=list, max_length=12)
    kind: Literal["headline", "title"] = "headline"


@dataclass
class Judgement:
    text: str
    label: Label
    probabilities: dict[str, float] = field(default_factory=dict)
    features: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "label": self.label,
            "probabilities": {k: round(v, 4) for k, v in self.probabilities.items()},
        }


@dataclass(frozen=True)
class JudgeWeights:
    """Standardisation and a multinomial logistic regression over :data:`FEATURES`."""

    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[tuple[float, ...], ...]  # one row per label
    intercept: tuple[float, ...]
    fitted_on: str = ""

    @classmethod
    def load(cls, path: Path | None = None) -> JudgeWeights:
        path = path or weights_file()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            fits = tuple(data["features"]) == FEATURES and tuple(data["labels"]) == LABELS
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UsageError(
                f"the word judge's weights {path} cannot be read ({exc}); run "
                "`composer words calibrate`"
            ) from None
        if not fits:
            raise UsageError(
                f"{path} was fitted for other readings or labels; run `composer words calibrate`"
            )
        return cls(
            tuple(data["mean"]),
            tuple(data["scale"]),
            tuple(tuple(row) for row in data["coef"]),
            tuple(data["intercept"]),
            str(data.get("fitted_on", "")),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "features": list(FEATURES),
            "labels": list(LABELS),
            "mean": list(self.mean),
            "scale": list(self.scale),
            "coef": [list(row) for row in self.coef],
            "intercept": list(self.intercept),
            "fitted_on": self.fitted_on,
        }

    def probabilities(self, features: Sequence[float]) -> dict[str, float]:
        x = [(v - m) / s for v, m, s in zip(features, self.mean, self.scale, strict=True)]
        logits = [
            b + sum(w * v for w, v in zip(row, x, strict=True))
            for row, b in zip(self.coef, self.intercept, strict=True)
        ]
        top = max(logits)
        exp = [math.exp(z - top) for z in logits]
        total = sum(exp)
        return {label: e / total for label, e in zip(LABELS, exp, strict=True)}


_LATIN_WORD = re.compile(r"[A-Za-z][A-Za-z'’-]*")


def features(readings: dict[str, float], item: WordItem) -> dict[str, float]:
    """All of :data:`FEATURES`: the model's readings and the text's own — made-up words
    (English: not in wordfreq's lists and not in the shop's own text), a word stem repeated
    ("Grocery groceries"), length in words (Chinese: characters / 2)."""
    from wordfreq import zipf_frequency

    words = _LATIN_WORD.findall(item.text)
    known = {
        w.lower() for w in _LATIN_WORD.findall(" ".join([item.sells, item.theme, *item.products]))
    }
    made_up = sum(1 for w in words if w.lower() not in known and zipf_frequency(w, "en") < 1.0)
    stems = [w.lower().rstrip("s")[:5] for w in words if len(w) > 3]
    repeated = float(len(stems) != len(set(stems)))
    length = len(words) if words else len(item.text) / 2
    return readings | {
        "made_up_words": float(made_up > 0),
        "repeated_word": repeated,
        "words": float(length),
    }


class WordJudge:
    """Labels shown words with a causal LM read in-process (float32 on a CPU)."""

    def __init__(
        self,
        model_path: Path,
        prompts: PromptLibrary | None = None,
        threads: int | None = None,
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model = model_path.name
        self.prompts = prompts or PromptLibrary()
        # An evaluation tool, not the request path: it may use every core it is given.
        torch.set_num_threads(threads or max(1, len(os.sched_getaffinity(0))))
        self._torch = torch
        self._tokenizer = AutoTokenizer.from_pretrained(str(model_path))
        self._lm = AutoModelForCausalLM.from_pretrained(str(model_path), dtype=torch.float32)
        self._lm.eval()
        # Each answer's first token as the answer's first token: enough to tell them apart.
        self._label_ids = {label: self._first_token(label) for label in LABELS}
        if len(set(self._label_ids.values())) != len(LABELS):
            raise ValueError(f"{self.model}: the labels share a first token; change the labels")
        self._yes = [self._first_token(w) for w in ("yes", "Yes")]
        self._no = [self._first_token(w) for w in ("no", "No")]
        self._prefixes: dict[str, tuple[list[int], Any]] = {}
        self._lock = threading.Lock()

    def readings(self, item: WordItem) -> dict[str, float]:
        """The model's readings of ``item``: what is worth caching (see :func:`features`)."""
        torch = self._torch
        variables = self.read(item)
        with self._lock:
            rubric = torch.log_softmax(self._next_logits(JUDGE_PROMPT, variables), dim=-1)
            sense = torch.log_softmax(self._next_logits(SENSE_PROMPT, variables), dim=-1)
            fluency = self._fluency(variables)
        good, clumsy, nonsense = (float(rubric[self._label_ids[lb]]) for lb in LABELS)
        yes = float(torch.logsumexp(sense[self._yes], 0))
        no = float(torch.logsumexp(sense[self._no], 0))
        return {
            "rubric_good_vs_clumsy": good - clumsy,
            "rubric_good_vs_nonsense": good - nonsense,
            "makes_sense": yes - no,
            "fluency": fluency,
        }

    # -- pieces ----------------------------------------------------------------------------

    def _first_token(self, word: str) -> int:
        return int(self._tokenizer.encode(word, add_special_tokens=False)[0])

    @staticmethod
    def read(item: WordItem) -> dict[str, Any]:
        """What the judge reads of an item (the prompts' variables)."""
        # Catalog text and generated words are untrusted: plain characters, bounded.
        return {
            "sells": clean_fact(item.sells, 160),
            "theme": clean_fact(item.theme, 60),
            "products": [clean_fact(p, 60) for p in item.products[:3]],
            "kind": "Title" if item.kind == "title" else "Headline",
            "text": clean_fact(item.text, 120),
        }

    def _chat_ids(self, prompt: str, variables: dict[str, Any]) -> list[int]:
        messages = [
            {"role": m.role, "content": m.content} for m in self.prompts.render(prompt, variables)
        ]
        encoded: Any = self._tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=True
        )
        if not isinstance(encoded, list):  # transformers 5 returns a BatchEncoding
            encoded = encoded["input_ids"]
        return [int(i) for i in encoded]

    def _next_logits(self, prompt: str, variables: dict[str, Any]) -> Any:
        """Logits of the answer's first token under ``prompt``, reusing the cached system
        turn every item shares."""
        ids = self._chat_ids(prompt, variables)
        cached = self._prefixes.get(prompt)
        if cached is None or ids[: len(cached[0])] != cached[0] or len(ids) <= len(cached[0]):
            probe = self._chat_ids(prompt, self.read(WordItem(sells="x", theme="x", text="x")))
            n = 0
            while n < min(len(probe), len(ids)) - 1 and probe[n] == ids[n]:
                n += 1
            head = self._run(ids[:n], None)
            cached = (list(ids[:n]), copy.deepcopy(head.past_key_values))
            self._prefixes[prompt] = cached
        out = self._run(ids[len(cached[0]) :], copy.deepcopy(cached[1]))
        return out.logits[0, -1, :].float()

    def _fluency(self, variables: dict[str, Any]) -> float:
        """Mean log-probability per token of the text after the plain context."""
        torch = self._torch
        context = self.prompts.render_block(FLUENCY_PROMPT, "context", variables)
        head = self._tokenizer.encode(context, add_special_tokens=False)
        tail = self._tokenizer.encode(" " + variables["text"] + "\n", add_special_tokens=False)
        out = self._run([*head, *tail], None, keep=len(tail) + 1)
        logprobs = torch.log_softmax(out.logits[0, :-1, :].float(), dim=-1)
        picked = logprobs[torch.arange(len(tail)), torch.tensor(tail)]
        return float(picked.mean())

    def _run(self, ids: Sequence[int], past: Any, keep: int = 1) -> Any:
        with self._torch.no_grad():
            return self._lm(
                input_ids=self._torch.tensor([list(ids)]),
                past_key_values=past,
                use_cache=True,
                logits_to_keep=keep,
            )


def judgement(item: WordItem, features: dict[str, float], weights: JudgeWeights) -> Judgement:
    probabilities = weights.probabilities([features[f] for f in FEATURES])
    label: Label = max(LABELS, key=lambda lb: probabilities[lb])
    return Judgement(item.text, label, probabilities, features)


def parse_line(number: int, line: str) -> tuple[dict[str, Any], WordItem]:
    """One JSONL line: the row and its item; ``ValueError`` naming the line and field."""
    from pydantic import ValidationError

    try:
        row = json.loads(line)
        return row, WordItem.model_validate(row)
    except json.JSONDecodeError as exc:
        raise ValueError(f"line {number}: not JSON ({exc.msg})") from None
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "line"
        raise ValueError(f"line {number}, field '{where}': {err['msg']}") from None


def load_items(lines: Iterable[str]) -> list[WordItem]:
    """JSONL lines into items; raises ``ValueError`` naming the line and field."""
    return [parse_line(n, line)[1] for n, line in enumerate(lines, 1) if line.strip()]
