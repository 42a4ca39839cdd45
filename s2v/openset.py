"""Open-set voice→face scores: does a face made from a voice pick out its speaker among others?

Given one embedding per query (a generated face, or a face embedding predicted from a voice), the
index of its true speaker, and the embeddings of every candidate speaker's real still (all by a
judge no training step saw), by cosine similarity:
  match_1to2   the share of (query, other candidate) pairs in which the true still is the nearer
               of the two (the voice→face matching task of Nagrani et al.; chance 0.5)
  r_at_k       the share of queries whose true still ranks within the k nearest (chance k / A)
"""
from __future__ import annotations

import numpy as np


def normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / (np.linalg.norm(x, axis=-1, keepdims=True) + 1e-12)


def ranks(queries: np.ndarray, truth: np.ndarray, candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N,) how many candidates are strictly nearer than the true one (0 = top), and (N,) how many
    others are farther (ties count half), for queries (N, D), truth (N,) indices into candidates (A, D)."""
    s = normalise(queries) @ normalise(candidates).T  # (N, A)
    t = s[np.arange(len(s)), truth][:, None]
    nearer = (s > t).sum(1)
    farther = (s < t).sum(1) + 0.5 * ((s == t).sum(1) - 1)
    return nearer, farther


def per_query(queries: np.ndarray, truth: np.ndarray, candidates: np.ndarray, ks=(1, 5)) -> dict[str, np.ndarray]:
    """Each query's 1:2 matching share and R@k hits: {"match_1to2": (N,), "r_at_k": (N,) 0/1}."""
    queries, truth = np.atleast_2d(queries), np.asarray(truth)
    a = len(candidates)
    if a < 2:
        raise ValueError("open-set scores need at least two candidate speakers")
    nearer, farther = ranks(queries, truth, candidates)
    return {"match_1to2": farther / (a - 1), **{f"r_at_{k}": (nearer < k).astype(np.float64) for k in ks}}


def match_scores(queries: np.ndarray, truth: np.ndarray, candidates: np.ndarray, ks=(1, 5)) -> dict:
    """1:2 matching, R@k and their chance levels over all queries (see the module doc)."""
    out = {k: float(v.mean()) for k, v in per_query(queries, truth, candidates, ks).items()}
    out.update(match_1to2_chance=0.5, candidates=len(candidates), **{f"r_at_{k}_chance": min(1.0, k / len(candidates))
                                                                     for k in ks})
    return out
