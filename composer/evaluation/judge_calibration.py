"""Fit the word judge's weights: a multinomial logistic regression (L2-penalised) over the
judge's readings of the labelled set's `fit` half. scipy's optimiser rather than
scikit-learn: one small loss function does not justify that dependency."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import minimize

from composer.evaluation.word_judge import FEATURES, LABELS, JudgeWeights

# Leave-one-out on the fit half moved little between 0.3 and 10 (kappa 0.30-0.32, README,
# "Judging the words"); 1.0 is the middle of that flat stretch.
PENALTY = 1.0


def fit_weights(
    features: Sequence[dict[str, float]],
    labels: Sequence[str],
    penalty: float = PENALTY,
    fitted_on: str = "",
) -> JudgeWeights:
    x = np.asarray([[f[name] for name in FEATURES] for f in features], dtype=float)
    y = np.asarray([[str(lb) for lb in LABELS].index(label) for label in labels])
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale == 0] = 1.0
    z = (x - mean) / scale
    k, d = len(LABELS), len(FEATURES)
    onehot = np.eye(k)[y]

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w = theta[: k * d].reshape(k, d)
        b = theta[k * d :]
        logits = z @ w.T + b
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        n = len(z)
        value = -np.sum(onehot * np.log(p + 1e-12)) / n + penalty * np.sum(w * w) / (2 * n)
        grad_logits = (p - onehot) / n
        grad_w = grad_logits.T @ z + penalty * w / n
        grad_b = grad_logits.sum(axis=0)
        return float(value), np.concatenate([grad_w.ravel(), grad_b])

    result = minimize(loss, np.zeros(k * d + k), jac=True, method="L-BFGS-B")
    w = result.x[: k * d].reshape(k, d)
    b = result.x[k * d :]
    return JudgeWeights(
        tuple(float(v) for v in mean),
        tuple(float(v) for v in scale),
        tuple(tuple(float(v) for v in row) for row in w),
        tuple(float(v) for v in b),
        fitted_on,
    )


def leave_one_out(
    features: Sequence[dict[str, float]], labels: Sequence[str], penalty: float = PENALTY
) -> list[str]:
    """Each line labelled by weights fitted on all the others."""
    out: list[str] = []
    for i in range(len(labels)):
        rest = [j for j in range(len(labels)) if j != i]
        weights = fit_weights([features[j] for j in rest], [labels[j] for j in rest], penalty)
        p = weights.probabilities([features[i][name] for name in FEATURES])
        out.append(max(LABELS, key=lambda lb: p[lb]))
    return out
