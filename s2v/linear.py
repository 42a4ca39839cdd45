"""Ridge classifiers and regressions on fixed features: the corpus probes (`s2v.corpus.probe`), and
S_id's linear head (`s2v.students.fit_linear_id`).

One-vs-all ridge regression on standardised features (targets ±1), solved in closed form: no
training loop, no seed, the same answer on every machine.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _solve(x: np.ndarray, t: np.ndarray, lam: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, std, weights (D + 1, K)) of a ridge regression from standardised x (N, D) to targets t (N, K)."""
    x = np.asarray(x, np.float64)
    mean, std = x.mean(0), x.std(0) + 1e-6
    a = np.c_[(x - mean) / std, np.ones(len(x))]
    return mean, std, np.linalg.solve(a.T @ a + lam * np.eye(a.shape[1]), a.T @ t)


def _apply(x: np.ndarray, mean: np.ndarray, std: np.ndarray, weights: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return np.c_[(x - mean) / std, np.ones(len(x))] @ weights


@dataclass
class Ridge:
    classes: np.ndarray  # (K,) labels
    mean: np.ndarray  # (D,)
    std: np.ndarray  # (D,)
    weights: np.ndarray  # (D + 1, K), the last row the bias

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray, lam: float = 1.0) -> "Ridge":
        """Fit on features (N, D) and labels (N,)."""
        classes = np.unique(y)
        t = (np.asarray(y)[:, None] == classes[None]).astype(np.float64) * 2 - 1
        return cls(classes, *_solve(x, t, lam))

    def scores(self, x: np.ndarray) -> np.ndarray:
        """(N, K) one-vs-all scores."""
        return _apply(x, self.mean, self.std, self.weights)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """(N,) the best-scoring label of each row."""
        return self.classes[np.argmax(self.scores(x), 1)]


def ridge_probe(xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, lam: float = 1.0) -> np.ndarray:
    """Predicted classes of `xte` by a ridge classifier fitted on (xtr, ytr)."""
    return Ridge.fit(xtr, ytr, lam).predict(xte)


def ridge_regress(xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, lam: float = 1.0) -> np.ndarray:
    """Predictions for `xte` of a ridge regression from standardised features to targets (N,) or (N, K)."""
    return _apply(xte, *_solve(xtr, np.asarray(ytr, np.float64).reshape(len(xtr), -1), lam))


def ridge_affine(x: np.ndarray, t: np.ndarray, lam: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """`ridge_regress`'s map as one affine map of the raw features: (weight (D, K), bias (K,)) with
    x @ weight + bias = the prediction for targets t (N, K), the standardisation folded in."""
    mean, std, w = _solve(x, np.asarray(t, np.float64).reshape(len(x), -1), lam)
    weight = w[:-1] / std[:, None]
    return weight, w[-1] - mean @ weight


def ridge_r2(xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, yte: np.ndarray, lam: float = 1.0) -> float:
    """R² on (xte, yte) of `ridge_regress`, pooled over the targets: 1 - Σ residual² / Σ (y - mean of ytr)².
    0 = no better than predicting the training mean."""
    ytr = np.asarray(ytr, np.float64).reshape(len(ytr), -1)
    yte = np.asarray(yte, np.float64).reshape(len(yte), -1)
    pred = ridge_regress(xtr, ytr, xte, lam)
    return float(1 - ((pred - yte) ** 2).sum() / (((yte - ytr.mean(0)) ** 2).sum() + 1e-12))
