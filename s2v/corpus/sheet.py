"""`python -m s2v.corpus sheet`: a contact sheet of a made corpus.

Top: actors (rows, seen then unseen) x emotions (columns), each the loudest frame of a clip read
back from VideoFlash. Bottom: a mouth sequence of one clip (the lower face), with the
speech energy of each frame drawn under it.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np

from ..audio import load_audio
from ..video import read_video
from ..labels import EMOTION_NAMES
from .motion import frame_rms


def _label(img: np.ndarray, text: str, xy, scale=0.4, color=(30, 30, 30)) -> None:
    cv2.putText(img, text, xy, cv2.FONT_HERSHEY_SIMPLEX, scale, color, 1, cv2.LINE_AA)


def contact_sheet(corpus: str | os.PathLike, out: str | os.PathLike, n_actors: int = 8) -> dict:
    corpus = Path(corpus)
    meta_path = corpus / "actors.json"
    if not meta_path.exists():
        raise FileNotFoundError(f"{meta_path} not found: is {corpus} a corpus made by `s2v.corpus make`?")
    meta = json.loads(meta_path.read_text())
    emotions, size = meta["emotions"], meta["size"]
    seen = [a for a in meta["actors"] if a["split"] == "seen"]
    unseen = [a for a in meta["actors"] if a["split"] == "unseen"]
    k_un = min(len(unseen), max(1, n_actors // 4)) if unseen else 0
    actors = seen[: n_actors - k_un] + unseen[:k_un]
    sentence = next(iter(meta["sentences"]))
    pad, head = 4, 18
    cell = size + pad
    W = 90 + cell * len(emotions)
    grid = np.full((head + cell * len(actors), W, 3), 245, np.uint8)
    for j, e in enumerate(emotions):
        _label(grid, EMOTION_NAMES[e], (90 + j * cell + 4, 13))
    for i, a in enumerate(actors):
        y = head + i * cell
        _label(grid, f"{a['id']} {a['split']}", (4, y + size // 2 - 6))
        _label(grid, f"{a['sex'][0]} {a['age']}", (4, y + size // 2 + 10))
        for j, e in enumerate(emotions):
            stem = next(iter(sorted((corpus / "VideoFlash").glob(f"{a['id']}_{sentence}_{e}_*.flv"))), None)
            if stem is None:
                continue
            frames, fps = read_video(stem)
            audio = load_audio(corpus / "AudioWAV" / (stem.stem + ".wav"))
            t = int(np.argmax(frame_rms(audio, int(fps), len(frames))))
            grid[y:y + size, 90 + j * cell:90 + j * cell + size] = frames[t]
    # mouth sequence: the first actor's neutral clip, lower face, energy bars
    clip = sorted((corpus / "VideoFlash").glob(f"{actors[0]['id']}_*_NEU_*.flv")) or \
        sorted((corpus / "VideoFlash").glob(f"{actors[0]['id']}_*.flv"))
    frames, fps = read_video(clip[0])
    audio = load_audio(corpus / "AudioWAV" / (clip[0].stem + ".wav"))
    rms = frame_rms(audio, int(fps), len(frames))
    n = min(len(frames), max(1, (W - 8) // (size // 2 + 2)))
    start = int(np.clip(np.argmax(rms) - n // 2, 0, max(len(frames) - n, 0)))
    crop = frames[start:start + n, size // 2:size * 7 // 8, size // 4:size * 3 // 4]
    tile = list(crop)
    th, tw = tile[0].shape[:2]
    strip = np.full((th + 64, W, 3), 245, np.uint8)
    _label(strip, f"mouth sequence, {clip[0].stem} (frames {start}-{start + n - 1}) and speech energy", (4, 12))
    for k, c in enumerate(tile):
        x = 4 + k * (tw + 2)
        strip[16:16 + th, x:x + tw] = c
        h = int(28 * rms[start + k] / (rms.max() + 1e-8))
        strip[16 + th + 34 - h:16 + th + 34, x + 2:x + tw - 2] = (70, 110, 180)
    sheet = np.concatenate([grid, strip], 0)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), sheet[..., ::-1])
    return {"out": str(out), "actors": len(actors), "shape": list(sheet.shape)}
