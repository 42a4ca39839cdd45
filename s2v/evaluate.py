"""`python -m s2v.evaluate`: the paper's Table 1 on a prepared dataset, and whether a voice's face is its own.

    python -m s2v.evaluate --data data/prep64 --model checkpoints/default --out runs/eval --baselines \
        --emotion-judge runs/judge --identity-judge runs/judge

Rows (one per method and split; splits: the seen actors' test clips and the unseen actors' clips):
  ground-truth   the real frames: the ceiling of every judge
  s2v            ν and μ from the voice, as the pipeline does by default (the model folder says whether ν
                 is recalled onto the seen actors or fed as is)
  s2v-raw-nu     ν fed as is (the paper's form), when the default recalls; or
  s2v-recall     ν recalled onto the seen actors (soft nearest), when the default feeds it as is
  reference      the speaker's own ν, as the generator was trained to take it (see `Vectors`: ν* of the
                 speaker's still for a generator trained on ν*, else the mean student ν of its clips)
  mismatch       the same for another actor of the same split (SDFA(mismatch))
  mean-face      the mean of the seen actors' vectors
  random-seen    a random seen actor's vector: a real face, but not the voice's
  s2f-like       `--ablation DIR`: a stage 2 trained without the identity branch and D_ID
Columns: SSIM and PSNR against the real frames; LSE-C, LSE-D and the share of clips whose sync offset
is within ±1 frame (the sync expert, `--syncnet`; `--sync-judge DIR` adds the same by a second expert
trained with another seed, the one to trust when the generator was trained through the first); emotion agreement (T_emo's class on the generated
frames vs the label; `--emotion-judge DIR` adds a second emotion network that took no part in
training). Identity: T_id's nearest seen actor (closed-set, and T_id is a training loss), and with
`--identity-judge DIR` (an identity network trained with another seed on another face pool, with its
attribute classifiers from `python -m s2v.attributes`): seen clips' identity top-1 among the seen
actors' stills; unseen clips' open-set scores among the unseen actors' stills (1:2 matching, R@1, R@5,
`s2v.openset`); the sex and age group of the generated face against the actor's.

Writes OUT/results.json, OUT/results.md (the tables), OUT/strip.png (real above generated frames, a seen
and an unseen voice) and OUT/faces.png (unseen actors: the real face above each method's face at the same
moment). Clips are a seeded sample (`--limit N` per split).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from .data import as_tensor
from .labels import EMOTIONS
from .targets import images

METHODS = ("ground-truth", "s2v", "s2v-raw-nu", "reference", "mismatch", "mean-face", "s2f-like")
SPLITS = {"test": "seen (test clips)", "unseen": "unseen actors"}


# --------------------------------------------------------------------------------------- metrics

def _as_images(x, dtype=torch.float64) -> torch.Tensor:
    """(T, H, W, 3) or (H, W, 3) uint8, numpy or tensor -> (T, 3, H, W) float tensor (on x's device)."""
    x = as_tensor(x)
    x = x[None] if x.ndim == 3 else x
    return x.permute(0, 3, 1, 2).to(dtype)


def _band(n: int, w: torch.Tensor) -> torch.Tensor:
    """(n - 2r, n): row i holds the window w over pixels i..i+2r (a 'valid' filter as a matrix)."""
    r = (len(w) - 1) // 2
    m = torch.zeros(n - 2 * r, n, dtype=w.dtype, device=w.device)
    for i in range(n - 2 * r):
        m[i, i:i + 2 * r + 1] = w
    return m


def ssim_frames(a, b, sigma: float = 1.5) -> torch.Tensor:
    """(T,) SSIM of each frame pair of two (T, H, W, 3) uint8 arrays or tensors (any device): skimage's
    `structural_similarity(channel_axis=-1, data_range=255, gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False)` on tensors — a Gaussian window truncated at 3.5 σ, the statistics averaged
    over the pixels whose window lies inside the image, then over the channels. float32, with the second
    moments taken about 128 so that no variance is a small difference of large numbers (tests/test_evaluate.py
    checks it against skimage to 1e-6)."""
    x, y = _as_images(a, torch.float32), _as_images(b, torch.float32)
    if x.shape != y.shape:
        raise ValueError(f"shapes differ: {tuple(x.shape)} vs {tuple(y.shape)}")
    r = int(3.5 * sigma + 0.5)
    w = torch.exp(-torch.arange(-r, r + 1, dtype=torch.float64) ** 2 / (2 * sigma ** 2))
    w = (w / w.sum()).to(torch.float32).to(x.device)
    t, c, h, wd = x.shape
    x, y = x - 128, y - 128
    stack = torch.stack([x, y, x * x, y * y, x * y]).reshape(-1, h, wd)  # all local means in one separable filter
    mx, my, xx, yy, xy = (_band(h, w) @ stack @ _band(wd, w).T).reshape(5, t, c, h - 2 * r, wd - 2 * r)
    vx, vy, vxy = xx - mx * mx, yy - my * my, xy - mx * my
    mx, my = mx + 128, my + 128
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    s = ((2 * mx * my + c1) * (2 * vxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.mean((1, 2, 3))


def ssim(a, b) -> float:
    """Mean SSIM (Gaussian window σ = 1.5, as Wang et al.) over the frames of two (T, H, W, 3) or
    (H, W, 3) uint8 arrays (`ssim_frames`)."""
    return float(ssim_frames(a, b).mean())


def psnr(a, b) -> float:
    """PSNR in dB over all frames (data range 255); identical inputs give math.inf."""
    x, y = _as_images(a), _as_images(b)
    if x.shape != y.shape:
        raise ValueError(f"shapes differ: {tuple(x.shape)} vs {tuple(y.shape)}")
    mse = float(((x - y) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def at_size(frames: torch.Tensor, size: int) -> torch.Tensor:
    """(T, S, S, 3) uint8 frames (a tensor, on any device) resized to size x size by pixel-area averaging (OpenCV's
    INTER_AREA, as `prepare` scales its frames): a generator of another resolution is scored on the prepared
    data's frames, by the judges made for them."""
    if frames.shape[1] == size:
        return frames
    import cv2

    small = np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in frames.cpu().numpy()])
    return torch.from_numpy(small).to(frames.device)


def _mean(values) -> float | None:
    v = [x for x in values if x is not None]
    return float(np.mean(v)) if v else None


def _se(values, n: int = 1000, seed: int = 0) -> float | None:
    """Bootstrap standard error of the mean over clips: how much the figure would move on another sample of
    clips of the same size (it says nothing of another training run)."""
    v = np.asarray([float(x) for x in values if x is not None])
    if len(v) < 2:
        return None
    idx = np.random.default_rng(seed).integers(0, len(v), (n, len(v)))
    return float(v[idx].mean(1).std())


SPREAD = ("ssim", "lse_c", "lse_c_heldout", "emotion_agreement_heldout", "identity_top1_heldout", "match_1to2", "r_at_1", "r_at_5",
          "sex_heldout", "age_group_heldout")  # figures reported with their bootstrap standard error


# ------------------------------------------------------------------------------------ evaluation

class Judges:
    """The face teachers (identity, emotion) and the sync expert that score a clip."""

    def __init__(self, teachers: str | Path, syncnet: str | Path | None, gallery, device,
                 emotion_judge: str | Path | None = None, identity_judge: str | Path | None = None,
                 sync_judge: str | Path | None = None):
        from .attributes import load_attributes, load_identity_judge
        from .syncnet import SyncNet
        from .teachers import load_emotion_teacher, load_teachers

        self.t_id, self.t_emo = (t.to(device) for t in load_teachers(teachers))
        self.t_emo2 = load_emotion_teacher(emotion_judge).to(device) if emotion_judge else None
        self.id2 = self.attributes = None
        if identity_judge:
            self.id2 = load_identity_judge(identity_judge).to(device)
            self.attributes = load_attributes(Path(identity_judge) / "attributes")
            self.attributes = self.attributes.to(device) if self.attributes is not None else None
        self.sync = SyncNet.from_pretrained(syncnet).to(device).eval() if syncnet else None
        self.sync2 = SyncNet.from_pretrained(sync_judge).to(device).eval() if sync_judge else None
        self.gallery, self.device = gallery, device

    @torch.no_grad()
    def heldout_embed(self, frames: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 -> (N, D) normalised embeddings by the held-out identity judge."""
        from .attributes import embed_images

        return embed_images(self.id2, frames, self.device)

    @torch.no_grad()
    def still_nu(self, still: np.ndarray) -> np.ndarray:
        return self.t_id.embed(images(still[None], self.device))[0].cpu().numpy()

    @torch.no_grad()
    def score(self, frames: np.ndarray, audio: np.ndarray, fps: float, k: int = 8) -> dict:
        """One video's judgement: nearest seen actor and emotion of k sampled frames, the held-out judges'
        readings, and the sync figures of the whole clip against `audio`."""
        return self.score_many([frames], audio, fps, k)[0]

    @torch.no_grad()
    def score_many(self, videos: list[np.ndarray], audio: np.ndarray, fps: float, k: int = 8,
                   audio_mfcc: np.ndarray | None = None) -> list[dict]:
        """`score` of several videos of one clip (the methods of an evaluation row) at once: every judge sees
        all their sampled frames in one batch, and each sync expert embeds the clip's audio once (from
        `audio_mfcc`, its `s2v.syncnet.mfcc`, when given)."""
        from .syncnet import embed_audio_clip, embed_video_clip, offset_distances, scores_of

        videos = [as_tensor(v).to(self.device) for v in videos]  # uint8 (T, H, W, 3) on the judges' device
        n = len(videos[0])
        if any(len(v) != n for v in videos):
            raise ValueError("score_many needs videos of one length (the same clip)")
        m = len(videos)
        pick = torch.from_numpy(np.linspace(0, n - 1, min(k, n)).round().astype(np.int64)).to(self.device)
        picked = torch.cat([v[pick] for v in videos])  # (m * len(pick), H, W, 3)
        x = images(picked, self.device)
        per = (lambda t: t.unflatten(0, (m, len(pick))).mean(1))  # noqa: E731  per video: the mean of its frames
        emb = per(self.t_id.embed(x)).cpu().numpy()
        nearest = self.gallery.nearest(emb)
        emo = per(self.t_emo.crema_logits(x)).argmax(1).tolist()
        out = [{"nearest": str(nearest[j]), "emotion": int(emo[j])} for j in range(m)]
        if self.t_emo2 is not None:
            for o, e in zip(out, per(self.t_emo2.crema_logits(x)).argmax(1).tolist()):
                o["emotion_heldout"] = int(e)
        if self.id2 is not None:  # one embedding per clip: the mean of its frames' (kept out of results.json)
            e = self.heldout_embed(picked).reshape(m, len(pick), -1).mean(1)
            for o, ej in zip(out, e):
                o["_embedding"] = ej / (np.linalg.norm(ej) + 1e-12)
            if self.attributes is not None:  # per video: the mean of its frames' probabilities
                proba = self.attributes.predict_proba(picked)
                pred = self.attributes.labels({k: p.reshape(m, len(pick), -1).mean(1) for k, p in proba.items()})
                for j, o in enumerate(out):
                    o.update({f"pred_{key}": str(v[j]) for key, v in pred.items()})
        for net, names in ((self.sync, ("lse_c", "lse_d", "offset")),
                           (self.sync2, ("lse_c_heldout", "lse_d_heldout", "offset_heldout"))):
            if net is None:
                continue  # sync2: a second expert, never a training loss: the sync figures to trust
            net.eval()
            lips = [embed_video_clip(net, v) for v in videos]
            a = embed_audio_clip(net, audio, fps, len(lips[0]), m=audio_mfcc)  # one audio for all the videos
            for o, ve in zip(out, lips):
                sc = scores_of(offset_distances(ve, a))
                o.update(zip(names, (sc["lse_c"], sc["lse_d"], sc["offset"])))
        return out


def cpu_side(data, ids: list[int], gate: bool, sync: bool, pool: ThreadPoolExecutor | None = None):
    """Per clip of `ids`, in order, the work that stays on the CPU: its frames and audio read, its speech spans
    (Silero VAD, for the pause gate, when `gate`) and its MFCCs (the sync judges', when `sync`). With a `pool`,
    the next clip's is done in a thread while the caller works on this one (on a GPU that work would otherwise
    leave it idle)."""
    from .syncnet import mfcc
    from .vad import speech_spans

    def work(i: int) -> dict:
        audio = data.audio(i)
        return {"frames": np.array(data.frames(i)), "audio": audio, "spans": speech_spans(audio) if gate else None,
                "mfcc": mfcc(audio) if sync else None}

    if pool is None:
        yield from (work(i) for i in ids)
        return
    ahead = pool.submit(work, ids[0]) if ids else None
    for k in range(len(ids)):
        done = ahead.result()
        ahead = pool.submit(work, ids[k + 1]) if k + 1 < len(ids) else None
        yield done


def pick_clips(data, split: str, limit: int | None, seed: int) -> list[int]:
    ids = [i for i in data.split(split) if data.clips[i]["n_frames"] >= 10]
    if limit and len(ids) > limit:
        ids = sorted(np.random.default_rng(seed).choice(ids, size=limit, replace=False).tolist())
    return ids


class Vectors:
    """The ν each row feeds the generator, from the distribution it was trained on: a generator trained on
    the teacher's ν* (`--nu-source teacher|mix`, `nu_norm`) gets ν* = T_id(still) for `reference` and
    `mismatch` and the seen actors' mean ν* for `mean-face` and `random-seen`; one trained on the student's
    ν (the paper) gets the mean student ν over the actor's clips (the seen actors': over their training
    clips, the gallery's `voice`)."""

    def __init__(self, pipe, judges: Judges, data, device, per_actor: int = 8):
        self.teacher = bool(getattr(pipe.generator.config, "nu_norm", False))
        g = pipe.gallery
        self.seen_ids = list(g.ids)
        self.seen = g.embeddings if (self.teacher or g.voice is None) else g.voice  # (A, D)
        self.pipe, self.judges, self.data, self.device, self.per_actor = pipe, judges, data, device, per_actor
        self._cache: dict[str, np.ndarray] = {}

    def of(self, actor: str) -> torch.Tensor:
        """The actor's own ν (the `reference` row)."""
        if actor not in self._cache:
            if self.teacher:
                v = self.judges.still_nu(self.data.still(actor))
            elif actor in self.seen_ids:
                v = self.seen[self.seen_ids.index(actor)]
            else:
                from .features import AudioFeatures

                clips = [i for i, c in enumerate(self.data.clips) if c["actor"] == actor][:self.per_actor]
                v = np.mean([AudioFeatures.compute(self.pipe.cpc, self.pipe.students, self.data.audio(i), self.device)[1]
                             for i in clips], 0)
            self._cache[actor] = np.asarray(v, np.float32)
        return torch.from_numpy(self._cache[actor]).to(self.device)

    def mean_face(self) -> torch.Tensor:
        return torch.from_numpy(self.seen.mean(0).astype(np.float32)).to(self.device)

    def random_seen(self, rng, actor: str) -> torch.Tensor:
        """A seen actor's ν other than the speaker's: a face that is someone's, not the voice's."""
        k = [j for j, a in enumerate(self.seen_ids) if a != actor]
        return torch.from_numpy(np.asarray(self.seen[k[rng.integers(len(k))]], np.float32)).to(self.device)


@torch.no_grad()
def evaluate(data_dir, model, out, teachers=None, syncnet=None, splits=("test", "unseen"), limit=None,
             baselines=False, ablation=None, seed=0, device=None, progress=True, emotion_judge=None,
             identity_judge=None, sync_judge=None, prefetch: bool | None = None) -> dict:
    from tqdm.auto import tqdm

    from .data import Prepared
    from .features import AudioFeatures
    from .generator import generate_clip, generate_clips, to_uint8
    from .pipeline import RECALL, Speech2Video

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    data = Prepared(data_dir)
    model = Path(model)
    pipe = Speech2Video.from_pretrained(model, device=device)
    teachers = Path(teachers) if teachers else _find(model, "teachers")
    syncnet = Path(syncnet) if syncnet else _find(model, "syncnet", required=False)
    judges = Judges(teachers, syncnet, pipe.gallery, device, emotion_judge, identity_judge, sync_judge)
    other = ("s2v-raw-nu" if pipe.recall is not None else "s2v-recall") if pipe.gallery is not None else None
    methods = ["ground-truth", "s2v"] + ([other] if other else []) + (
        ["reference", "mismatch", "mean-face", "random-seen"] if baselines else [])
    abl = None
    if ablation:
        abl = Speech2Video.from_pretrained(ablation, device=device)
        methods.append("s2f-like")
    vec = Vectors(pipe, judges, data, device)
    recall_t = pipe.recall if pipe.recall is not None else RECALL
    rng = np.random.default_rng(seed)
    t_start = time.perf_counter()  # the clips' work, models loaded
    per_clip, strip, faces = [], {}, {}  # faces: unseen actor -> method -> the middle frame of its first clip
    if prefetch is None:
        prefetch = torch.device(device).type == "cuda"
    pool = ThreadPoolExecutor(1) if prefetch else None
    for split in splits:
        ids = pick_clips(data, split, limit, seed)
        same_split = sorted({data.clips[i]["actor"] for i in data.split(split)}, key=str)
        for i, cpu in tqdm(zip(ids, cpu_side(data, ids, pipe.gate_pauses,
                                                          judges.sync is not None or judges.sync2 is not None, pool)), total=len(ids),
                           desc=f"evaluate {split}", disable=not progress):
            clip = data.clips[i]
            actor, fps, n = clip["actor"], clip["fps"], clip["n_frames"]
            # every video of the clip stays a uint8 tensor on the evaluation's device: generated, judged and
            # compared there (numpy only for the strip and the faces sheet)
            gt, audio = torch.from_numpy(cpu["frames"]).to(device), cpu["audio"]
            c, nu, mu = (torch.from_numpy(x).to(device) for x in AudioFeatures.compute(pipe.cpc, pipe.students, audio,
                                                                                       device))
            # what the pipeline's generator reads (pauses gated to silence)
            c = pipe.heard(audio, c[None], cpu["spans"])[0]
            others = [a for a in same_split if a != actor] or [a for a in data.actors if a != actor]
            nus = {"s2v": pipe.identity(nu[None], audio)[0], "s2v-raw-nu": nu}
            if "s2v-recall" in methods:
                nus["s2v-recall"] = torch.from_numpy(pipe.gallery.recall(nu[None].cpu().numpy(), recall_t)[0]).to(device)
            if baselines:
                nus.update({"reference": vec.of(actor), "mismatch": vec.of(others[rng.integers(len(others))]),
                            "mean-face": vec.mean_face(), "random-seen": vec.random_seen(rng, actor)})
            gen = [m for m in methods if m in nus]  # one generator call for all of them
            videos = dict(zip(gen, (at_size(to_uint8(f, numpy=False), data.size) for f in generate_clips(
                pipe.generator, c, [nus[m] for m in gen], mu, n, fps))))
            videos["ground-truth"] = gt
            if "s2f-like" in methods:
                c2, nu2, mu2 = (torch.from_numpy(x).to(device) for x in AudioFeatures.compute(
                    abl.cpc, abl.students, audio, device))
                videos["s2f-like"] = at_size(to_uint8(generate_clip(abl.generator, c2, nu2, mu2, n, fps), numpy=False),
                                             data.size)
            scores = dict(zip(methods, judges.score_many([videos[m] for m in methods], audio, fps,
                                                         audio_mfcc=cpu["mfcc"])))
            label = EMOTIONS.index(clip["emotion"]) if clip.get("emotion") in EMOTIONS else None
            for m in methods:
                frames = videos[m]
                row = {"clip": i, "split": split, "method": m, "actor": actor, **scores[m]}
                if m != "ground-truth":
                    row.update(ssim=ssim(frames, gt), psnr=psnr(frames, gt))
                row["emotion_label"] = label
                per_clip.append(row)
                if m in ("ground-truth", "s2v") and split not in strip.get(m, {}):
                    strip.setdefault(m, {})[split] = frames.cpu().numpy()
                if split == "unseen" and m in FACE_METHODS and (actor in faces or len(faces) < 8):
                    faces.setdefault(actor, {}).setdefault(m, frames[len(frames) // 2].cpu().numpy())
    stills = None
    if judges.id2 is not None:  # every actor's still by the held-out judge: the candidates of the open-set scores
        actors = sorted(data.actors, key=str)
        stills = dict(zip(actors, judges.heldout_embed(np.stack([data.still(a) for a in actors]))))
    if pool is not None:
        pool.shutdown()
    seconds = time.perf_counter() - t_start
    n_clips = len({(r["split"], r["clip"]) for r in per_clip})
    print(f"evaluated {n_clips} clips ({len(methods)} methods each) in {seconds:.1f} s: "
          f"{n_clips / seconds:.2f} clips/s on {device}", file=sys.stderr)
    results = summarise(per_clip, data, pipe.gallery, stills, judges.attributes)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    settings = {"data": str(data_dir), "model": str(model), "teachers": str(teachers),
                "syncnet": str(syncnet) if syncnet else None, "ablation": str(ablation) if ablation else None,
                "emotion_judge": str(emotion_judge) if emotion_judge else None,
                "identity_judge": str(identity_judge) if identity_judge else None,
                "sync_judge": str(sync_judge) if sync_judge else None,
                "generator_size": pipe.generator.config.size, "scored_at": data.size,
                "splits": list(splits), "limit": limit, "baselines": baselines, "seed": seed,
                "vectors": "teacher nu* (T_id of the still)" if vec.teacher else "mean student nu over the actor's clips"}
    (out / "results.json").write_text(json.dumps({"settings": settings, "rows": _jsonable(results)}, indent=1))
    (out / "results.md").write_text(table(results, settings))
    if "ground-truth" in strip and "s2v" in strip:
        save_strip(out / "strip.png", strip)
    if faces:
        save_faces(out / "faces.png", faces, data.index["actors"])
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


def summarise(per_clip: list[dict], data, gallery, stills: dict | None = None, attributes=None) -> list[dict]:
    """One row per split and method. With the held-out judge's `stills` (actor -> normalised embedding):
    seen clips get identity top-1 among the seen actors' stills; unseen clips the open-set scores among the
    unseen actors' stills (`s2v.openset`); with `attributes`, every split the sex and age group of the
    generated face against the actor's."""
    from .openset import per_query

    rows = []
    info = data.index["actors"]
    for split in dict.fromkeys(r["split"] for r in per_clip):
        cand = sorted({data.clips[i]["actor"] for i in data.split(split)}, key=str)
        for m in dict.fromkeys(r["method"] for r in per_clip):
            rs = [r for r in per_clip if r["split"] == split and r["method"] == m]
            if not rs:
                continue
            row = {"method": m, "split": split, "clips": len(rs),
                   "ssim": _mean(r.get("ssim") for r in rs), "psnr": _mean(r.get("psnr") for r in rs),
                   "lse_c": _mean(r.get("lse_c") for r in rs), "lse_d": _mean(r.get("lse_d") for r in rs),
                   "in_sync": _mean(abs(r["offset"]) <= 1 if "offset" in r else None for r in rs),
                   "lse_d_heldout": _mean(r.get("lse_d_heldout") for r in rs),
                   "in_sync_heldout": _mean(abs(r["offset_heldout"]) <= 1 if "offset_heldout" in r else None
                                            for r in rs)}
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
            values = {"ssim": [r.get("ssim") for r in rs], "lse_c": [r.get("lse_c") for r in rs],
                      "lse_c_heldout": [r.get("lse_c_heldout") for r in rs],
                      "emotion_agreement_heldout": [r.get("emotion_heldout") == r["emotion_label"] if "emotion_heldout"
                                                    in r else None for r in labelled]}
            if stills is not None and len(cand) >= 2:
                q = np.stack([r["_embedding"] for r in rs])
                truth = np.array([cand.index(r["actor"]) for r in rs])
                pq = per_query(q, truth, np.stack([stills[a] for a in cand]))
                if split == "unseen":
                    values.update(pq)
                    row.update(candidates=len(cand), r_at_1_chance=min(1.0, 1 / len(cand)),
                               r_at_5_chance=min(1.0, 5 / len(cand)))
                else:
                    values["identity_top1_heldout"] = pq["r_at_1"]
                    row["identity_chance"] = 1 / len(cand)
            if attributes is not None and all("pred_sex" in r for r in rs):
                for key in attributes.config.attributes:
                    values[f"{key}_heldout"] = [r[f"pred_{key}"] == str(info[r["actor"]].get(key)) for r in rs]
            for key, v in values.items():
                if key not in row:
                    row[key] = _mean(v)
                if key in SPREAD and row[key] is not None:
                    row[f"{key}_se"] = _se(v)
            rows.append(row)
    return rows


def _jsonable(rows):
    fix = lambda v: (None if v is None else "inf" if isinstance(v, float) and math.isinf(v)  # noqa: E731
                     else round(v, 4) if isinstance(v, float) else v)
    return [{k: fix(v) for k, v in r.items()} for r in rows]


FRAME_COLS = [("ssim", "SSIM ↑"), ("psnr", "PSNR ↑"), ("lse_c", "LSE-C ↑"), ("lse_d", "LSE-D ↓"),
              ("in_sync", "offset ≤1 ↑"), ("lse_c_heldout", "LSE-C, held-out judge ↑"),
              ("lse_d_heldout", "LSE-D, held-out judge ↓"), ("in_sync_heldout", "offset ≤1, held-out judge ↑"),
              ("emotion_agreement", "emotion ↑"),
              ("emotion_agreement_heldout", "emotion, held-out judge ↑")]
IDENTITY_COLS = [("identity_top1", "identity top-1, T_id ↑"), ("identity_top1_heldout", "identity top-1, held-out ↑"),
                 ("match_1to2", "1:2 match ↑"), ("r_at_1", "R@1 ↑"), ("r_at_5", "R@5 ↑"),
                 ("sex_heldout", "sex ↑"), ("age_group_heldout", "age group ↑"),
                 ("unseen_sex_agreement", "nearest seen: same sex"), ("unseen_age_group_agreement",
                                                                      "nearest seen: same age")]


def _table(rows: list[dict], cols: list[tuple[str, str]]) -> list[str]:
    cols = [c for c in cols if any(r.get(c[0]) is not None for r in rows)]

    def fmt(r: dict, c: str) -> str:
        v, se = r.get(c), r.get(f"{c}_se")
        if v is None:
            return "—"
        if isinstance(v, float) and math.isinf(v):
            return "∞"
        return f"{v:.3f}" + (f" ± {se:.3f}" if se else "")

    lines = ["| split | method | clips | " + " | ".join(c[1] for c in cols) + " |", "|" + "---|" * (3 + len(cols))]
    for r in rows:
        lines.append(f"| {SPLITS.get(r['split'], r['split'])} | {r['method']} | {r['clips']} | "
                     + " | ".join(fmt(r, c) for c, _ in cols) + " |")
    return lines


def table(rows: list[dict], settings: dict) -> str:
    """Two markdown tables (frames, sync and emotion; identity), the chance levels and the command."""
    lines = ["Frames, sync and emotion:", "", *_table(rows, FRAME_COLS), "", "Identity:", "",
             *_table(rows, IDENTITY_COLS)]
    chance = [f"{SPLITS.get(r['split'], r['split'])}: identity top-1 {r['identity_chance']:.3f}" for r in rows
              if r.get("identity_chance") is not None][:1]
    chance += [f"unseen actors: 1:2 match 0.500, R@1 {r['r_at_1_chance']:.3f}, R@5 {r['r_at_5_chance']:.3f} "
               f"({r['candidates']} candidates)" for r in rows if r.get("r_at_1_chance") is not None][:1]
    if chance:
        lines += ["", "Chance: " + "; ".join(chance) + ". ± is the bootstrap standard error over the clips. The ground-truth row (the real frames) is each judge's "
                  "ceiling. Sex and age group: the held-out judge's attribute classifiers against the corpus truth."]
    s = settings
    cmd = (f"python -m s2v.evaluate --data {s['data']} --model {s['model']} --split {','.join(s['splits'])}"
           + (f" --limit {s['limit']}" if s.get("limit") else "") + (" --baselines" if s.get("baselines") else "")
           + (f" --ablation {s['ablation']}" if s.get("ablation") else "")
           + (f" --emotion-judge {s['emotion_judge']}" if s.get("emotion_judge") else "")
           + (f" --identity-judge {s['identity_judge']}" if s.get("identity_judge") else "")
           + (f" --sync-judge {s['sync_judge']}" if s.get("sync_judge") else "") + " --out OUT")
    return "\n".join(lines) + f"\n\nMade by `{cmd}`.\n"


# the faces sheet's rows; with --baselines also `reference`: what the generator makes of the speaker's own face
# embedding, so that a face the voice misses can be told from one the decoder cannot draw
FACE_METHODS = ("ground-truth", "s2v", "s2v-raw-nu", "s2v-recall", "reference", "mean-face")


def save_faces(path: Path, faces: dict, info: dict) -> None:
    """Unseen actors (columns): the real frame above each method's face for the same moment (rows)."""
    from PIL import Image, ImageDraw

    actors = list(faces)
    methods = [m for m in FACE_METHODS if all(m in faces[a] for a in actors)]
    h, w = faces[actors[0]][methods[0]].shape[:2]
    pad, top = 110, 14
    img = Image.new("RGB", (pad + w * len(actors), top + h * len(methods)), "white")
    draw = ImageDraw.Draw(img)
    for j, a in enumerate(actors):
        draw.text((pad + j * w + 2, 1), f"{info[a].get('sex', '?')[:1]} {info[a].get('age', '')}", fill="black")
        for k, m in enumerate(methods):
            img.paste(Image.fromarray(faces[a][m]), (pad + j * w, top + k * h))
    names = {"ground-truth": "real", "reference": "reference (nu*)"}
    for k, m in enumerate(methods):
        draw.text((4, top + k * h + h // 2 - 6), names.get(m, m), fill="black")
    img.save(path)


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
    p.add_argument("--identity-judge", default=None,
                   help="an identity network not used in training (teachers folder or its identity/, with "
                        "attributes/ from python -m s2v.attributes): adds held-out identity top-1, the open-set "
                        "scores on unseen actors (1:2 matching, R@1, R@5) and the sex and age group of the faces")
    p.add_argument("--sync-judge", default=None,
                   help="a second sync expert not used in training (train/syncnet.py with another seed): adds LSE-C, "
                        "LSE-D and the in-sync rate by that judge, the sync figures to trust when the generator was "
                        "trained through the first expert (train/stage2.py --lambda-sync-expert)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    p.add_argument("--prefetch", default="auto", choices=("auto", "on", "off"),
                   help="read the next clip and do its CPU-side work (VAD, MFCC) in a thread while this one is judged "
                        "(auto: on CUDA, where the GPU would otherwise wait for it; on 2 CPU cores it only competes)")
    a = p.parse_args(argv)
    splits = tuple(s.strip() for s in a.split.split(",") if s.strip())
    bad = [s for s in splits if s not in SPLITS]
    if bad:
        p.error(f"unknown split {bad[0]!r}; use test, unseen or test,unseen")
    res = evaluate(a.data, a.model, a.out, a.teachers, a.syncnet, splits, a.limit, a.baselines, a.ablation, a.seed,
                   a.device, emotion_judge=a.emotion_judge, identity_judge=a.identity_judge, sync_judge=a.sync_judge,
                   prefetch={"auto": None, "on": True, "off": False}[a.prefetch])
    print(table(res["rows"], res["settings"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
