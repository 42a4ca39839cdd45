"""Face motion from the speech: visemes from eSpeak's phoneme events, jaw opening from the speech
energy, both smoothed across frames (coarticulation), closed at silence; plus blinks and a small
head motion."""
from __future__ import annotations

import numpy as np

from ..audio import frame_to_sample
from .face import Mouth, Pose

# viseme -> (open, width, close, teeth). open is the jaw at full speech energy.
VISEMES = {
    "sil": (0.0, 0.0, 0.0, 0.0),
    "PBM": (0.0, 0.0, 1.0, 0.0),  # lips pressed
    "FV": (0.1, 0.1, 0.0, 1.0),  # lower lip under the upper teeth
    "TH": (0.3, 0.1, 0.0, 0.0),
    "CH": (0.3, -0.6, 0.0, 0.0),  # sh, ch, j: lips forward
    "W": (0.25, -1.0, 0.0, 0.0),  # w, oo: rounded
    "O": (0.6, -0.7, 0.0, 0.0),
    "A": (1.0, 0.2, 0.0, 0.0),  # open vowels
    "E": (0.65, 0.5, 0.0, 0.0),
    "I": (0.35, 0.9, 0.0, 0.0),  # spread
    "C": (0.35, 0.1, 0.0, 0.0),  # other consonants (t d n l s z k g r h)
}
VISEME_NAMES = tuple(VISEMES)


def viseme(phoneme: str) -> str:
    """Viseme class of an eSpeak (English) phoneme mnemonic, stress marks ignored."""
    p = phoneme.lstrip("',%=").strip()
    if not p or p.startswith("_"):
        return "sil"
    if p[0] in "pbm":
        return "PBM"
    if p[0] in "fv":
        return "FV"
    if p[0] in "TD":
        return "TH"
    if p in ("S", "Z", "tS", "dZ") or p[0] in "SZ":
        return "CH"
    if p[0] == "w" or p.startswith(("u", "U")):
        return "W"
    if p.startswith(("O", "o", "0")):
        return "O"
    if p.startswith(("a", "A", "V", "&", "aI", "aU")):
        return "A"
    if p.startswith(("e", "E", "@", "3")):
        return "E"
    if p.startswith(("i", "I", "j")):
        return "I"
    return "C"


def frame_rms(audio: np.ndarray, fps: int, n_frames: int) -> np.ndarray:
    """(T,) RMS of the audio under each video frame."""
    edges = frame_to_sample(np.arange(n_frames + 1), fps)
    out = np.zeros(n_frames, np.float32)
    for t in range(n_frames):
        seg = audio[edges[t]:edges[t + 1]]
        out[t] = np.sqrt(np.mean(seg ** 2)) if seg.size else 0.0
    return out


def _smooth(x: np.ndarray, sigma: float) -> np.ndarray:
    r = int(np.ceil(3 * sigma))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    return np.convolve(np.pad(x, r, mode="edge"), k, mode="valid")


def mouth_track(phonemes: list[tuple[str, float]], audio: np.ndarray, fps: int, n_frames: int,
                lead: float = 0.03) -> tuple[list[Mouth], list[str]]:
    """Per-frame mouth states and viseme names.

    `phonemes` are (name, start seconds in `audio`). The lips lead the sound a little (`lead`),
    the jaw follows the frame's energy, and targets are smoothed over neighbouring frames.
    """
    rms = frame_rms(audio, fps, n_frames)
    ref = np.percentile(rms, 95) + 1e-8
    energy = np.clip(rms / ref, 0, 1.2) ** 0.7
    voiced = rms > ref * 0.06  # about -24 dB below the loud frames: silence otherwise
    starts = np.array([t for _, t in phonemes]) if phonemes else np.zeros(0)
    names = []
    targets = np.zeros((n_frames, 4), np.float32)
    for t in range(n_frames):
        centre = (t + 0.5) / fps + lead
        i = int(np.searchsorted(starts, centre, side="right")) - 1
        v = viseme(phonemes[i][0]) if i >= 0 else "sil"
        if not voiced[t] and v not in ("PBM", "FV"):
            v = "sil"
        names.append(v)
        targets[t] = VISEMES[v]
    targets[:, 0] *= energy * voiced
    targets[:, 1] *= voiced
    smooth = np.stack([_smooth(targets[:, 0], 0.9), _smooth(targets[:, 1], 1.2),
                       _smooth(targets[:, 2], 0.6), _smooth(targets[:, 3], 0.6)], 1)
    return [Mouth(*map(float, row)) for row in smooth], names


def poses(n_frames: int, fps: int, rng: np.random.Generator, energy: np.ndarray | None = None,
          amount: float = 1.0) -> list[Pose]:
    """Blinks (about one every 3 s) and a slow head sway with a small nod on loud speech."""
    t = np.arange(n_frames) / fps
    def sway(amp: float) -> np.ndarray:
        out = np.zeros(n_frames)
        for _ in range(3):
            f = rng.uniform(0.15, 0.8)
            out += amp / 3 * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
        return out
    dx, dy, roll = sway(0.035 * amount), sway(0.02 * amount), sway(2.5 * amount)
    if energy is not None:
        dy = dy + 0.02 * amount * _smooth(energy.astype(np.float64), 3.0)
    blink = np.zeros(n_frames)
    shape = np.array([0.5, 1.0, 1.0, 0.6, 0.25])
    k = int(rng.uniform(0.3, 2.0) * fps)
    while k < n_frames:
        seg = blink[k:k + len(shape)]
        blink[k:k + len(shape)] = np.maximum(seg, shape[: len(seg)])
        k += int(rng.uniform(1.8, 4.5) * fps)
    return [Pose(float(a), float(b), float(c), float(d)) for a, b, c, d in zip(dx, dy, roll, blink)]
