"""How familiar a voice is to the model, so that a read-out on a voice unlike any it learned from says
"uncertain" instead of a confident 0.9.

A voice's CPC statistics (the mean and the standard deviation over time of c_t, 2H numbers) are compared
with the training voices' by the Mahalanobis distance (covariance shrunk towards its mean variance, as
Ledoit and Wolf). The threshold is the 99th percentile of the distance over clips no stage trained on
(the unseen actors' clips, else the test clips): a voice at or below it is familiar; above it, the
emotion read-out is blended towards the uniform, fully at twice the threshold (`confidence`).

    python -m s2v.familiar --data data24/prep64 --model checkpoints/default   # writes MODEL/stage1/familiarity/

On the bundle: corpus voices and the same at ±10 dB or through Opus sit below the threshold, a phone
line just above it, reverb, noise and real recorded voices at 2-3 times it (docs/evaluation.md).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SHRINK = 0.1  # weight of the scaled identity in the shrunk covariance
QUANTILE = 0.99  # of held-out corpus clips' distances: the threshold


def statistics(c: np.ndarray) -> np.ndarray:
    """(2H,) the mean and standard deviation over time of a clip's CPC context vectors c (T, H)."""
    c = np.asarray(c, np.float64)
    return np.concatenate([c.mean(0), c.std(0)])


@dataclass
class Familiarity:
    mean: np.ndarray  # (F,)
    precision: np.ndarray  # (F, F) inverse of the shrunk covariance
    threshold: float  # distance at or below which a voice counts as familiar
    info: dict = field(default_factory=dict)

    def distance(self, c: np.ndarray) -> float:
        """Mahalanobis distance of a clip's CPC statistics (c: (T, H)) from the training voices'."""
        return self.distance_of(statistics(c))

    def distance_of(self, stats: np.ndarray) -> float:
        """The same from the (2H,) statistics themselves."""
        z = np.asarray(stats, np.float64) - self.mean
        return float(np.sqrt(max(z @ self.precision @ z, 0.0)))

    def confidence(self, distance: float) -> float:
        """1 up to the threshold, falling linearly to 0 at twice the threshold."""
        return float(np.clip(2.0 - distance / self.threshold, 0.0, 1.0))

    def save(self, directory: str | os.PathLike) -> None:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        np.savez(d / "familiarity.npz", mean=self.mean.astype(np.float32), precision=self.precision.astype(np.float32))
        (d / "familiarity.json").write_text(json.dumps({"threshold": self.threshold, **self.info}, indent=1))

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "Familiarity":
        d = Path(directory)
        meta = json.loads((d / "familiarity.json").read_text())
        arr = np.load(d / "familiarity.npz")
        return cls(arr["mean"].astype(np.float64), arr["precision"].astype(np.float64), float(meta.pop("threshold")),
                   meta)


def fit(train: np.ndarray, held_out: np.ndarray, shrink: float = SHRINK, quantile: float = QUANTILE,
        info: dict | None = None) -> Familiarity:
    """From (N, F) statistics of training clips and (M, F) of clips no stage trained on."""
    train = np.asarray(train, np.float64)
    if len(train) < 2 or len(held_out) < 1:
        raise ValueError(f"need at least 2 training clips and 1 held-out clip, got {len(train)} and {len(held_out)}")
    mean = train.mean(0)
    cov = np.cov(train.T)
    cov = (1 - shrink) * cov + shrink * np.trace(cov) / len(cov) * np.eye(len(cov))
    fam = Familiarity(mean, np.linalg.inv(cov), 1.0, dict(info or {}))
    d = np.array([fam.distance_of(x) for x in held_out])
    fam.threshold = float(np.quantile(d, quantile))
    fam.info.update(shrink=shrink, quantile=quantile, train_clips=len(train), held_out_clips=len(held_out),
                    held_out_median=float(np.median(d)))
    return fam


def fit_model(data_dir, model, clips: int = 600, seed: int = 0, device: str = "cpu", progress: bool = True) -> Familiarity:
    """Fit on a prepared corpus with a model's stage 1: training clips for the statistics, the unseen
    actors' clips (else the test clips) for the threshold; saved to MODEL/stage1/familiarity/."""
    import torch
    from tqdm.auto import tqdm

    from .data import Prepared
    from .pipeline import Speech2Video, _stage1_dir

    data = Prepared(data_dir)
    pipe = Speech2Video.from_pretrained(model, device=device)
    rng = np.random.default_rng(seed)
    held = "unseen" if data.split("unseen") else "test"

    def stats(split):
        ids = data.split(split)
        ids = rng.choice(ids, min(clips, len(ids)), replace=False) if len(ids) > clips else ids
        out = []
        for i in tqdm(ids, desc=f"familiarity: {split} clips", disable=not progress):
            with torch.no_grad():
                c, _ = pipe.cpc(torch.from_numpy(data.audio(int(i)))[None].to(pipe.device))
            out.append(statistics(c[0].float().cpu().numpy()))
        return np.stack(out)

    fam = fit(stats("train"), stats(held), info={"data": str(data_dir), "held_out_split": held})
    fam.save(_stage1_dir(Path(model)) / "familiarity")
    return fam


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="the prepared corpus the model was trained on")
    p.add_argument("--model", required=True, help="model folder (its stage1/ gets familiarity/)")
    p.add_argument("--clips", type=int, default=600, help="clips per split at most")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    fam = fit_model(args.data, args.model, args.clips, args.seed)
    from .bundle import add_part

    add_part(args.model, "stage1/familiarity", "how far a voice's CPC statistics are from the training voices' "
             "(`python -m s2v.familiar`); beyond the threshold the emotion read-out is marked uncertain")
    print(json.dumps({"threshold": fam.threshold, **fam.info}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
