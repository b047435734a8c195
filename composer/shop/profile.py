"""A shop is more than its catalog: what it sells, how it speaks, and headlines written for it.

The profile is a YAML file in the shop's artifacts folder (``shop.yaml``), drafted from the
catalog by ``composer init`` and edited by the shop. The LLM writes headlines and titles
few-shot from the profile's own examples, so nothing a page says comes from another shop.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from composer.errors import UsageError, first_error
from composer.layout import Locale

PROFILE_FILE = "shop.yaml"

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Example = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=60)]


class CopyExample(BaseModel):
    """Product copy written for the shop: the product as the prompt shows it, and the text."""

    model_config = ConfigDict(extra="forbid")

    product: Text
    category: str = ""
    text: Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=240)]


class LocaleExamples(BaseModel):
    """Headlines per theme (a catalog category), page titles per page kind, and product
    copy per kind (headline, tagline, description)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    headlines: dict[str, list[Example]] = Field(default_factory=dict)
    titles: dict[str, list[Example]] = Field(default_factory=dict)
    copy_: dict[str, list[CopyExample]] = Field(default_factory=dict, alias="copy")

    def headline_count(self) -> int:
        return sum(len(v) for v in self.headlines.values())


class ShopProfile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Text
    sells: Text = Field(description="what the shop sells, as a phrase: 'consumer electronics'")
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")] = "USD"
    locales: list[Locale] = Field(default_factory=lambda: [Locale.EN], min_length=1)
    brand_voice: Text = "friendly, concise and confident; never pushy"
    banned_words: list[Text] = Field(default_factory=lambda: ["cheap", "guaranteed", "miracle"])
    # Words that also name a category ("kids" for Children's): theme checks accept them.
    theme_words: dict[str, list[Text]] = Field(default_factory=dict)
    examples: dict[Locale, LocaleExamples] = Field(default_factory=dict)

    def for_locale(self, locale: Locale) -> LocaleExamples:
        return self.examples.get(locale) or LocaleExamples()

    def example_texts(self) -> list[str]:
        """Every example headline and title, all locales: what a page must not repeat."""
        out: list[str] = []
        for ex in self.examples.values():
            out += [t for texts in ex.headlines.values() for t in texts]
            out += [t for texts in ex.titles.values() for t in texts]
            out += [c.text for texts in ex.copy_.values() for c in texts]
        return out

    def words_for(self, category: str) -> list[str]:
        return [category, *self.theme_words.get(category, [])]


def load_profile(path: Path) -> ShopProfile:
    """The profile at ``path``; a readable one-line error names the file and the field."""
    if not path.is_file():
        raise UsageError(f"{path}: no shop profile; create one with `composer init`")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: not valid YAML ({exc})") from None
    try:
        return ShopProfile.model_validate(data or {})
    except ValidationError as exc:
        raise UsageError(f"{path}: {first_error(exc, 'profile')}") from None


class ProfileFile:
    """The profile at a path, read again only when the file changes (pages and copy ask
    for it on every request; a stat is cheap, parsing YAML is not)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._loaded: tuple[int, ShopProfile] | None = None

    def stamp(self) -> int:
        """Changes when the file does; 0 when there is none."""
        try:
            return self.path.stat().st_mtime_ns
        except OSError:
            return 0

    def current(self) -> ShopProfile | None:
        """The profile, or None when there is no file; a broken file raises UsageError."""
        stamp = self.stamp()
        if not stamp:
            return None
        loaded = self._loaded
        if loaded is None or loaded[0] != stamp:
            loaded = (stamp, load_profile(self.path))
            self._loaded = loaded  # one tuple swap: safe for the API's page threads
        return loaded[1]


def save_profile(profile: ShopProfile, path: Path, header: str = "") -> None:
    data = profile.model_dump(mode="json", exclude_defaults=False, by_alias=True)
    text = yaml.safe_dump(data, allow_unicode=True, sort_keys=False, width=100)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".yaml.part")
    tmp.write_text(header + text, encoding="utf-8")
    tmp.replace(path)
