"""Shopper profiles and pseudonyms: what may reach a prompt or a log."""

from __future__ import annotations

import hashlib
import hmac
from collections import Counter

import numpy as np

from retrieval.candidates import ShopperProfile
from retrieval.catalog_view import CatalogView
from retrieval.context import ShopperContext


def pseudonymise(shopper_id: str | None, salt: str) -> str:
    if shopper_id is None:
        return "anonymous"
    digest = hmac.new(salt.encode(), shopper_id.encode(), hashlib.sha256).hexdigest()
    return "s_" + digest[:12]


def build_profile(
    ctx: ShopperContext, catalog: CatalogView, salt: str, now: float, known: bool
) -> ShopperProfile:
    cats: Counter[str] = Counter()
    prices = []
    for h in ctx.history:
        i = catalog.index.get(h.product_id)
        if i is None:
            continue
        p = catalog.products[i]
        for c in p.categories:
            cats[c] += h.weight
        prices.append(p.price)
    band = None
    if prices:
        lo, hi = np.percentile(prices, [25, 75])
        band = (round(float(lo), 2), round(float(hi), 2))
    last = ctx.history[-1].timestamp if ctx.history else None
    return ShopperProfile(
        pseudonym=pseudonymise(ctx.shopper_id, salt),
        known=known,
        events=len(ctx.history),
        top_categories=tuple(c for c, _ in cats.most_common(3)),
        price_band=band,
        days_since_last_event=None if last is None else round(max(0.0, now - last) / 86400, 1),
        recent_product_ids=tuple(reversed(ctx.history_ids()[-5:])),
    )
