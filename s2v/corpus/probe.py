"""`python -m s2v.corpus probe`: is the learning problem real? Linear probes on simple audio features.

Utterance features: mean and standard deviation over time of 40 log-mel bands, plus loudness and
duration. A ridge classifier trained on 70% of the seen actors' clips is tested on the rest
(speaker: which seen actor; emotion: which of the six) and on unseen actors (sex, age group, from
a probe trained on the seen actors). Chance levels are printed beside each figure. If speaker or
emotion were trivial (≈1.0 from a linear probe on crude features) or hopeless (≈ chance), the
corpus would not test what the paper's stage 1 has to learn.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..audio import SAMPLE_RATE, load_audio


def utterance_features(audio: np.ndarray) -> np.ndarray:
    import torchaudio

    mel = torchaudio.transforms.MelSpectrogram(SAMPLE_RATE, n_fft=512, hop_length=160, n_mels=40)
    x = torch.from_numpy(audio)
    m = torch.log(mel(x) + 1e-5)  # (40, frames)
    energy = m.exp().sum(0)
    voiced = m[:, energy > energy.max() * 1e-3]
    return np.concatenate([voiced.mean(1).numpy(), voiced.std(1).numpy(),
                           [float(np.log(np.mean(audio ** 2) + 1e-9)), audio.size / SAMPLE_RATE]])


def ridge_probe(xtr, ytr, xte, lam: float = 1.0) -> np.ndarray:
    """Predicted classes of `xte` by one-vs-all ridge regression on standardised features."""
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
    a, b = (xtr - mu) / sd, (xte - mu) / sd
    classes = np.unique(ytr)
    y = (ytr[:, None] == classes[None]).astype(np.float64) * 2 - 1
    a1 = np.c_[a, np.ones(len(a))]
    w = np.linalg.solve(a1.T @ a1 + lam * np.eye(a1.shape[1]), a1.T @ y)
    return classes[np.argmax(np.c_[b, np.ones(len(b))] @ w, 1)]


def probe(corpus: str | Path, progress: bool = True) -> dict:
    from tqdm.auto import tqdm

    corpus = Path(corpus)
    meta = json.loads((corpus / "actors.json").read_text())
    actors = {str(a["id"]): a for a in meta["actors"]}
    rows = []
    for wav in tqdm(sorted((corpus / "AudioWAV").glob("*.wav")), desc="features", disable=not progress):
        actor, _, emotion, _ = wav.stem.split("_")
        rows.append((utterance_features(load_audio(wav)), actor, emotion))
    x = np.stack([r[0] for r in rows])
    actor = np.array([r[1] for r in rows])
    emo = np.array([r[2] for r in rows])
    seen = np.array([actors[a]["split"] == "seen" for a in actor])
    rng = np.random.default_rng(0)
    train = seen & (rng.random(len(rows)) < 0.7)
    test = seen & ~train
    unseen = ~seen
    sex = np.array([actors[a]["sex"] for a in actor])
    age = np.array([actors[a]["age_group"] for a in actor])
    acc = lambda pred, y: round(float(np.mean(pred == y)), 3)
    out = {
        "clips": len(rows),
        "speaker_top1_seen_test": acc(ridge_probe(x[train], actor[train], x[test]), actor[test]),
        "speaker_chance": round(1 / len(set(actor[seen])), 3),
        "emotion_seen_test": acc(ridge_probe(x[train], emo[train], x[test]), emo[test]),
        "emotion_unseen": acc(ridge_probe(x[train], emo[train], x[unseen]), emo[unseen]) if unseen.any() else None,
        "emotion_chance": round(1 / len(set(emo)), 3),
    }
    if unseen.any():
        out["sex_unseen"] = acc(ridge_probe(x[seen], sex[seen], x[unseen]), sex[unseen])
        out["age_group_unseen"] = acc(ridge_probe(x[seen], age[seen], x[unseen]), age[unseen])
    return out
