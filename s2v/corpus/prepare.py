"""`python -m s2v.corpus prepare`: raw clips -> training-ready shards.

PREP/
  shard-00000.frames.npy   (sum T, size, size, 3) uint8 face crops of the shard's clips, back to back
  shard-00000.audio.npy    (sum N,) int16 16 kHz mono audio, back to back
  shard-00000.json         per clip: offsets into those arrays, fps, actor and labels; skipped clips
  stills.npy               (A, size, size, 3) one still per actor (Stills/<actor>.png, else the
                           first frame of the actor's first clip)
  index.json               every clip with its split (train/val/test for seen actors, 70/15/15 per
                           actor, seeded; `unseen` for actors held out whole) and the actor table
  report.json              skipped clips with their reasons, counts, and clips per second

Shards are written atomically (the .json last), so a run resumes where it stopped, and
`--shard I/N` lets N processes or machines split the work (each takes the shards k with k % N == I);
the index is written by whichever run finds every shard finished.
"""
from __future__ import annotations

import json
import os
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from ..audio import AudioError, SAMPLE_RATE, frame_to_sample, load_audio, num_frames
from ..video import VideoError, read_video
from .crop import CROPS, NoFaceError, crop_clip
from .readers import ClipRef, DatasetInfo, read_dataset

MIN_SECONDS = 0.5
SPLITS = ("train", "val", "test", "unseen")


def _reason(exc: Exception) -> str:
    names = {"EmptyAudioError": "empty audio", "UnreadableAudioError": "unreadable audio",
             "NotAudioError": "no audio stream", "TooShortAudioError": "too short",
             "SilentAudioError": "silent audio", "NoFaceError": "no face found", "VideoError": "unreadable video"}
    return names.get(type(exc).__name__, type(exc).__name__)


def load_clip(ref: ClipRef, size: int, crop: str) -> tuple[np.ndarray, np.ndarray]:
    """(frames (T, size, size, 3) uint8, audio (N,) float32) aligned: N = exact samples of T frames."""
    if ref.audio is not None and not Path(ref.audio).exists():
        raise FileNotFoundError("missing audio file")
    audio = load_audio(ref.audio or ref.video, min_seconds=MIN_SECONDS)
    frames, fps = read_video(ref.video)
    if len(frames) == 0:
        raise VideoError("no video frames")
    if abs(fps - ref.fps) > 0.5:
        raise VideoError(f"video runs at {fps:g} fps, expected {ref.fps}")
    t = min(len(frames), num_frames(audio.size, ref.fps))
    if t < MIN_SECONDS * ref.fps:
        raise AudioError("too short")
    n = frame_to_sample(t, ref.fps)
    audio = np.pad(audio[:n], (0, max(0, n - audio.size)))
    return crop_clip(frames[:t], size, crop), audio


def _process_shard(args) -> dict:
    k, refs, out, size, crop = args
    out = Path(out)
    frames, audio, records, skipped = [], [], [], []
    f_off = a_off = 0
    for ref in refs:
        try:
            fr, au = load_clip(ref, size, crop)
        except (AudioError, VideoError, NoFaceError, FileNotFoundError, OSError) as exc:
            skipped.append({"id": ref.id, "reason": _reason(exc) if not isinstance(exc, FileNotFoundError)
                            else "missing audio file", "detail": str(exc)[:200]})
            continue
        records.append({"id": ref.id, "shard": k, "frame_start": f_off, "n_frames": len(fr), "audio_start": a_off,
                        "n_samples": int(au.size), "fps": ref.fps, "actor": ref.actor, "sentence": ref.sentence,
                        "emotion": ref.emotion, "level": ref.level})
        frames.append(fr)
        audio.append((np.clip(au, -1, 1) * 32767).astype(np.int16))
        f_off += len(fr)
        a_off += au.size
    name = f"shard-{k:05d}"
    fr_all = np.concatenate(frames) if frames else np.zeros((0, size, size, 3), np.uint8)
    au_all = np.concatenate(audio) if audio else np.zeros(0, np.int16)
    for suffix, arr in (("frames", fr_all), ("audio", au_all)):
        tmp = out / f"{name}.{suffix}.tmp.npy"
        np.save(tmp, arr)
        os.replace(tmp, out / f"{name}.{suffix}.npy")
    meta = {"shard": k, "clips": records, "skipped": skipped}
    tmp = out / f"{name}.json.tmp"
    tmp.write_text(json.dumps(meta))
    os.replace(tmp, out / f"{name}.json")  # written last: its presence means the shard is complete
    return meta


def _parse_shard(text: str | None) -> tuple[int, int]:
    """'I/N' -> (I, N); 'auto' takes RANK / WORLD_SIZE as set by `accelerate launch` or torchrun."""
    if not text:
        return 0, 1
    if text == "auto":
        return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard must be I/N (e.g. 0/4), got {text!r}") from None
    if not 0 <= i < n:
        raise ValueError(f"--shard {text}: need 0 <= I < N")
    return i, n


def _assign_splits(clips: list[dict], unseen: set[str], seed: int) -> None:
    by_actor: dict[str, list[dict]] = {}
    for c in clips:
        by_actor.setdefault(c["actor"], []).append(c)
    for actor, items in sorted(by_actor.items()):
        if actor in unseen:
            for c in items:
                c["split"] = "unseen"
            continue
        rng = np.random.default_rng([seed, sum(map(ord, actor)), len(items)])
        order = rng.permutation(len(items))
        n_train = int(round(0.7 * len(items)))
        n_val = int(round(0.15 * len(items)))
        for rank, i in enumerate(order):
            items[i]["split"] = "train" if rank < n_train else "val" if rank < n_train + n_val else "test"


def _write_index(out: Path, info: DatasetInfo, n_shards: int, args: dict, unseen: set[str]) -> dict:
    clips, skipped = [], []
    for k in range(n_shards):
        meta = json.loads((out / f"shard-{k:05d}.json").read_text())
        clips += meta["clips"]
        skipped += meta["skipped"]
    _assign_splits(clips, unseen, args["seed"])
    actors = sorted({c["actor"] for c in clips})
    size = args["size"]
    stills = np.zeros((len(actors), size, size, 3), np.uint8)
    table = {}
    for i, a in enumerate(actors):
        if a in info.stills:
            img = cv2.imread(info.stills[a])[..., ::-1]
            stills[i] = crop_clip(img[None], size, args["crop"] if args["crop"] != "detect" else "center")[0]
            src = "still"
        else:
            first = next(c for c in clips if c["actor"] == a)
            mm = np.load(out / f"shard-{first['shard']:05d}.frames.npy", mmap_mode="r")
            stills[i] = mm[first["frame_start"]]
            src = f"first frame of {first['id']}"
        table[a] = {**info.actors.get(a, {}), "index": i, "still": src,
                    "split": "unseen" if a in unseen else "seen"}
    np.save(out / "stills.npy", stills)
    index = {"format": "s2v-prepared", "version": 1, **args, "sample_rate": SAMPLE_RATE, "n_shards": n_shards,
             "actors": table, "clips": clips,
             "counts": {s: sum(c["split"] == s for c in clips) for s in SPLITS}}
    tmp = out / "index.json.tmp"
    tmp.write_text(json.dumps(index, indent=0))
    os.replace(tmp, out / "index.json")
    report = {"clips_ok": len(clips), "skipped": len(skipped), "reasons": dict(Counter(s["reason"] for s in skipped)),
              "skipped_clips": skipped}
    return report


def prepare(dataset: str, root: str | os.PathLike, out: str | os.PathLike, size: int = 64, crop: str = "auto",
            workers: int | None = None, shard: str | None = None, holdout_actors: list[str] | None = None,
            clips_per_shard: int = 64, seed: int = 0, progress: bool = True) -> dict:
    """Prepare `root` into shards in `out`; returns the report (also written to report.json)."""
    from tqdm.auto import tqdm

    t0 = time.time()
    info = read_dataset(dataset, root)
    if crop == "auto":  # our synthetic corpus is face-centred; real video needs a detector
        crop = "center" if (Path(root) / "actors.json").exists() else "detect"
    if crop not in CROPS:
        raise ValueError(f"unknown --crop {crop!r}; choose from {', '.join(CROPS)}")
    if size < 16:
        raise ValueError("--size must be at least 16")
    me, n_proc = _parse_shard(shard)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    unseen = set(info.unseen) | {str(a) for a in (holdout_actors or [])}
    args = {"dataset": dataset, "root": str(root), "size": size, "crop": crop, "seed": seed,
            "clips_per_shard": clips_per_shard, "holdout_actors": sorted(unseen)}
    settings = out / "settings.json"
    if settings.exists() and json.loads(settings.read_text()) != args:
        raise ValueError(f"{out} was prepared with other settings ({settings}); use a new --out")
    settings.write_text(json.dumps(args, indent=1))

    chunks = [info.clips[i:i + clips_per_shard] for i in range(0, len(info.clips), clips_per_shard)]
    todo = [k for k in range(len(chunks)) if k % n_proc == me and not (out / f"shard-{k:05d}.json").exists()]
    jobs = [(k, chunks[k], str(out), size, crop) for k in todo]
    n_clips = sum(len(chunks[k]) for k in todo)
    bar = tqdm(total=n_clips, desc=f"prepare {dataset}", unit="clip", disable=not progress)
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs) or 1))
    if workers == 1:
        for j in jobs:
            _process_shard(j)
            bar.update(len(j[1]))
    else:
        with ProcessPoolExecutor(workers) as pool:
            for j, _ in zip(jobs, pool.map(_process_shard, jobs)):
                bar.update(len(j[1]))
    bar.close()
    seconds = time.time() - t0
    done = all((out / f"shard-{k:05d}.json").exists() for k in range(len(chunks)))
    report = {"shards": len(chunks), "shards_done_now": len(todo), "clips_done_now": n_clips,
              "seconds": round(seconds, 1), "clips_per_second": round(n_clips / seconds, 2) if n_clips else None,
              "index": done}
    if done:
        report.update(_write_index(out, info, len(chunks), args, unseen))
        (out / "report.json").write_text(json.dumps(report, indent=1))
    return report
