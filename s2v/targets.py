"""Teacher targets for a prepared dataset, computed once and stored beside the shards.

    python -m s2v.targets --data PREP --teachers TEACHERS_DIR [--k 8]

writes PREP/targets.npz and PREP/targets.json:
  nu_star      (clips, D)   T_id fc7 of the clip's first frame (paper: nu* = T_id(phi_0))
  mu_star      (clips, 6)   T_emo logits averaged over K random frames (eq. 1), CREMA-D order
  still_nu     (actors, D)  T_id fc7 of each actor's still
  still_map0..2 (actors, C, H, W) float16  T_id feature maps of the still, coarse to fine: the
                            "real" side of D_ID (eq. 4)
so stages 1 and 2 never run the teachers in their loops.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

from .data import Prepared, as_tensor
from .modeling import fingerprint
from .teachers import EmotionTeacher, IdentityTeacher, load_teachers


TEACHER_PARTS = ("identity", "emotion")


def images(frames, device) -> torch.Tensor:
    """(B, H, W, 3) uint8, numpy or a tensor on any device -> (B, 3, H, W) float in [0, 1] on `device`."""
    return as_tensor(frames).to(device).permute(0, 3, 1, 2).float().div(255)


@torch.no_grad()
def compute_targets(prep: str | os.PathLike, t_id: IdentityTeacher, t_emo: EmotionTeacher, k: int = 8,
                    seed: int = 0, batch: int = 256, device: str = "cpu", progress: bool = True) -> dict:
    """All targets as numpy arrays (see the module doc)."""
    from tqdm.auto import tqdm

    data = Prepared(prep)
    t_id, t_emo = t_id.to(device).eval(), t_emo.to(device).eval()
    rng = np.random.default_rng(seed)
    picks = []
    for i, c in enumerate(data.clips):
        n = c["n_frames"]
        picks.append(np.sort(rng.choice(n, size=min(k, n), replace=False)))
    nu, mu = [], []
    chunk = max(1, batch // (k + 1))
    for s in tqdm(range(0, len(data.clips), chunk), desc="teacher targets", disable=not progress):
        idx = range(s, min(s + chunk, len(data.clips)))
        first = np.stack([data.frames(i, 0, 1)[0] for i in idx])
        nu.append(t_id.embed(images(first, device)).float().cpu().numpy())
        frames = [np.asarray(data.frames(i))[picks[i]] for i in idx]
        logits = t_emo.crema_logits(images(np.concatenate(frames), device)).float().cpu().numpy()
        bounds = np.cumsum([0] + [len(f) for f in frames])
        mu += [logits[a:b].mean(0) for a, b in zip(bounds[:-1], bounds[1:])]
    stills = np.stack([data.still(a) for a in data.actors])
    x = images(stills, device)
    out = {"nu_star": np.concatenate(nu).astype(np.float32), "mu_star": np.stack(mu).astype(np.float32),
           "still_nu": t_id.embed(x).float().cpu().numpy()}
    for j, m in enumerate(t_id.features(x)):
        out[f"still_map{j}"] = m.cpu().numpy().astype(np.float16)
    out["emo_frames"] = np.array([",".join(map(str, p)) for p in picks])
    return out


def write_targets(prep: str | os.PathLike, teachers: str | os.PathLike, k: int = 8, seed: int = 0,
                  device: str | None = None, progress: bool = True) -> dict:
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    t_id, t_emo = load_teachers(teachers)
    arrays = compute_targets(prep, t_id, t_emo, k, seed, device=device, progress=progress)
    prep = Path(prep)
    tmp = prep / "targets.tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, prep / "targets.npz")
    meta = {"teachers": str(Path(teachers).resolve()), "fingerprint": fingerprint(teachers, TEACHER_PARTS), "k": k,
            "seed": seed,
            "shapes": {n: list(a.shape) for n, a in arrays.items()}}
    (prep / "targets.json").write_text(json.dumps(meta, indent=1))
    return meta


@torch.no_grad()
def pool_targets(pool: str | os.PathLike, teachers: str | os.PathLike, size: int, device: str = "cpu",
                 batch: int = 256) -> dict[str, np.ndarray]:
    """A face pool's images (`python -m s2v.corpus faces --stills`; labels.csv) with their teacher targets, for
    stage 2's face decoder (train/stage2.py --face-pool): `images` (N, size, size, 3) uint8, `nu_star` (N, D) T_id
    fc7 of each image, `mu_star` (N, 6) T_emo's logits of it (one image: its own μ*)."""
    import csv

    import cv2

    pool = Path(pool)
    labels = pool / "labels.csv"
    if not labels.exists():
        raise FileNotFoundError(f"{labels} not found: make a pool with `python -m s2v.corpus faces --stills --out {pool}`")
    with open(labels) as f:
        files = [r["file"] for r in csv.DictReader(f)]
    imgs = []
    for name in files:
        img = cv2.imread(str(pool / name))
        if img is None:
            raise FileNotFoundError(f"{pool / name} (listed in {labels}) cannot be read")
        if img.shape[:2] != (size, size):
            img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
        imgs.append(img[..., ::-1])
    images_ = np.ascontiguousarray(np.stack(imgs))
    t_id, t_emo = load_teachers(teachers)
    t_id, t_emo = t_id.to(device).eval(), t_emo.to(device).eval()
    nu, mu = [], []
    for s in range(0, len(images_), batch):
        x = images(images_[s:s + batch], device)
        nu.append(t_id.embed(x).float().cpu().numpy())
        mu.append(t_emo.crema_logits(x).float().cpu().numpy())
    return {"images": images_, "nu_star": np.concatenate(nu), "mu_star": np.concatenate(mu)}


def load_targets(prep: str | os.PathLike) -> dict[str, np.ndarray]:
    path = Path(prep) / "targets.npz"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run `python -m s2v.targets --data {prep} --teachers DIR`")
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def stale_targets(prep: str | os.PathLike, teachers: str | os.PathLike, k: int = 8) -> str | None:
    """Why `prep`'s targets cannot be used with `teachers` (missing, or made by other teachers or another k),
    or None when they can."""
    prep = Path(prep)
    if not (prep / "targets.npz").exists():
        return "no targets.npz"
    meta = json.loads((prep / "targets.json").read_text()) if (prep / "targets.json").exists() else {}
    want = fingerprint(teachers, TEACHER_PARTS)
    if meta.get("fingerprint") != want:
        return f"targets.npz was made by teachers {meta.get('fingerprint')} ({meta.get('teachers')}), not {want} ({teachers})"
    if meta.get("k") != k:
        return f"targets.npz was made with k={meta.get('k')}, not {k}"
    return None


def ensure_targets(prep: str | os.PathLike, teachers: str | os.PathLike, accelerator, k: int = 8) -> dict:
    """The targets of `prep`, computed first (on the main process only) when they are missing or were made by
    other teachers (`stale_targets`, said once)."""
    why = stale_targets(prep, teachers, k)
    if why:
        if accelerator.is_main_process:
            if why != "no targets.npz":
                print(f"note: {why}; rebuilding them", file=sys.stderr)
            write_targets(prep, teachers, k=k, device=str(accelerator.device))
        accelerator.wait_for_everyone()
    return load_targets(prep)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m s2v.targets", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="prepared folder (python -m s2v.corpus prepare)")
    p.add_argument("--teachers", required=True, help="output folder of train/teachers.py")
    p.add_argument("--k", type=int, default=8, help="random frames averaged for mu* (eq. 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    a = p.parse_args(argv)
    try:
        meta = write_targets(a.data, a.teachers, a.k, a.seed, a.device)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(meta["shapes"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
