"""Datasets over prepared shards (`python -m s2v.corpus prepare`).

The shards are memory-mapped, opened lazily in each DataLoader worker, so nothing is loaded whole
and many workers share the page cache. `ClipDataset` yields whole clips; `FrameDataset` yields
single frames with the audio around them (shuffle it for random frames).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .audio import SAMPLE_RATE, frame_to_sample
from .labels import EMOTIONS


def as_tensor(frames) -> torch.Tensor:
    """Frames (any array) as a tensor: a tensor as it is; numpy shared when writable and contiguous, else copied
    (memory-mapped frames are read-only, which torch.from_numpy cannot share)."""
    return frames if torch.is_tensor(frames) else torch.from_numpy(np.require(frames, requirements=["C", "W"]))


class Prepared:
    """Read access to a prepared folder: the index, clips' frames and audio, actors' stills."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        path = self.root / "index.json"
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: run `python -m s2v.corpus prepare` (all shards) first")
        self.index = json.loads(path.read_text())
        self.clips: list[dict] = self.index["clips"]
        self.actors: list[str] = sorted(self.index["actors"], key=lambda a: self.index["actors"][a]["index"])
        self.actor_index = {a: i for i, a in enumerate(self.actors)}
        self.size: int = self.index["size"]
        self._mm: dict[str, np.ndarray] = {}
        self._pid = None

    def _open(self, name: str) -> np.ndarray:
        """Memory map of `name`.npy, opened once per process (a forked worker opens its own)."""
        if self._pid != os.getpid():
            self._mm, self._pid = {}, os.getpid()
        if name not in self._mm:
            self._mm[name] = np.load(self.root / f"{name}.npy", mmap_mode="r")
        return self._mm[name]

    def _map(self, shard: int, kind: str) -> np.ndarray:
        return self._open(f"shard-{shard:05d}.{kind}")

    def split(self, split: str | tuple[str, ...]) -> list[int]:
        """Indices of the clips in `split` (train, val, test, unseen, or several)."""
        splits = (split,) if isinstance(split, str) else tuple(split)
        return [i for i, c in enumerate(self.clips) if c["split"] in splits]

    def frames(self, i: int, start: int = 0, stop: int | None = None) -> np.ndarray:
        """(T, H, W, 3) uint8 frames of clip i (a view of the memory map)."""
        c = self.clips[i]
        stop = c["n_frames"] if stop is None else min(stop, c["n_frames"])
        return self._map(c["shard"], "frames")[c["frame_start"] + start: c["frame_start"] + stop]

    def audio(self, i: int) -> np.ndarray:
        """(N,) float32 audio of clip i at 16 kHz, exactly as long as its frames."""
        c = self.clips[i]
        raw = self._map(c["shard"], "audio")[c["audio_start"]: c["audio_start"] + c["n_samples"]]
        return raw.astype(np.float32) / 32768.0

    def still(self, actor: str) -> np.ndarray:
        """(H, W, 3) uint8 still of `actor`."""
        return np.array(self._open("stills")[self.actor_index[actor]])

    def labels(self, i: int) -> dict:
        c = self.clips[i]
        return {"actor": self.actor_index[c["actor"]],
                "emotion": EMOTIONS.index(c["emotion"]) if c["emotion"] in EMOTIONS else -1}


class FrameIndex:
    """All frames of a split's clips, numbered 0..len-1: `locate(k)` -> (clip index, frame t)."""

    def __init__(self, data: Prepared, split: str | tuple[str, ...]):
        self.ids = data.split(split)
        lengths = np.array([data.clips[i]["n_frames"] for i in self.ids], np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(lengths)])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def locate(self, k: int) -> tuple[int, int]:
        j = int(np.searchsorted(self.offsets, k, side="right")) - 1
        return self.ids[j], int(k - self.offsets[j])


class ClipDataset(Dataset):
    """Whole clips: audio (N,), frames (T, H, W, 3) uint8, still (H, W, 3) uint8, labels.

    `max_frames` takes a random window of that many frames (with its audio) from longer clips.
    """

    def __init__(self, root: str | os.PathLike, split: str | tuple[str, ...] = "train",
                 max_frames: int | None = None, seed: int = 0):
        self.data = Prepared(root)
        self.ids = self.data.split(split)
        self.max_frames = max_frames
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, k: int) -> dict:
        i = self.ids[k]
        c = self.data.clips[i]
        start, stop = 0, c["n_frames"]
        if self.max_frames and c["n_frames"] > self.max_frames:
            start = int(self.rng.integers(0, c["n_frames"] - self.max_frames + 1))
            stop = start + self.max_frames
        audio = self.data.audio(i)[frame_to_sample(start, c["fps"]): frame_to_sample(stop, c["fps"])]
        return {"audio": torch.from_numpy(np.ascontiguousarray(audio)),
                "frames": as_tensor(self.data.frames(i, start, stop)),
                "still": torch.from_numpy(self.data.still(c["actor"])),
                "fps": c["fps"], "start": start, "clip": i, "id": c["id"], **self.data.labels(i)}


class FrameDataset(Dataset):
    """Single frames with the audio context around them.

    Item: frame (H, W, 3) uint8, audio (2 * context samples) centred on the frame's centre
    (zero-padded at the clip's ends), the frame's index t in its clip, the clip's index, labels.
    """

    def __init__(self, root: str | os.PathLike, split: str | tuple[str, ...] = "train", context: float = 0.2):
        self.data = Prepared(root)
        self.index = FrameIndex(self.data, split)
        self.half = int(round(context * SAMPLE_RATE))

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, k: int) -> dict:
        i, t = self.index.locate(k)
        c = self.data.clips[i]
        audio = self.data.audio(i)
        centre = (2 * t + 1) * SAMPLE_RATE // (2 * c["fps"])
        lo, hi = centre - self.half, centre + self.half
        window = np.zeros(2 * self.half, np.float32)
        a, b = max(lo, 0), min(hi, audio.size)
        window[a - lo: b - lo] = audio[a:b]
        return {"frame": as_tensor(self.data.frames(i, t, t + 1)[0]),
                "audio": torch.from_numpy(window), "t": t, "clip": i,
                "still": torch.from_numpy(self.data.still(c["actor"])), **self.data.labels(i)}


class Frames(Dataset):
    """Stage 2's training items: random frames of a split's clips, each with its c window, an off-sync c
    window (>= offsync_min frames away), ν and μ of its clip (student's or teacher's, see train/stage2.py
    --nu-source/--mu-source), and T_id's maps of the actor's still (D_ID's real side)."""

    def __init__(self, data: Prepared, feats, targets: dict, split, context: int, offsync_min: int,
                 mu_source: str = "student", nu_source: str = "student"):
        self.data, self.f, self.context, self.off = data, feats, context, offsync_min
        self.mu = feats.mu if mu_source == "student" else targets["mu_star"].astype(np.float32)
        self.nu_source, self.nu_star = nu_source, targets["nu_star"].astype(np.float32)
        self.index = FrameIndex(data, split)
        self.maps = [torch.from_numpy(targets[f"still_map{j}"].astype(np.float32)) for j in range(3)]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, k: int) -> dict:
        i, t = self.index.locate(k)
        c = self.data.clips[i]
        n, fps = c["n_frames"], c["fps"]
        far = [u for u in range(n) if abs(u - t) >= self.off] or [u for u in range(n) if u != t] or [t]
        t_off = int(np.random.choice(far))
        a = self.data.actor_index[c["actor"]]
        frame = as_tensor(self.data.frames(i, t, t + 1)[0]).permute(2, 0, 1).float() / 127.5 - 1
        f = self.f.pick()  # the clean audio's c, or a degraded copy's (s2v.features.AugmentedFeatures)
        return {"frame": frame, "c": torch.from_numpy(f.window(i, t, fps, self.context)),
                "c_off": torch.from_numpy(f.window(i, t_off, fps, self.context)),
                "nu": torch.from_numpy(self.nu(i)), "mu": torch.from_numpy(self.mu[i]),
                "maps": [m[a] for m in self.maps]}

    def nu(self, i: int) -> np.ndarray:
        """(D,) the ν frame i's clip is generated from: the student's, the teacher's ν*, or either at random."""
        teacher = self.nu_source == "teacher" or (self.nu_source == "mix" and np.random.random() < 0.5)
        return self.nu_star[i] if teacher else self.f.nu[i]


class SyncWindows(Frames):
    """Windows for the expert sync loss (train/stage2.py --lambda-sync-expert): 5 consecutive frames of a
    split's clip, each frame's c window (5, W, c_dim), the clip's ν and μ as in `Frames`, and `candidates`
    MFCC windows (K, 1, 13, 20) of which index 0 starts with the video window and the others are shifted
    by min_shift..15 frames (s2v.syncnet.shifted_starts)."""

    def __init__(self, data: Prepared, feats, targets: dict, split, context: int, candidates: int = 8,
                 min_shift: int = 2, mu_source: str = "student", nu_source: str = "student"):
        from .syncnet import VIDEO_WINDOW

        super().__init__(data, feats, targets, split, context, 1, mu_source, nu_source)
        self.k, self.min_shift, self.w = candidates, min_shift, VIDEO_WINDOW
        short = [i for i in self.index.ids if data.clips[i]["n_frames"] < VIDEO_WINDOW + 2 * min_shift]
        if short:
            raise ValueError(f"{len(short)} clips of the {split} split are shorter than {VIDEO_WINDOW + 2 * min_shift} "
                             "frames: too short for the expert sync loss")

    def __getitem__(self, k: int) -> dict:
        from .syncnet import audio_windows, mfcc, mfcc_start, shifted_starts

        i, t = self.index.locate(k)
        c = self.data.clips[i]
        n, fps = c["n_frames"], c["fps"]
        t = min(t, n - self.w)
        rng = np.random.default_rng(torch.randint(0, 2 ** 31, ()).item())  # seeded per loader worker
        starts = shifted_starts(rng, t, n, self.k, self.min_shift)
        f = self.f.pick()  # c from the clean or a degraded copy; the MFCC windows are the clean audio's
        return {"c": torch.from_numpy(np.stack([f.window(i, u, fps, self.context) for u in range(t, t + self.w)])),
                "nu": torch.from_numpy(self.nu(i)), "mu": torch.from_numpy(self.mu[i]),
                "mfcc": audio_windows(mfcc(self.data.audio(i)), [mfcc_start(s, fps) for s in starts]).float()}


class DeviceFrames:
    """`Frames`' batches drawn on the accelerator: a split's frames (uint8), the stage-1 features, ν, μ and the
    stills' T_id maps are copied to `device` once, and each batch is gathered there by index, so no DataLoader
    worker, collation or host-to-device copy stands between the GPU and its next step (train/stage2.py uses it
    on CUDA when the split fits; `fits` says whether it does).

    Items are drawn uniformly with replacement (a DataLoader shuffles without), each with an off-sync window
    drawn uniformly from the frames >= offsync_min away, as `Frames.__getitem__` does; ν, μ and the maps are
    `Frames`' own arrays. `next(batch_size)` returns the same dict as a collated batch of `Frames`.
    """

    def __init__(self, frames: Frames, device, dtype=torch.float32):
        data, f, dev = frames.data, frames.f, torch.device(device)
        ids = frames.index.ids
        self.device, self.dtype, self.context, self.off = dev, dtype, frames.context, frames.off
        n = torch.tensor([data.clips[i]["n_frames"] for i in ids])
        self.starts = torch.cat([torch.zeros(1, dtype=torch.long), n.cumsum(0)]).to(dev)  # per split clip
        self.clip_of = torch.repeat_interleave(torch.arange(len(ids)), n).to(dev)  # split frame -> split clip
        self.n = n.to(dev)
        self.fps = torch.tensor([data.clips[i]["fps"] for i in ids]).to(dev)
        self.c_start = torch.from_numpy(f.offsets[np.asarray(ids)]).to(dev)
        self.c_len = torch.from_numpy(f.offsets[np.asarray(ids) + 1] - f.offsets[np.asarray(ids)]).to(dev)
        self.c = torch.from_numpy(np.array(f.c)).to(dev)  # (T_all, H) float16: every clip's, indexed by c_start
        self.nu = torch.from_numpy(np.asarray(f.nu[ids], np.float32)).to(dev)
        self.nu_star = torch.from_numpy(frames.nu_star[ids]).to(dev)
        self.nu_source = frames.nu_source
        self.mu = torch.from_numpy(np.asarray(frames.mu[ids], np.float32)).to(dev)
        actor = torch.tensor([data.actor_index[data.clips[i]["actor"]] for i in ids])
        self.actor = actor.to(dev)
        self.maps = [m.to(dev) for m in frames.maps]
        # the frames, clip after clip, read shard by shard from the memory maps
        size = data.size
        self.frames = torch.empty((int(n.sum()), size, size, 3), dtype=torch.uint8, device=dev)
        for j, i in enumerate(ids):
            s = int(self.starts[j])
            self.frames[s:s + int(n[j])] = as_tensor(data.frames(i)).to(dev)

    @staticmethod
    def nbytes(frames: Frames) -> int:
        """Accelerator memory the split would take (frames dominate; the features are counted too)."""
        s = frames.data.size
        return len(frames.index) * s * s * 3 + int(np.asarray(frames.f.c).nbytes)

    @staticmethod
    def fits(frames: Frames, device, share: float = 0.4) -> bool:
        """True on CUDA when the split takes at most `share` of the device's free memory."""
        device = torch.device(device)
        if device.type != "cuda":
            return False
        free, _ = torch.cuda.mem_get_info(device)
        return DeviceFrames.nbytes(frames) <= share * free

    def __len__(self) -> int:
        return int(self.starts[-1])

    def _window(self, j: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """(B, 2*context+1, H) c around video frame t of split clip j (s2v.generator.context_windows)."""
        from .audio import frame_to_cpc

        centre = frame_to_cpc(t, self.fps[j])
        k = torch.arange(-self.context, self.context + 1, device=self.device)
        idx = (centre[:, None] + k[None]).clamp(min=0)
        idx = torch.minimum(idx, self.c_len[j, None] - 1) + self.c_start[j, None]
        return self.c[idx].to(self.dtype)

    def next(self, batch_size: int) -> dict:
        return self.gather(torch.randint(len(self), (batch_size,), device=self.device))

    def gather(self, k: torch.Tensor) -> dict:
        """The batch of the split's frames k (as numbered by `FrameIndex`)."""
        dev, batch_size = self.device, len(k)
        j = self.clip_of[k]
        t, n = k - self.starts[j], self.n[j]
        # off-sync frame: uniform over u with |u - t| >= off; else any u != t; else t (a 1-frame clip)
        left = (t - self.off + 1).clamp(min=0)
        right = (n - t - self.off).clamp(min=0)
        far = left + right
        r = (torch.rand(batch_size, device=dev) * far.clamp(min=1)).long()
        u_far = torch.where(r < left, r, t + self.off + (r - left))
        r2 = (torch.rand(batch_size, device=dev) * (n - 1).clamp(min=1)).long()
        u_any = torch.where(r2 < t, r2, r2 + 1)
        t_off = torch.where(far > 0, u_far, torch.where(n > 1, u_any, t))
        if self.nu_source == "teacher":
            nu = self.nu_star[j]
        elif self.nu_source == "mix":
            nu = torch.where(torch.rand(batch_size, 1, device=dev) < 0.5, self.nu_star[j], self.nu[j])
        else:
            nu = self.nu[j]
        frame = self.frames[k].permute(0, 3, 1, 2).to(self.dtype) / 127.5 - 1  # channels_last in memory
        a = self.actor[j]
        return {"frame": frame, "c": self._window(j, t), "c_off": self._window(j, t_off), "nu": nu, "mu": self.mu[j],
                "maps": [m[a] for m in self.maps]}
