"""Ridge classifiers on fixed features: the corpus probes and the evaluation's attribute judges.

One-vs-all ridge regression on standardised features (targets ±1), solved in closed form: no
training loop, no seed, the same answer on every machine.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Ridge:
    classes: np.ndarray  # (K,) labels
    mean: np.ndarray  # (D,)
    std: np.ndarray  # (D,)
    weights: np.ndarray  # (D + 1, K), the last row the bias

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray, lam: float = 1.0) -> "Ridge":
        """Fit on features (N, D) and labels (N,)."""
        x = np.asarray(x, np.float64)
        mean, std = x.mean(0), x.std(0) + 1e-6
        a = np.c_[(x - mean) / std, np.ones(len(x))]
        classes = np.unique(y)
        t = (np.asarray(y)[:, None] == classes[None]).astype(np.float64) * 2 - 1
        w = np.linalg.solve(a.T @ a + lam * np.eye(a.shape[1]), a.T @ t)
        return cls(classes, mean, std, w)

    def scores(self, x: np.ndarray) -> np.ndarray:
        """(N, K) one-vs-all scores."""
        x = np.asarray(x, np.float64)
        return np.c_[(x - self.mean) / self.std, np.ones(len(x))] @ self.weights

    def predict(self, x: np.ndarray) -> np.ndarray:
        """(N,) the best-scoring label of each row."""
        return self.classes[np.argmax(self.scores(x), 1)]


def ridge_probe(xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, lam: float = 1.0) -> np.ndarray:
    """Predicted classes of `xte` by a ridge classifier fitted on (xtr, ytr)."""
    return Ridge.fit(xtr, ytr, lam).predict(xte)


def ridge_regress(xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, lam: float = 1.0) -> np.ndarray:
    """Predictions for `xte` of a ridge regression from standardised features to targets (N,) or (N, K)."""
    xtr, xte = np.asarray(xtr, np.float64), np.asarray(xte, np.float64)
    ytr = np.asarray(ytr, np.float64).reshape(len(xtr), -1)
    mean, std = xtr.mean(0), xtr.std(0) + 1e-6
    a = np.c_[(xtr - mean) / std, np.ones(len(xtr))]
    w = np.linalg.solve(a.T @ a + lam * np.eye(a.shape[1]), a.T @ ytr)
    return np.c_[(xte - mean) / std, np.ones(len(xte))] @ w


def ridge_r2(xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, yte: np.ndarray, lam: float = 1.0) -> float:
    """R² on (xte, yte) of `ridge_regress`, pooled over the targets: 1 - Σ residual² / Σ (y - mean of ytr)².
    0 = no better than predicting the training mean."""
    ytr = np.asarray(ytr, np.float64).reshape(len(ytr), -1)
    yte = np.asarray(yte, np.float64).reshape(len(yte), -1)
    pred = ridge_regress(xtr, ytr, xte, lam)
    return float(1 - ((pred - yte) ** 2).sum() / (((yte - ytr.mean(0)) ** 2).sum() + 1e-12))
