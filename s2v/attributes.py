"""Attribute judges: the sex and age group of a face, by a small network trained on a labelled face pool.

    python -m s2v.attributes --faces data/faces-judge --judge runs/judge

trains `AttributeJudge` (a small VGG trunk, global average pooling, one linear head per attribute) on a
labelled face pool (`python -m s2v.corpus faces`; its labels.csv has sex and age_group) minus a held-out
fifth of its identities, reports its accuracy on those held-out identities, and saves it in
JUDGE/attributes/ beside the held-out identity judge, where the evaluation finds it. The evaluation uses it
to tell the sex and age group of generated faces, with its accuracy on the real frames of the same clips as
the ceiling. Training augments each image (flip, shift, light, blur), so that a blurred or shifted
generated face is read as its real counterpart would be; no corpus face and no generator output is seen.

Replaces ridge classifiers on the identity judge's pooled feature maps, which read the corpus' real stills'
sex right only 0.67-0.75 of the time (docs/evaluation.md).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .labels import AGE_GROUPS
from .modeling import Pretrained
from .teachers import _Input

ATTRIBUTES = ("sex", "age_group")
CLASSES = {"sex": ("Female", "Male"), "age_group": AGE_GROUPS}


def load_identity_judge(directory: str | os.PathLike):
    """A frozen identity network from a teachers folder (DIR/identity) or from its identity folder itself."""
    from .modeling import freeze
    from .teachers import IdentityTeacher

    d = Path(directory)
    return freeze(IdentityTeacher.from_pretrained(d / "identity" if (d / "identity").is_dir() else d))


@torch.no_grad()
def embed_images(t_id, frames: np.ndarray, device, batch: int = 256) -> np.ndarray:
    """(N, H, W, 3) uint8 (numpy, or a tensor on any device) -> (N, D) L2-normalised embeddings."""
    from .targets import images

    out = [torch.nn.functional.normalize(t_id.embed(images(frames[s:s + batch], device)), dim=-1).cpu().numpy()
           for s in range(0, len(frames), batch)]
    return np.concatenate(out) if out else np.zeros((0, t_id.config.embed_dim), np.float32)


@dataclass(frozen=True)
class AttributeConfig:
    blocks: tuple[tuple[int, ...], ...] = ((16, 16), (32, 32), (64, 64), (128, 128))
    image_size: int = 64
    attributes: tuple[str, ...] = ATTRIBUTES
    classes: tuple[tuple[str, ...], ...] = tuple(CLASSES[a] for a in ATTRIBUTES)
    dropout: float = 0.3
    mean: tuple[float, float, float] = (127.5, 127.5, 127.5)
    std: tuple[float, float, float] = (64.0, 64.0, 64.0)
    grey: bool = False


class AttributeJudge(_Input, Pretrained):
    """`forward(x)` -> {attribute: (B, classes) logits} for (B, 3, H, W) images in [0, 1] (any size: resized to
    the network's); `predict_proba(frames)` / `predict(frames)` for uint8 (N, H, W, 3) frames."""

    config_class = AttributeConfig
    model_type = "s2v-attribute-judge"

    def __init__(self, config: AttributeConfig = AttributeConfig()):
        super().__init__()
        self.config = config
        layers, c_in = [], 3
        for chans in config.blocks:
            for c_out in chans:
                layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
                c_in = c_out
            layers.append(nn.MaxPool2d(2))
        self.trunk = nn.Sequential(*layers)
        self.drop = nn.Dropout(config.dropout)
        self.heads = nn.ModuleDict({a: nn.Linear(c_in, len(c)) for a, c in zip(config.attributes, config.classes)})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.drop(self.trunk(self._prep(x)).mean((2, 3)))
        return {a: head(h) for a, head in self.heads.items()}

    @torch.no_grad()
    def predict_proba(self, frames, batch: int = 256) -> dict[str, np.ndarray]:
        """(N, H, W, 3) uint8 (numpy or a tensor on any device) -> {attribute: (N, classes) probabilities}, on the
        network's own device."""
        from .targets import images

        device = next(self.parameters()).device
        self.eval()
        out = {a: [] for a in self.config.attributes}
        for s in range(0, len(frames), batch):
            for a, logits in self(images(frames[s:s + batch], device)).items():
                out[a].append(logits.softmax(1).float().cpu().numpy())
        return {a: np.concatenate(v) if v else np.zeros((0, len(c)), np.float32)
                for (a, v), c in zip(out.items(), self.config.classes)}

    def labels(self, proba: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """{attribute: (N, classes) probabilities} -> {attribute: (N,) labels}."""
        return {a: np.array(c)[np.argmax(proba[a], 1)] for a, c in zip(self.config.attributes, self.config.classes)}

    def predict(self, frames) -> dict[str, np.ndarray]:
        """(N, H, W, 3) uint8 -> {attribute: (N,) labels}."""
        return self.labels(self.predict_proba(frames))

    @property
    def accuracy(self) -> dict[str, float]:
        """Accuracy on the pool's held-out identities, as measured when it was trained."""
        return dict(getattr(self, "_meta", {}).get("accuracy_heldout", {}))


def load_attributes(directory: str | os.PathLike) -> AttributeJudge | None:
    """The attribute judge in DIR (or DIR/attributes), frozen; None when there is none."""
    from .modeling import freeze

    d = Path(directory)
    d = d / "attributes" if (d / "attributes").is_dir() else d
    if not (d / "config.json").exists():
        if (d / "attributes.json").exists():
            raise ValueError(f"{d} holds ridge attribute classifiers of an earlier version: train the attribute "
                             f"judge again with python -m s2v.attributes --faces POOL --out {d}")
        return None
    judge = freeze(AttributeJudge.from_pretrained(d))
    judge._meta = AttributeJudge.read_meta(d)
    return judge


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """(B, 3, H, W) in [0, 1]: random flip, shift (±6 % of the side) and scale (±6 %), light (gain, offset,
    colour), and blur (half the images, a 3x3 or 5x5 box)."""
    b, _, h, w = x.shape
    r = lambda *s: torch.rand(*s, generator=gen).to(x.device)  # noqa: E731
    flip = r(b) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    scale = 1 + (r(b) - 0.5) * 0.12
    theta = torch.zeros(b, 2, 3, device=x.device)
    theta[:, 0, 0] = theta[:, 1, 1] = 1 / scale
    theta[:, :, 2] = (r(b, 2) - 0.5) * 0.12
    x = F.grid_sample(x, F.affine_grid(theta, list(x.shape), align_corners=False), padding_mode="border",
                      align_corners=False)
    x = x * (0.8 + 0.4 * r(b, 1, 1, 1)) * (0.92 + 0.16 * r(b, 3, 1, 1)) + (r(b, 1, 1, 1) - 0.5) * 0.1
    k = 3 + 2 * (r(b) < 0.5).long()
    blurred = {s: F.avg_pool2d(F.pad(x, [s // 2] * 4, mode="replicate"), s, 1) for s in (3, 5)}
    pick = torch.where((k == 3)[:, None, None, None], blurred[3], blurred[5])
    x = torch.where((r(b) < 0.5)[:, None, None, None], pick, x)
    return x.clamp(0, 1)


def read_pool(faces: str | os.PathLike) -> tuple[np.ndarray, list[dict]]:
    """A labelled face pool: (N, H, W, 3) uint8 images and their labels.csv rows."""
    import cv2

    faces = Path(faces)
    if not (faces / "labels.csv").exists():
        raise FileNotFoundError(f"{faces}/labels.csv not found: make a pool with python -m s2v.corpus faces")
    rows = list(csv.DictReader(open(faces / "labels.csv")))
    if not rows:
        raise ValueError(f"{faces}/labels.csv is empty")
    return np.stack([cv2.imread(str(faces / r["file"]))[..., ::-1] for r in rows]), rows


def fit_attributes(faces: str | os.PathLike, device="cpu", epochs: int = 10, batch: int = 64, lr: float = 2e-3,
                   holdout: float = 0.2, seed: int = 0, config: AttributeConfig | None = None,
                   progress: bool = True) -> AttributeJudge:
    """Train an `AttributeJudge` on a labelled face pool, all but a held-out fifth of its identities; its
    `accuracy` is measured on those held-out identities."""
    from tqdm.auto import tqdm

    from .targets import images

    frames, rows = read_pool(faces)
    ids = sorted({r["identity"] for r in rows})
    held = set(np.random.default_rng(seed).permutation(ids)[:max(1, int(round(holdout * len(ids))))].tolist())
    if len(held) >= len(ids):
        raise ValueError(f"{faces} has {len(ids)} identities: too few to hold out a fifth and train on the rest")
    test = np.array([r["identity"] in held for r in rows])
    config = config or AttributeConfig(image_size=frames.shape[1])
    y = {a: torch.tensor([list(c).index(r[a]) for r in rows]) for a, c in zip(config.attributes, config.classes)}
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = AttributeJudge(config).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-3)
    train = np.flatnonzero(~test)
    steps = epochs * max(1, len(train) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps, pct_start=0.2)
    bar = tqdm(total=steps, desc="attributes", disable=not progress)
    for _ in range(epochs):
        order = train[torch.randperm(len(train), generator=gen).numpy()]
        for s in range(0, len(order) - batch + 1, batch):
            idx = order[s:s + batch]
            net.train()
            logits = net(augment(images(frames[idx], device), gen))
            loss = sum(F.cross_entropy(logits[a], y[a][idx].to(device)) for a in config.attributes)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update()
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    proba = net.predict_proba(frames[test])
    net._meta = {"accuracy_heldout": {a: round(float(np.mean(proba[a].argmax(1) == y[a][test].numpy())), 4)
                                      for a in config.attributes},
                 "faces": str(faces), "identities": len(ids), "heldout_identities": len(held), "epochs": epochs}
    return net


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m s2v.attributes", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--faces", required=True, help="a labelled face pool (python -m s2v.corpus faces)")
    p.add_argument("--judge", default=None, help="the held-out identity judge's folder: saves in JUDGE/attributes")
    p.add_argument("--out", default=None, help="where to save (default: JUDGE/attributes)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    a = p.parse_args(argv)
    if not (a.out or a.judge):
        p.error("give --judge (saves in JUDGE/attributes) or --out")
    device = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        net = fit_attributes(a.faces, device, epochs=a.epochs, seed=a.seed)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(a.out) if a.out else Path(a.judge) / "attributes"
    net.save_pretrained(out, card=f"# Attribute judge\n\nSex and age group of a face, trained on {a.faces} "
                        f"(python -m s2v.attributes).\nHeld-out identities' accuracy: {net.accuracy}\n",
                        extra=net._meta)
    print(json.dumps({"out": str(out), "accuracy_heldout": net.accuracy}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
