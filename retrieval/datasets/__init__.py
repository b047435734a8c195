"""Packaged data sets turned into a shop."""

from retrieval.datasets.movielens import MovieLensShop, load_movielens
from retrieval.datasets.packaged import fetch_wheel_member

__all__ = ["MovieLensShop", "fetch_wheel_member", "load_movielens"]
