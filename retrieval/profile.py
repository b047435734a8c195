"""Shopper profiles and pseudonyms: what may reach a prompt or a log."""

from __future__ import annotations

import hashlib
import hmac
import math
from collections import Counter

from retrieval.candidates import ShopperProfile
from retrieval.catalog_view import CatalogView
from retrieval.context import ShopperContext


def pseudonymise(shopper_id: str | None, salt: str) -> str:
    if shopper_id is None:
        return "anonymous"
    # 128 bits: with sequential shopper ids, a short digest is a lookup table away from the
    # ids for anyone who knows or guesses the salt; the salt is a secret off loopback.
    digest = hmac.new(salt.encode(), shopper_id.encode(), hashlib.sha256).hexdigest()
    return "s_" + digest[:32]


def build_profile(
    ctx: ShopperContext, catalog: CatalogView, salt: str, now: float, known: bool
) -> ShopperProfile:
    weight: dict[str, float] = {}
    prices = []
    index, products = catalog.index, catalog.products
    tree = catalog.category_tree
    for h in ctx.history:
        i = index.get(h.product_id)
        if i is None:
            continue
        p = products[i]
        for c in p.categories:
            # A department on most of the catalog's products is in every shopper's history.
            if not tree.is_broad(c):
                weight[c] = weight.get(c, 0) + h.weight
        prices.append(p.price)
    cats = Counter(weight)  # same insertion order, so most_common breaks ties the same way
    band = None
    if prices:
        prices.sort()
        band = (round(_percentile(prices, 0.25), 2), round(_percentile(prices, 0.75), 2))
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


def _percentile(ordered: list[float], q: float) -> float:
    """``np.percentile(values, 100 * q)`` of sorted values, bit for bit (its default linear
    method, including its two-sided interpolation), without numpy's per-call overhead."""
    position = q * (len(ordered) - 1)
    below = math.floor(position)
    above = min(below + 1, len(ordered) - 1)
    a, b, t = ordered[below], ordered[above], position - below
    diff = b - a
    return b - diff * (1 - t) if t >= 0.5 else a + diff * t
