"""Matrix factorisation candidates: implicit ALS, persisted, with fold-in for new shoppers."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp

from retrieval.device import resolve_device
from retrieval.errors import DeviceUnavailable, NotBuiltError
from retrieval.params import MFParams
from retrieval.records import EventKind


class EventLike(Protocol):
    """What MF and popularity need of an event (stored events and ingested interactions)."""

    @property
    def shopper_id(self) -> str: ...
    @property
    def product_id(self) -> str: ...
    @property
    def kind(self) -> EventKind: ...
    @property
    def timestamp(self) -> float: ...
    @property
    def value(self) -> float | None: ...


def event_weight(kind: EventKind, value: float | None, params: MFParams) -> float:
    base = {
        EventKind.VIEW: params.view_weight,
        # A click on a page is a view of the product the page showed.
        EventKind.CLICK: params.view_weight,
        EventKind.CART: params.cart_weight,
        EventKind.PURCHASE: params.purchase_weight,
        EventKind.RATING: params.rating_weight,
    }[kind]
    if value is not None and 0 < value <= 5:
        # A low rating is still a signal of interest, only a weaker one.
        base *= 0.5 + value / 10.0
    return base


class MFModel:
    """Item factors plus the trained shoppers' factors, aligned with a product id list."""

    def __init__(
        self,
        product_ids: Sequence[str],
        item_factors: np.ndarray,
        shopper_ids: Sequence[str],
        user_factors: np.ndarray,
        params: MFParams,
        trained_through_event: int = 0,
    ) -> None:
        self.product_ids = list(product_ids)
        self.item_index = {pid: i for i, pid in enumerate(self.product_ids)}
        self.item_factors = np.ascontiguousarray(item_factors, dtype=np.float32)
        self.shopper_ids = list(shopper_ids)
        self.user_index = {sid: i for i, sid in enumerate(self.shopper_ids)}
        self.user_factors = np.ascontiguousarray(user_factors, dtype=np.float32)
        self.params = params
        self.trained_through_event = trained_through_event
        self._fold_solver = _FoldInSolver(self.item_factors, params.regularization)

    @classmethod
    def train(
        cls,
        events: Sequence[EventLike],
        product_ids: Sequence[str],
        params: MFParams,
        trained_through_event: int = 0,
        device: str = "cpu",
    ) -> MFModel:
        """ALS on ``device`` (auto, cpu, cuda: implicit's own GPU solver where CUDA is);
        the factors come back as CPU arrays either way."""
        from threadpoolctl import threadpool_limits

        AlternatingLeastSquares = _als_class(device)

        item_index = {pid: i for i, pid in enumerate(product_ids)}
        shoppers = sorted({e.shopper_id for e in events})
        user_index = {sid: i for i, sid in enumerate(shoppers)}
        matrix = confidence_matrix(events, user_index, item_index, params)
        # implicit warns and runs slower when BLAS also spawns threads.
        with threadpool_limits(1, "blas"):
            model = AlternatingLeastSquares(
                factors=params.factors,
                regularization=params.regularization,
                alpha=params.alpha,
                iterations=params.iterations,
                random_state=params.seed,
            )
            model.fit(matrix, show_progress=False)
        if hasattr(model, "to_cpu"):  # the GPU solver keeps its factors on the device
            model = model.to_cpu()
        return cls(
            product_ids,
            np.asarray(model.item_factors),
            shoppers,
            np.asarray(model.user_factors),
            params,
            trained_through_event,
        )

    def user_vector(self, shopper_id: str) -> np.ndarray | None:
        i = self.user_index.get(shopper_id)
        return None if i is None else self.user_factors[i]

    def fold_in(self, history: Sequence[tuple[str, float]]) -> np.ndarray | None:
        """A user vector from ``(product_id, weight)`` pairs without retraining."""
        idx, conf = [], []
        for pid, w in history:
            j = self.item_index.get(pid)
            if j is not None:
                idx.append(j)
                conf.append(w * self.params.alpha)
        if not idx:
            return None
        return self._fold_solver.solve(np.asarray(idx), np.asarray(conf, dtype=np.float32))

    def scores(self, user_vector: np.ndarray) -> np.ndarray:
        return self.item_factors @ user_vector

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / "mf.npz.part"
        with tmp.open("wb") as fh:
            np.savez(fh, item_factors=self.item_factors, user_factors=self.user_factors)
        tmp.replace(folder / "mf.npz")
        (folder / "mf.json").write_text(
            json.dumps(
                {
                    "product_ids": self.product_ids,
                    "shopper_ids": self.shopper_ids,
                    "params": self.params.model_dump(),
                    "trained_through_event": self.trained_through_event,
                }
            )
        )

    @classmethod
    def load(cls, folder: Path) -> MFModel:
        if not (folder / "mf.npz").is_file() or not (folder / "mf.json").is_file():
            raise NotBuiltError(f"no MF model in {folder}; run `composer setup` first")
        meta = json.loads((folder / "mf.json").read_text())
        arrays = np.load(folder / "mf.npz")
        return cls(
            meta["product_ids"],
            arrays["item_factors"],
            meta["shopper_ids"],
            arrays["user_factors"],
            MFParams(**meta["params"]),
            meta["trained_through_event"],
        )


def confidence_matrix(
    events: Sequence[EventLike],
    user_index: dict[str, int],
    item_index: dict[str, int],
    params: MFParams,
) -> sp.csr_matrix:
    rows, cols, vals = [], [], []
    for e in events:
        j = item_index.get(e.product_id)
        i = user_index.get(e.shopper_id)
        if i is None or j is None:
            continue
        rows.append(i)
        cols.append(j)
        vals.append(event_weight(e.kind, e.value, params))
    # Duplicates (a view then a purchase) add up when converted to CSR.
    return sp.coo_matrix(
        (np.asarray(vals, dtype=np.float32), (rows, cols)),
        shape=(len(user_index), len(item_index)),
    ).tocsr()


class _FoldInSolver:
    """One ALS user step, x = (YᵀY + Yᵀ(C−I)Y + λI)⁻¹ YᵀCp, as in implicit's least squares.

    Written out because implicit's own call needs the fitted estimator object, which would
    tie the persisted model to implicit's pickle format; this is the same closed form.
    """

    def __init__(self, item_factors: np.ndarray, regularization: float) -> None:
        self.Y = item_factors
        self.YtY = item_factors.T @ item_factors
        self.reg = regularization * np.eye(item_factors.shape[1], dtype=np.float32)

    def solve(self, idx: np.ndarray, confidence: np.ndarray) -> np.ndarray:
        Yi = self.Y[idx]
        A = self.YtY + (Yi.T * (confidence - 1.0)) @ Yi + self.reg
        b = Yi.T @ confidence
        return np.linalg.solve(A, b).astype(np.float32)


def recency_popularity(
    events: Sequence[EventLike],
    product_ids: Sequence[str],
    params: MFParams,
    now: float | None = None,
) -> np.ndarray:
    """Recency-weighted popularity per product (newest event = weight 1, halving per half-life)."""
    index = {pid: i for i, pid in enumerate(product_ids)}
    scores = np.zeros(len(product_ids), dtype=np.float64)
    if not events:
        return scores.astype(np.float32)
    ref = now if now is not None else max(e.timestamp for e in events)
    half_life = params.popularity_half_life_days * 86400.0
    for e in events:
        j = index.get(e.product_id)
        if j is None:
            continue
        age = max(0.0, ref - e.timestamp)
        scores[j] += event_weight(e.kind, e.value, params) * math.exp(
            -math.log(2) * age / half_life
        )
    return scores.astype(np.float32)


def _als_class(choice: str) -> Any:
    if resolve_device(choice) == "cuda":
        import implicit.gpu

        # PyPI's implicit has no CUDA build: with `auto` that is the CPU solver, not an error.
        if not implicit.gpu.HAS_CUDA and choice == "auto":
            from implicit.cpu.als import AlternatingLeastSquares as FallbackALS

            return FallbackALS
        if not implicit.gpu.HAS_CUDA:
            raise DeviceUnavailable(
                "ALS on cuda needs implicit built with CUDA (pip install implicit from "
                "conda-forge's CUDA build); use COMPOSER_DEVICE=cpu"
            )
        from implicit.gpu.als import AlternatingLeastSquares as GpuALS

        return GpuALS
    from implicit.cpu.als import AlternatingLeastSquares as CpuALS

    return CpuALS
