"""`python -m s2v.corpus faces`: a labelled face pool for training the face teachers.

Identities are drawn from a random stream no corpus actor uses (ids from 9001), so a teacher never
sees a corpus face. Each image has a random emotion at a random intensity, a random viseme, a
random blink and head pose. Output: `images/<identity>_<k>.png` and `labels.csv` (file, identity,
emotion, intensity, sex, age_group, viseme), plus `identities.json` (the drawn parameters).

With `stills`, each identity gets one image as the corpus renders an actor's still (neutral, mouth closed,
head still, eyes open: `s2v.corpus.make.still`), and `traits` draws the identities as the corpus draws its
actors (3: with a region, whose odds set the colouring): a pool of faces for stage 2's face decoder
(`train/stage2.py --face-pool`), which needs no voice.
"""
from __future__ import annotations

import csv
import json
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from ..labels import EMOTIONS
from .actors import EXPRESSION, TRAITS, sample_actor
from .face import FaceRenderer, Mouth, Pose
from .motion import VISEME_NAMES, VISEMES

POOL_FIRST_ID = 9001


def pool_identity(i: int, seed: int, traits: int = TRAITS):
    """The i-th pool identity (sexes alternate, ages uniform 20-74)."""
    rng = np.random.default_rng([seed, POOL_FIRST_ID + i, 99])
    sex = "Male" if i % 2 == 0 else "Female"
    return sample_actor(POOL_FIRST_ID + i, "pool", rng, sex, int(rng.integers(20, 75)), traits=traits)


def _identity_images(args) -> list[dict]:
    i, per, size, seed, out, traits, stills = args
    actor = pool_identity(i, seed, traits)
    if stills:
        from .make import still

        name = f"{actor.id}.png"
        cv2.imwrite(str(Path(out) / "images" / name), still(actor, size)[..., ::-1])
        return [{"file": f"images/{name}", "identity": actor.id, "emotion": "NEU", "intensity": 0.0,
                 "sex": actor.sex, "age_group": actor.age_group, "viseme": "rest", "region": actor.region}]
    rng = np.random.default_rng([seed, actor.id, 100])
    rows = []
    for k in range(per):
        emo = EMOTIONS[k % len(EMOTIONS)] if per >= len(EMOTIONS) else EMOTIONS[rng.integers(len(EMOTIONS))]
        level = 0.0 if emo == "NEU" else float(rng.uniform(0.5, 1.0))
        vis = VISEME_NAMES[rng.integers(len(VISEME_NAMES))]
        o, w, c, t = VISEMES[vis]
        mouth = Mouth(open=o * rng.uniform(0.6, 1.1), width=w, close=c, teeth=t)
        pose = Pose(dx=rng.normal(0, 0.03), dy=rng.normal(0, 0.02), roll=rng.normal(0, 2.5),
                    blink=float(rng.random() < 0.1))
        img = FaceRenderer(actor.face, EXPRESSION[emo].scaled(level), size).frame(mouth, pose)
        name = f"{actor.id}_{k:03d}.png"
        cv2.imwrite(str(Path(out) / "images" / name), img[..., ::-1])
        rows.append({"file": f"images/{name}", "identity": actor.id, "emotion": emo, "intensity": round(level, 3),
                     "sex": actor.sex, "age_group": actor.age_group, "viseme": vis})
    return rows


def make_faces(out: str | os.PathLike, identities: int = 200, per_identity: int = 24, size: int = 64,
               seed: int = 0, workers: int | None = None, progress: bool = True, traits: int = TRAITS,
               stills: bool = False) -> dict:
    """Render the pool into `out` (`stills`: one still per identity, `per_identity` ignored); returns a summary."""
    from tqdm.auto import tqdm

    if identities < 2 or per_identity < 1:
        raise ValueError("--identities must be >= 2 and --per-identity >= 1")
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    jobs = [(i, per_identity, size, seed, str(out), traits, stills) for i in range(identities)]
    rows: list[dict] = []
    workers = workers or os.cpu_count() or 1
    with tqdm(total=identities, desc="identities", disable=not progress) as bar:
        if workers == 1:
            for j in jobs:
                rows += _identity_images(j)
                bar.update()
        else:
            with ProcessPoolExecutor(workers) as pool:
                for r in pool.map(_identity_images, jobs, chunksize=4):
                    rows += r
                    bar.update()
    with open(out / "labels.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (out / "identities.json").write_text(json.dumps(
        {"seed": seed, "size": size, "traits": traits, "stills": stills,
         "identities": [pool_identity(i, seed, traits).to_json() for i in range(identities)]},
        indent=1))
    return {"images": len(rows), "identities": identities, "out": str(out)}
