"""`python -m s2v.evaluate`: the paper's Table 1 on a prepared dataset, plus whether a voice was "recollected".

    python -m s2v.evaluate --data data/prep64 --model checkpoints/default --out runs/eval --baselines

Rows (one per method and split; splits: the seen actors' test clips and the unseen actors' clips):
  ground-truth   the real frames: the ceiling of the sync and teacher metrics
  s2v            ν and μ from the voice, ν recalled onto the seen actors (the pipeline's default)
  s2v-raw-nu     ν from the voice fed as is (the paper's form)
  reference      ν* of the speaker's own still (the analogue of SDFA's reference image), μ from the voice
  mismatch       ν* of another actor's still (SDFA(mismatch))
  mean-face      the mean ν* of the seen actors
  s2f-like       `--ablation DIR`: a stage 2 trained without the identity branch and D_ID
Columns: SSIM and PSNR against the real frames; LSE-C, LSE-D and the share of clips whose sync offset
is within ±1 frame (the sync expert, `--syncnet`); identity top-1 (T_id on the generated frames: is
the nearest seen actor the speaker), emotion agreement (T_emo's class on the generated frames vs the
label), and on unseen actors whether the nearest seen actor has the speaker's sex and age group.
`--emotion-judge DIR` adds the emotion agreement by a second emotion network that took no part in
training (a teachers folder or its emotion/), for when T_emo was also a training loss
(`train/stage2.py --lambda-expr`).

Writes OUT/results.json, OUT/results.md (the table) and OUT/strip.png (real above generated frames,
a seen and an unseen voice). Clips are a seeded sample (`--limit N` per split).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

from .corpus.actors import EMOTIONS
from .targets import images

METHODS = ("ground-truth", "s2v", "s2v-raw-nu", "reference", "mismatch", "mean-face", "s2f-like")
SPLITS = {"test": "seen (test clips)", "unseen": "unseen actors"}


# --------------------------------------------------------------------------------------- metrics

def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM (Gaussian window σ = 1.5, as Wang et al.) over the frames of two (T, H, W, 3) or
    (H, W, 3) uint8 arrays."""
    from skimage.metrics import structural_similarity

    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    if a.ndim == 3:
        a, b = a[None], b[None]
    return float(np.mean([structural_similarity(x, y, channel_axis=-1, data_range=255, gaussian_weights=True,
                                                sigma=1.5, use_sample_covariance=False) for x, y in zip(a, b)]))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB over all frames (data range 255); identical inputs give math.inf."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    mse = float(np.mean((a - b) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def _mean(values) -> float | None:
    v = [x for x in values if x is not None]
    return float(np.mean(v)) if v else None


# ------------------------------------------------------------------------------------ evaluation

class Judges:
    """The face teachers (identity, emotion) and the sync expert that score a clip."""

    def __init__(self, teachers: str | Path, syncnet: str | Path | None, gallery, device,
                 emotion_judge: str | Path | None = None):
        from .syncnet import SyncNet
        from .teachers import load_emotion_teacher, load_teachers

        self.t_id, self.t_emo = (t.to(device) for t in load_teachers(teachers))
        self.t_emo2 = load_emotion_teacher(emotion_judge).to(device) if emotion_judge else None
        self.sync = SyncNet.from_pretrained(syncnet).to(device).eval() if syncnet else None
        self.gallery, self.device = gallery, device

    @torch.no_grad()
    def still_nu(self, still: np.ndarray) -> np.ndarray:
        return self.t_id.embed(images(still[None], self.device))[0].cpu().numpy()

    @torch.no_grad()
    def score(self, frames: np.ndarray, audio: np.ndarray, fps: float, k: int = 8) -> dict:
        from .syncnet import sync_scores

        pick = np.linspace(0, len(frames) - 1, min(k, len(frames))).round().astype(int)
        x = images(frames[pick], self.device)
        emb = self.t_id.embed(x).mean(0, keepdim=True).cpu().numpy()
        out = {"nearest": str(self.gallery.nearest(emb)[0]),
               "emotion": int(self.t_emo.crema_logits(x).mean(0).argmax())}
        if self.t_emo2 is not None:
            out["emotion_heldout"] = int(self.t_emo2.crema_logits(x).mean(0).argmax())
        if self.sync is not None:
            s = sync_scores(self.sync, frames, audio, fps)
            out.update(lse_c=s["lse_c"], lse_d=s["lse_d"], offset=s["offset"])
        return out


def pick_clips(data, split: str, limit: int | None, seed: int) -> list[int]:
    ids = [i for i in data.split(split) if data.clips[i]["n_frames"] >= 10]
    if limit and len(ids) > limit:
        ids = sorted(np.random.default_rng(seed).choice(ids, size=limit, replace=False).tolist())
    return ids


@torch.no_grad()
def evaluate(data_dir, model, out, teachers=None, syncnet=None, splits=("test", "unseen"), limit=None,
             baselines=False, ablation=None, seed=0, device=None, progress=True, emotion_judge=None) -> dict:
    from tqdm.auto import tqdm

    from .data import Prepared
    from .features import AudioFeatures
    from .generator import generate_clip, to_uint8
    from .pipeline import Speech2Video

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    data = Prepared(data_dir)
    model = Path(model)
    pipe = Speech2Video.from_pretrained(model, device=device)
    teachers = Path(teachers) if teachers else _find(model, "teachers")
    syncnet = Path(syncnet) if syncnet else _find(model, "syncnet", required=False)
    judges = Judges(teachers, syncnet, pipe.gallery, device, emotion_judge)
    methods = ["ground-truth", "s2v"] + (["s2v-raw-nu"] if pipe.recall is not None else []) + (["reference", "mismatch", "mean-face"] if baselines else [])
    abl = None
    if ablation:
        abl = Speech2Video.from_pretrained(ablation, device=device)
        methods.append("s2f-like")
    mean_face = torch.from_numpy(pipe.gallery.embeddings.mean(0)).to(device)
    still_nu = {a: torch.from_numpy(judges.still_nu(data.still(a))).to(device) for a in data.actors}
    rng = np.random.default_rng(seed)
    per_clip, strip = [], {}
    for split in splits:
        ids = pick_clips(data, split, limit, seed)
        for i in tqdm(ids, desc=f"evaluate {split}", disable=not progress):
            clip = data.clips[i]
            actor, fps, n = clip["actor"], clip["fps"], clip["n_frames"]
            gt, audio = np.asarray(data.frames(i)), data.audio(i)
            c, nu, mu = (torch.from_numpy(x).to(device) for x in AudioFeatures.compute(pipe.cpc, pipe.students, audio,
                                                                                       device))
            others = [a for a in data.actors if a != actor]
            nus = {"s2v": pipe.identity(nu[None])[0], "s2v-raw-nu": nu, "reference": still_nu[actor], "mismatch": still_nu[others[rng.integers(len(others))]],
                   "mean-face": mean_face}
            for m in methods:
                if m == "ground-truth":
                    frames = gt
                elif m == "s2f-like":
                    c2, nu2, mu2 = (torch.from_numpy(x).to(device) for x in AudioFeatures.compute(
                        abl.cpc, abl.students, audio, device))
                    frames = to_uint8(generate_clip(abl.generator, c2, nu2, mu2, n, fps))
                else:
                    frames = to_uint8(generate_clip(pipe.generator, c, nus[m], mu, n, fps))
                row = {"clip": i, "split": split, "method": m, "actor": actor, **judges.score(frames, audio, fps)}
                if m != "ground-truth":
                    row.update(ssim=ssim(frames, gt), psnr=psnr(frames, gt))
                row["emotion_label"] = EMOTIONS.index(clip["emotion"]) if clip.get("emotion") in EMOTIONS else None
                per_clip.append(row)
                if m in ("ground-truth", "s2v") and split not in strip.get(m, {}):
                    strip.setdefault(m, {})[split] = frames
    results = summarise(per_clip, data, pipe.gallery)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    settings = {"data": str(data_dir), "model": str(model), "teachers": str(teachers),
                "syncnet": str(syncnet) if syncnet else None, "ablation": str(ablation) if ablation else None,
                "emotion_judge": str(emotion_judge) if emotion_judge else None,
                "splits": list(splits), "limit": limit, "baselines": baselines, "seed": seed}
    (out / "results.json").write_text(json.dumps({"settings": settings, "rows": _jsonable(results)}, indent=1))
    (out / "results.md").write_text(table(results, settings))
    if "ground-truth" in strip and "s2v" in strip:
        save_strip(out / "strip.png", strip)
    return {"settings": settings, "rows": results}


def _find(model: Path, name: str, required: bool = True) -> Path | None:
    """A judge's folder: inside the model folder, else the path its stage2.json records."""
    if (model / name).is_dir():
        return model / name
    meta = model / "stage2.json"
    if meta.exists():
        p = json.loads(meta.read_text()).get(name)
        if p and Path(p).is_dir():
            return Path(p)
    if required:
        raise SystemExit(f"error: no {name} folder in {model} and none recorded in its stage2.json; pass --{name}")
    print(f"note: no sync expert found ({model}/{name}); LSE columns left empty. Train one with train/syncnet.py",
          file=sys.stderr)
    return None


def summarise(per_clip: list[dict], data, gallery) -> list[dict]:
    rows = []
    info = data.index["actors"]
    for split in dict.fromkeys(r["split"] for r in per_clip):
        for m in dict.fromkeys(r["method"] for r in per_clip):
            rs = [r for r in per_clip if r["split"] == split and r["method"] == m]
            if not rs:
                continue
            row = {"method": m, "split": split, "clips": len(rs),
                   "ssim": _mean(r.get("ssim") for r in rs), "psnr": _mean(r.get("psnr") for r in rs),
                   "lse_c": _mean(r.get("lse_c") for r in rs), "lse_d": _mean(r.get("lse_d") for r in rs),
                   "in_sync": _mean(abs(r["offset"]) <= 1 if "offset" in r else None for r in rs)}
            labelled = [r for r in rs if r["emotion_label"] is not None]
            row["emotion_agreement"] = _mean(r["emotion"] == r["emotion_label"] for r in labelled)
            if any("emotion_heldout" in r for r in labelled):
                row["emotion_agreement_heldout"] = _mean(r["emotion_heldout"] == r["emotion_label"] for r in labelled)
            if split == "unseen":
                for key in ("sex", "age_group"):
                    row[f"unseen_{key}_agreement"] = _mean(
                        info[r["actor"]].get(key) == gallery.actors[r["nearest"]].get(key) for r in rs)
            else:
                row["identity_top1"] = _mean(r["nearest"] == r["actor"] for r in rs)
            rows.append(row)
    return rows


def _jsonable(rows):
    fix = lambda v: (None if v is None else "inf" if isinstance(v, float) and math.isinf(v)  # noqa: E731
                     else round(v, 4) if isinstance(v, float) else v)
    return [{k: fix(v) for k, v in r.items()} for r in rows]


def table(rows: list[dict], settings: dict) -> str:
    heldout = any(r.get("emotion_agreement_heldout") is not None for r in rows)
    cols = [("ssim", "SSIM ↑"), ("psnr", "PSNR ↑"), ("lse_c", "LSE-C ↑"), ("lse_d", "LSE-D ↓"),
            ("in_sync", "offset ≤1 ↑"), ("identity_top1", "identity top-1 ↑"), ("emotion_agreement", "emotion ↑"),
            *([("emotion_agreement_heldout", "emotion, held-out judge ↑")] if heldout else []),
            ("unseen_sex_agreement", "unseen sex ↑"), ("unseen_age_group_agreement", "unseen age ↑")]
    fmt = lambda v: "—" if v is None else ("∞" if isinstance(v, float) and math.isinf(v) else f"{v:.3f}")  # noqa: E731
    lines = ["| split | method | clips | " + " | ".join(c[1] for c in cols) + " |",
             "|" + "---|" * (3 + len(cols))]
    for r in rows:
        lines.append(f"| {SPLITS.get(r['split'], r['split'])} | {r['method']} | {r['clips']} | "
                     + " | ".join(fmt(r.get(c)) for c, _ in cols) + " |")
    s = settings
    cmd = (f"python -m s2v.evaluate --data {s['data']} --model {s['model']} --split {','.join(s['splits'])}"
           + (f" --limit {s['limit']}" if s.get("limit") else "") + (" --baselines" if s.get("baselines") else "")
           + (f" --ablation {s['ablation']}" if s.get("ablation") else "")
           + (f" --emotion-judge {s['emotion_judge']}" if s.get("emotion_judge") else "") + " --out OUT")
    return "\n".join(lines) + f"\n\nMade by `{cmd}`.\n"


def save_strip(path: Path, strip: dict, n: int = 8) -> None:
    """Rows: real and generated frames of a seen voice, then of an unseen voice; n frames each."""
    from PIL import Image, ImageDraw

    rows = []
    labels = []
    for split in ("test", "unseen"):
        for m in ("ground-truth", "s2v"):
            if split in strip.get(m, {}):
                f = strip[m][split]
                pick = np.linspace(0, len(f) - 1, n).round().astype(int)
                rows.append(np.concatenate(list(f[pick]), 1))
                labels.append(f"{SPLITS[split]}: {'real' if m == 'ground-truth' else 'generated'}")
    h = rows[0].shape[0]
    pad = 150
    img = Image.new("RGB", (rows[0].shape[1] + pad, h * len(rows)), "white")
    draw = ImageDraw.Draw(img)
    for k, (r, lab) in enumerate(zip(rows, labels)):
        img.paste(Image.fromarray(r), (pad, k * h))
        draw.text((4, k * h + h // 2 - 6), lab, fill="black")
    img.save(path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m s2v.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="a prepared folder")
    p.add_argument("--model", required=True, help="a model folder (generator/ + stage 1)")
    p.add_argument("--split", default="test,unseen", help="test, unseen or both (comma-separated)")
    p.add_argument("--out", required=True, help="folder for results.json, results.md, strip.png")
    p.add_argument("--limit", type=int, default=None, help="clips per split (a seeded sample)")
    p.add_argument("--baselines", action="store_true", help="add the reference, mismatch and mean-face rows")
    p.add_argument("--ablation", default=None, help="a model trained with --no-identity-branch (the s2f-like row)")
    p.add_argument("--teachers", default=None, help="face teachers (default: MODEL/teachers or stage2.json's)")
    p.add_argument("--syncnet", default=None, help="sync expert (default: MODEL/syncnet or stage2.json's)")
    p.add_argument("--emotion-judge", default=None,
                   help="a second emotion network not used in training (teachers folder or its emotion/): adds "
                        "the emotion agreement by that judge")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    a = p.parse_args(argv)
    splits = tuple(s.strip() for s in a.split.split(",") if s.strip())
    bad = [s for s in splits if s not in SPLITS]
    if bad:
        p.error(f"unknown split {bad[0]!r}; use test, unseen or test,unseen")
    res = evaluate(a.data, a.model, a.out, a.teachers, a.syncnet, splits, a.limit, a.baselines, a.ablation, a.seed,
                   a.device, emotion_judge=a.emotion_judge)
    print(table(res["rows"], res["settings"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
