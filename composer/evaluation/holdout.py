"""The world an evaluation composes pages in: retrieval rebuilt from each shopper's earlier
events, and their later events kept aside as the future a page is judged against."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from composer.errors import UsageError
from composer.evaluation.suite import PageCase, PageSample, SplitSpec
from composer.layout import PageKind
from retrieval import CatalogView, Retriever
from retrieval.evaluation import temporal_split
from retrieval.mf import MFModel, recency_popularity
from retrieval.sources import MFSource, PopularitySource
from retrieval.store import StoredEvent


class TrainEvents:
    """Read-only event history of the training part, answering like the store does."""

    def __init__(self, events: Sequence[StoredEvent]) -> None:
        self._by_shopper: dict[str, list[StoredEvent]] = defaultdict(list)
        for e in sorted(events, key=lambda e: (e.timestamp, e.event_id)):
            self._by_shopper[e.shopper_id].append(e)

    def events_for(self, shopper_id: str) -> list[StoredEvent]:
        return list(self._by_shopper.get(shopper_id, ()))


@dataclass
class Holdout:
    retriever: Retriever
    relevant: dict[str, frozenset[str]]  # shopper -> held-out products, unseen in training

    def check(self, cases: Sequence[PageCase]) -> None:
        outside = [c.shopper for c in cases if c.shopper and c.shopper not in self.relevant]
        if outside:
            raise UsageError(
                f"shopper(s) {', '.join(outside[:5])} have no held-out events in the test "
                "split; pick shoppers from the split (or use a `sample:` block)"
            )


def build_holdout(base: Retriever, events: Sequence[StoredEvent], split: SplitSpec) -> Holdout:
    """A retriever like ``base`` (catalog, vectors, tuned weights) whose MF, popularity and
    shopper histories see only the training events."""
    if split.until is not None:
        events = [e for e in events if e.timestamp <= split.until]
    parts = temporal_split(events, split.fraction, split.min_events)
    train: list[StoredEvent] = parts.train  # type: ignore[assignment]
    if not train or not parts.test:
        raise UsageError("too few events for a hold-out; ingest interactions first")
    catalog = base.catalog
    # Every training event is "already trained on", so known shoppers use their MF factors
    # instead of being folded in.
    model = MFModel.train(
        train, catalog.ids, base.mf_params, trained_through_event=max(e.event_id for e in train)
    )
    popularity = recency_popularity(train, catalog.ids, base.mf_params)
    retriever = replace(
        base,
        mf=MFSource(model, catalog),
        popular=PopularitySource(popularity, catalog),
        store=TrainEvents(train),  # type: ignore[arg-type]  # only events_for is used
        now=max(e.timestamp for e in train),
    )
    relevant = {sid: frozenset(items) for sid, items in parts.test.items()}
    return Holdout(retriever, relevant)


def sample_cases(sample: PageSample, holdout: Holdout) -> list[PageCase]:
    """``sample.count`` page requests over shoppers drawn from the test split."""
    shoppers = sorted(holdout.relevant, key=lambda s: (len(s), s))
    rng = np.random.default_rng(sample.seed)
    picked = rng.permutation(len(shoppers))[: sample.count]
    catalog = holdout.retriever.catalog
    cases = []
    for n, i in enumerate(sorted(picked.tolist())):
        sid = shoppers[i]
        kind = sample.kinds[n % len(sample.kinds)]
        locale = sample.locales[(n // len(sample.kinds)) % len(sample.locales)]
        genre = _held_out_genre(holdout.relevant[sid], catalog)
        query, categories = None, []
        if kind == PageKind.SEARCH and genre:
            template = sample.query_templates[n % len(sample.query_templates)]
            query = template.format(genre=genre.lower())
        elif kind == PageKind.CATEGORY and genre:
            categories = [genre]
        elif kind in (PageKind.SEARCH, PageKind.CATEGORY):
            kind = PageKind.HOME  # held-out products without a genre: nothing to search for
        cases.append(
            PageCase(
                id=f"{n:04d}-{kind.value}-{locale.value}-{sid}",
                shopper=sid,
                kind=kind,
                locale=locale,
                query=query,
                categories=categories,
                seed=sample.seed,
            )
        )
    return cases


def _held_out_genre(products: frozenset[str], catalog: CatalogView) -> str | None:
    genres = Counter(
        c
        for pid in products
        if pid in catalog.index
        for c in catalog.products[catalog.index[pid]].categories
    )
    if not genres:
        return None
    return sorted(genres.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
