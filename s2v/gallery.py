"""The gallery of seen actors: who a voice "recalls". Each entry: actor id, still image, sex, age
group, and the mean ν* (T_id embedding of the first frame) over the actor's training clips."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(B, A) cosine similarity of the rows of `a` to the rows of `b`."""
    a = a / (np.linalg.norm(a, axis=-1, keepdims=True) + 1e-8)
    return a @ (b / (np.linalg.norm(b, axis=-1, keepdims=True) + 1e-8)).T


@dataclass
class Gallery:
    ids: list[str]
    embeddings: np.ndarray  # (A, D) mean ν* per actor
    stills: np.ndarray  # (A, H, W, 3) uint8
    actors: dict[str, dict]  # id -> {sex, age_group, ...}
    voice: np.ndarray | None = None  # (A, D) mean student ν over the actor's training clips (what stage 2 saw)

    @classmethod
    def build(cls, data, targets: dict) -> "Gallery":
        """From a `Prepared` dataset and its teacher targets: the actors with training clips."""
        train = data.split("train")
        ids = sorted({data.clips[i]["actor"] for i in train}, key=str)
        emb = np.stack([targets["nu_star"][[i for i in train if data.clips[i]["actor"] == a]].mean(0) for a in ids])
        stills = np.stack([data.still(a) for a in ids])
        info = {a: {"sex": data.index["actors"][a].get("sex", ""),
                    "age_group": data.index["actors"][a].get("age_group", ""),
                    "age": data.index["actors"][a].get("age", 0)} for a in ids}
        return cls(ids, emb.astype(np.float32), stills, info)

    def similarity(self, nu: np.ndarray) -> np.ndarray:
        """(B, A) cosine similarity of each ν to each actor's mean ν*."""
        return _cosine(nu, self.embeddings)

    def nearest(self, nu: np.ndarray) -> np.ndarray:
        """(B,) the id of the nearest seen actor for each ν."""
        return np.array(self.ids)[np.argmax(self.similarity(np.atleast_2d(nu)), 1)]

    def recall(self, nu: np.ndarray, temperature: float) -> np.ndarray:
        """Soft nearest seen identity: Σ_a softmax(cos(ν, v_a) / T)_a v_a for each row of `nu`, where v_a is
        the actor's mean student ν (`voice`, the inputs the generator was trained on) or, without it, the
        mean ν*. A small T gives the nearest actor's; ties blend. Beyond the paper: with few training
        identities the generator has only learnt faces near them, so a voice unlike every seen one is
        mapped onto them."""
        s = _cosine(np.atleast_2d(nu), self.recall_targets) / temperature
        w = np.exp(s - s.max(1, keepdims=True))
        return self.mix(w / w.sum(1, keepdims=True))

    @property
    def recall_targets(self) -> np.ndarray:
        """(A, D) what recall maps a voice onto: each actor's mean student ν (`voice`), else its mean ν*."""
        return self.embeddings if self.voice is None else self.voice

    def mix(self, weights: np.ndarray) -> np.ndarray:
        """Σ_a w_a v_a over the recall targets, for weights (..., A) over the seen actors."""
        return (np.asarray(weights) @ self.recall_targets).astype(np.float32)

    def with_voice(self, data, nu: np.ndarray, ids: list[int]) -> "Gallery":
        """Set `voice` from the students' ν of clips `ids` (rows of `nu`) of a `Prepared` dataset."""
        actors = np.array([data.clips[i]["actor"] for i in ids])
        self.voice = np.stack([nu[actors == a].mean(0) if (actors == a).any() else self.embeddings[k]
                               for k, a in enumerate(self.ids)]).astype(np.float32)
        return self

    def save(self, directory: str | os.PathLike) -> None:
        from safetensors.numpy import save_file

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        arrays = {"embeddings": self.embeddings, "stills": self.stills}
        if self.voice is not None:
            arrays["voice"] = self.voice
        save_file(arrays, str(d / "gallery.safetensors"))
        (d / "gallery.json").write_text(json.dumps({"ids": self.ids, "actors": self.actors}, indent=1))

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "Gallery":
        from safetensors.numpy import load_file

        d = Path(directory)
        meta = json.loads((d / "gallery.json").read_text())
        arrays = load_file(str(d / "gallery.safetensors"))
        return cls(meta["ids"], arrays["embeddings"], arrays["stills"], meta["actors"], arrays.get("voice"))
