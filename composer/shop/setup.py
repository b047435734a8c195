"""Set a shop up in its own artifacts folder: ingest its files, build its indexes, and draft
its profile — or install one of the packaged shops (real public data) the same way."""

from __future__ import annotations

import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from composer.errors import UsageError, first_error
from composer.resources import resource_dir
from composer.settings import Settings
from composer.shop.profile import LocaleExamples, ShopProfile, save_profile
from retrieval import BuildReport, Product, Store, build, read_catalog, read_interactions
from retrieval.build import ProgressFactory
from retrieval.datasets import PACKAGED_SHOPS, write_shop_files

SAMPLE_SHOP = "movies"
_DRAFT_HEADER = """\
# The shop's profile, drafted by `composer init` from the catalog. Edit it: the page
# composer writes headlines and titles few-shot from `examples`, which must be written
# for this shop (two or more headlines for a few categories, a title per page kind).
# Until there are example headlines for a locale, its pages keep the rules words.
"""


@dataclass
class InitReport:
    folder: str
    profile: str
    profile_written: bool
    products: int = 0
    events: int = 0
    build: BuildReport | None = None
    categories: list[str] = field(default_factory=list)


def packaged_profile(name: str) -> Path:
    path = resource_dir("evals") / "shops" / f"{name}.yaml"
    if not path.is_file():
        raise UsageError(f"no packaged profile for '{name}'")
    return path


def install_profile(settings: Settings, name: str) -> bool:
    """Copy a packaged shop's profile into place unless the shop already has one (edits to
    it are the shop's own)."""
    target = settings.resolved_profile_path()
    if target.is_file():
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(packaged_profile(name), target)
    return True


def draft_profile(
    products: list[Product], name: str, sells: str | None, currency: str
) -> ShopProfile:
    counts = Counter(c for p in products for c in p.categories)
    top = [c for c, _ in counts.most_common(3)]
    try:
        return ShopProfile(
            name=name,
            sells=sells or (", ".join(top) + " and more" if top else "a range of products"),
            currency=currency,
            theme_words={c: [] for c, _ in counts.most_common(12)},
            examples={"en": LocaleExamples(headlines={}, titles={})},  # type: ignore[dict-item]
        )
    except ValidationError as exc:
        raise UsageError(first_error(exc, "profile")) from None


def init_shop(
    settings: Settings,
    store: Store,
    catalog: Path,
    interactions: Path | None,
    name: str,
    sells: str | None,
    currency: str,
    progress: ProgressFactory,
    profile_source: Path | None = None,
) -> InitReport:
    """Ingest ``catalog`` (and ``interactions``) into the shop at ``settings.artifacts_dir``,
    build its indexes, and write its profile unless it has one."""
    if store.get_meta("seed:movielens-100k"):
        raise UsageError(
            f"{settings.artifacts_dir} holds the sample shop; set a shop up in a folder of its "
            "own (--dir or COMPOSER_ARTIFACTS_DIR)"
        )
    products = read_catalog(catalog, links=settings.link_policy())
    known = store.product_ids() | {p.product_id for p in products}
    events = read_interactions(interactions, known) if interactions else []
    target = settings.resolved_profile_path()
    # Drafted before anything is written: a bad --currency or --name fails the call whole.
    draft = None
    if not target.is_file() and profile_source is None:
        draft = draft_profile(products, name, sells, currency)
    store.ingest(products, events)
    report = InitReport(
        folder=str(settings.artifacts_dir),
        profile=str(settings.resolved_profile_path()),
        profile_written=False,
        products=len(products),
        events=len(events),
    )
    report.build = build(settings.retrieval_config(), store, progress=progress)
    if not target.is_file():
        if draft is not None:
            save_profile(draft, target, _DRAFT_HEADER)
        else:
            assert profile_source is not None
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(profile_source, target)
        report.profile_written = True
    report.categories = sorted({c for p in products for c in p.categories})
    return report


def init_packaged(
    settings: Settings, store: Store, name: str, progress: ProgressFactory
) -> InitReport:
    """One of the packaged shops of real public data (``electronics``, ``clothing``), through
    the same files and ingest as any shop's."""
    if name not in PACKAGED_SHOPS:
        known = ", ".join(sorted(PACKAGED_SHOPS))
        raise UsageError(f"no packaged shop '{name}'; known: {known}")
    cache = settings.resolved_cache_dir()
    shop = PACKAGED_SHOPS[name](cache / "data" / name, cache / "downloads")
    catalog, interactions = write_shop_files(shop, settings.artifacts_dir / "data")
    profile = packaged_profile(name)
    report = init_shop(
        settings, store, catalog, interactions, shop.name, None, "USD", progress, profile
    )
    return report
