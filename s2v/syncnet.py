"""The sync expert: SyncNet (Chung & Zisserman, "Out of time", 2016) and its evaluation protocol.

Layout of syncnet_python's `S` (module names `netcnnaud`, `netfcaud`, `netcnnlip`, `netfclip`), so
the public `syncnet_v2.model` loads with `import_syncnet_v2`. Lip stream: 5 frames (B, 3, 5, S, S),
pixel values 0-255 in BGR order as the public model was fed; audio stream: 13 MFCC x 20 steps
(0.2 s at 100 Hz), MFCCs as python_speech_features computes them on int16-scaled samples.

Protocol (`sync_scores`): one lip embedding per 5-frame window, one audio embedding per 20-step
MFCC window starting at the same time, Euclidean distances at offsets -15..+15 frames, averaged
over the clip: LSE-D = min over offsets, LSE-C = median - min, offset = vshift - argmin in frames
as syncnet_python reports it (positive: the video lags the audio).

Our own expert (`train/syncnet.py`) keeps the layout with a channel multiplier and a smaller input:
`region="lower"` feeds the lower half of the face stretched to S x S, which is where a 64 px
synthetic face moves.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .audio import SAMPLE_RATE
from .data import as_tensor
from .modeling import Pretrained

MFCC_RATE = 100  # MFCC steps per second
MFCC_WINDOW = 20  # steps per audio window (0.2 s)
VIDEO_WINDOW = 5  # frames per lip window
VSHIFT = 15  # offsets searched, in frames


# ------------------------------------------------------------------------------------------ MFCC

def _mel_filterbank(nfilt: int, nfft: int, rate: int) -> np.ndarray:
    hz2mel = lambda hz: 2595 * np.log10(1 + hz / 700.0)  # noqa: E731
    mel2hz = lambda m: 700 * (10 ** (m / 2595.0) - 1)  # noqa: E731
    points = np.linspace(hz2mel(0), hz2mel(rate / 2), nfilt + 2)
    bins = np.floor((nfft + 1) * mel2hz(points) / rate).astype(int)
    fb = np.zeros((nfilt, nfft // 2 + 1))
    for j in range(nfilt):
        a, b, c = bins[j], bins[j + 1], bins[j + 2]
        fb[j, a:b] = (np.arange(a, b) - a) / max(b - a, 1)
        fb[j, b:c] = (c - np.arange(b, c)) / max(c - b, 1)
    return fb


def mfcc(audio: np.ndarray, rate: int = SAMPLE_RATE, numcep: int = 13, nfilt: int = 26, nfft: int = 512,
         preemph: float = 0.97, ceplifter: int = 22) -> np.ndarray:
    """(N,) float audio in [-1, 1] -> (13, T) MFCCs at 100 Hz, python_speech_features' defaults
    (25 ms rectangular frames, 10 ms step, c0 replaced by log frame energy), on int16-scaled samples."""
    from scipy.fft import dct

    x = np.asarray(audio, np.float64) * 32768.0
    if x.size == 0:
        raise ValueError("empty audio")
    x = np.append(x[0], x[1:] - preemph * x[:-1])
    flen, step = int(round(0.025 * rate)), int(round(0.01 * rate))
    n = 1 if x.size <= flen else 1 + int(math.ceil((x.size - flen) / step))
    x = np.concatenate([x, np.zeros((n - 1) * step + flen - x.size)])
    frames = x[np.arange(flen)[None] + step * np.arange(n)[:, None]]
    power = np.abs(np.fft.rfft(frames, nfft)) ** 2 / nfft
    eps = np.finfo(float).eps
    energy = np.maximum(power.sum(1), eps)
    feat = np.log(np.maximum(power @ _mel_filterbank(nfilt, nfft, rate).T, eps))
    feat = dct(feat, type=2, axis=1, norm="ortho")[:, :numcep]
    feat *= 1 + (ceplifter / 2.0) * np.sin(np.pi * np.arange(numcep) / ceplifter)
    feat[:, 0] = np.log(energy)
    return feat.T.astype(np.float32)


def mfcc_start(frame: int, fps: float) -> int:
    """First MFCC step of video frame `frame` (4 per frame at 25 fps; 10/3 at 30 fps, rounded)."""
    return int(round(frame * MFCC_RATE / fps))


# ----------------------------------------------------------------------------------------- model

@dataclass(frozen=True)
class SyncNetConfig:
    image_size: int = 224  # lip-stream input side
    width: float = 1.0  # channel multiplier; 1.0 with image_size 224 is the public layout
    embed_dim: int = 1024
    region: str = "face"  # face: the whole crop (public); lower: the lower half stretched to S x S
    bgr: bool = True  # channel order the lip stream expects
    dereverb: bool = False  # audio through WPE (s2v.dereverb) before its MFCCs: the front end for room audio

    def __post_init__(self):
        if self.region not in ("face", "lower"):
            raise ValueError(f"region must be 'face' or 'lower', got {self.region!r}")


def _bn_relu(conv: nn.Module, c: int, bn: type) -> list[nn.Module]:
    return [conv, bn(c), nn.ReLU(inplace=True)]


class SyncNet(Pretrained):
    """`embed_audio(mfcc (B, 1, 13, 20))` and `embed_video(frames (B, 3, 5, S, S))` -> (B, embed_dim)."""

    config_class = SyncNetConfig
    model_type = "s2v-syncnet"

    def __init__(self, config: SyncNetConfig = SyncNetConfig()):
        super().__init__()
        self.config = config
        w = lambda c: max(8, int(round(c * config.width)))  # noqa: E731
        a = [w(64), w(192), w(384), w(256), w(256), w(512)]
        self.netcnnaud = nn.Sequential(
            *_bn_relu(nn.Conv2d(1, a[0], 3, 1, 1), a[0], nn.BatchNorm2d), nn.MaxPool2d(1, 1),
            *_bn_relu(nn.Conv2d(a[0], a[1], 3, 1, 1), a[1], nn.BatchNorm2d), nn.MaxPool2d(3, (1, 2)),
            *_bn_relu(nn.Conv2d(a[1], a[2], 3, padding=1), a[2], nn.BatchNorm2d),
            *_bn_relu(nn.Conv2d(a[2], a[3], 3, padding=1), a[3], nn.BatchNorm2d),
            *_bn_relu(nn.Conv2d(a[3], a[4], 3, padding=1), a[4], nn.BatchNorm2d), nn.MaxPool2d(3, 2),
            *_bn_relu(nn.Conv2d(a[4], a[5], (5, 4)), a[5], nn.BatchNorm2d))
        v = [w(96), w(256), w(256), w(256), w(256), w(512)]
        trunk = [
            *_bn_relu(nn.Conv3d(3, v[0], (5, 7, 7), (1, 2, 2), 0), v[0], nn.BatchNorm3d),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
            *_bn_relu(nn.Conv3d(v[0], v[1], (1, 5, 5), (1, 2, 2), (0, 1, 1)), v[1], nn.BatchNorm3d),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
            *_bn_relu(nn.Conv3d(v[1], v[2], (1, 3, 3), padding=(0, 1, 1)), v[2], nn.BatchNorm3d),
            *_bn_relu(nn.Conv3d(v[2], v[3], (1, 3, 3), padding=(0, 1, 1)), v[3], nn.BatchNorm3d),
            *_bn_relu(nn.Conv3d(v[3], v[4], (1, 3, 3), padding=(0, 1, 1)), v[4], nn.BatchNorm3d),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2))]
        with torch.no_grad():  # the last conv covers what is left of the image (6 x 6 at 224 px)
            side = nn.Sequential(*trunk)(torch.zeros(1, 3, VIDEO_WINDOW, config.image_size, config.image_size)).shape[-1]
        self.netcnnlip = nn.Sequential(*trunk, *_bn_relu(nn.Conv3d(v[4], v[5], (1, side, side)), v[5], nn.BatchNorm3d))
        self.netfcaud = nn.Sequential(nn.Linear(a[5], a[5]), nn.BatchNorm1d(a[5]), nn.ReLU(),
                                      nn.Linear(a[5], config.embed_dim))
        self.netfclip = nn.Sequential(nn.Linear(v[5], v[5]), nn.BatchNorm1d(v[5]), nn.ReLU(),
                                      nn.Linear(v[5], config.embed_dim))

    def embed_audio(self, x: torch.Tensor) -> torch.Tensor:
        return self.netfcaud(self.netcnnaud(x).flatten(1))

    def embed_video(self, x: torch.Tensor) -> torch.Tensor:
        return self.netfclip(self.netcnnlip(x).flatten(1))

    def forward(self, video: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One call for both streams (so DDP sees every parameter used)."""
        return self.embed_video(video), self.embed_audio(audio)

    def lip_input(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        return lip_input(frames, self.config)


def lip_input(frames: np.ndarray | torch.Tensor, config: SyncNetConfig) -> torch.Tensor:
    """(T, H, W, 3) RGB uint8 frames -> (T, 3, S, S) float 0-255 in the region and channel order of `config`."""
    return lip_tensor(torch.as_tensor(np.array(frames)).permute(0, 3, 1, 2).float(), config)


def lip_tensor(x: torch.Tensor, config: SyncNetConfig) -> torch.Tensor:
    """(T, 3, H, W) RGB float 0-255 -> (T, 3, S, S) in the region and channel order of `config`;
    differentiable, so a generator can be trained through the expert (s2v.losses.l_sync_expert)."""
    import torch.nn.functional as F

    if config.region == "lower":
        x = x[:, :, x.shape[2] // 2:]
    s = config.image_size
    if tuple(x.shape[-2:]) != (s, s):
        x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False)
    return x.flip(1) if config.bgr else x


def shifted_starts(rng: np.random.Generator, t: int, n: int, k: int, min_shift: int) -> list[int]:
    """Frame t and k - 1 other window starts of a clip of n frames, each shifted from t by min_shift..15
    frames (the sync expert's candidates: index 0 is in sync; repeats when the clip is too short)."""
    shifts = [s for s in range(-VSHIFT, VSHIFT + 1) if abs(s) >= min_shift and 0 <= t + s <= n - VIDEO_WINDOW]
    if not shifts:
        raise ValueError(f"a clip of {n} frames has no window {min_shift}+ frames from frame {t}")
    return [t] + [t + int(s) for s in rng.choice(shifts, size=k - 1, replace=len(shifts) < k - 1)]


def video_windows(x: torch.Tensor, starts) -> torch.Tensor:
    """(T, 3, S, S) -> (len(starts), 3, 5, S, S)."""
    return torch.stack([x[s:s + VIDEO_WINDOW] for s in starts]).permute(0, 2, 1, 3, 4)


def audio_windows(m: np.ndarray, starts) -> torch.Tensor:
    """(13, T_mfcc) -> (len(starts), 1, 13, 20), zero-padded past the end."""
    m = np.pad(m, ((0, 0), (0, MFCC_WINDOW)))
    return torch.from_numpy(np.stack([m[:, s:s + MFCC_WINDOW] for s in starts]))[:, None]


@torch.no_grad()
def embed_video_clip(net: SyncNet, frames, batch: int = 256) -> torch.Tensor:
    """(T - 4, D) lip embeddings of every 5-frame window of a clip's (T, H, W, 3) uint8 frames (numpy, or a
    tensor on any device)."""
    dev = next(net.parameters()).device
    n = len(frames) - VIDEO_WINDOW + 1
    if n < 1:
        raise ValueError(f"a clip of {len(frames)} frames is shorter than one {VIDEO_WINDOW}-frame window")
    frames = as_tensor(frames).to(dev)
    x = lip_tensor(frames.permute(0, 3, 1, 2).float(), net.config)
    out = []
    for s in range(0, n, batch):
        idx = range(s, min(s + batch, n))
        out.append(net.embed_video(video_windows(x, idx)).float())
    return torch.cat(out)


@torch.no_grad()
def embed_audio_clip(net: SyncNet, audio: np.ndarray, fps: float, n: int, batch: int = 256,
                     m: np.ndarray | None = None) -> torch.Tensor:
    """(n, D) audio embeddings of the MFCC windows of video frames 0..n-1 (n = T - 4 for a clip of T frames):
    the same for every video of that audio, so an evaluation computes it once per clip and expert. `m`: the
    audio's `mfcc`, when already computed (ignored by an expert with the `dereverb` front end, which computes
    its own from the dereverberated audio)."""
    dev = next(net.parameters()).device
    if getattr(net.config, "dereverb", False):
        from .dereverb import dereverb

        m = mfcc(dereverb(audio))
    elif m is None:
        m = mfcc(audio)
    out = []
    for s in range(0, n, batch):
        out.append(net.embed_audio(audio_windows(m, [mfcc_start(i, fps) for i in range(s, min(s + batch, n))])
                                   .to(dev)).float())
    return torch.cat(out)


def offset_distances(video: torch.Tensor, audio: torch.Tensor, vshift: int = VSHIFT) -> torch.Tensor:
    """(2 vshift + 1,) mean distance between each lip window t and audio window t + d, d = -vshift..vshift
    (audio zero-padded at the ends, as syncnet_python does)."""
    pad = torch.nn.functional.pad(audio, (0, 0, vshift, vshift))
    n = len(video)
    d = torch.stack([torch.nn.functional.pairwise_distance(video, pad[k:k + n]) for k in range(2 * vshift + 1)], 1)
    return d.mean(0)


def sync_scores(net: SyncNet, frames: np.ndarray, audio: np.ndarray, fps: float, vshift: int = VSHIFT,
                audio_embedding: torch.Tensor | None = None, video_embedding: torch.Tensor | None = None) -> dict:
    """LSE-D (min mean distance), LSE-C (median - min) and the offset in frames (0 = in sync; syncnet_python's
    sign: vshift - argmin, so a positive offset means the video lags the audio). `audio_embedding` /
    `video_embedding`: the clip's `embed_audio_clip` / `embed_video_clip`, when several videos are scored
    against one audio or one video against several audios (`frames` is then not read)."""
    net.eval()
    v = embed_video_clip(net, frames) if video_embedding is None else video_embedding
    a = embed_audio_clip(net, audio, fps, len(v)) if audio_embedding is None else audio_embedding[:len(v)]
    return scores_of(offset_distances(v, a, vshift), vshift)


def scores_of(mdist: torch.Tensor, vshift: int = VSHIFT) -> dict:
    """LSE-D, LSE-C and offset from the (2 vshift + 1,) mean distances of `offset_distances`."""
    mdist = mdist.float().cpu()
    k = int(torch.argmin(mdist))
    return {"lse_d": float(mdist[k]), "lse_c": float(mdist.median() - mdist[k]), "offset": vshift - k,
            "distances": mdist.numpy()}


def seeded_test_clips(data, n: int, seed: int) -> list[int]:
    """Up to `n` of `data`'s test clips long enough to score (over 2 lip windows), drawn with `seed`, in order."""
    ids = [i for i in data.split("test") if data.clips[i]["n_frames"] > 2 * VIDEO_WINDOW]
    return sorted(np.random.default_rng(seed).choice(ids, size=min(n, len(ids)), replace=False).tolist()) if ids else []


def ground_truth_scores(net: SyncNet, data, ids: list[int], seed: int, conditions: dict | None = None,
                        progress: bool = False) -> dict[str, list[dict]]:
    """{"clean": [sync_scores of each clip's own video against its audio], and per name in `conditions` (name ->
    function(wav, rng), e.g. `s2v.degrade.CONDITIONS`) the same against the degraded audio}. The video side is
    embedded once per clip; the degradations are drawn from one generator seeded with `seed`, clip by clip, so
    every expert scored with the same seed hears the same audio."""
    from tqdm.auto import tqdm

    net.eval()
    conditions = conditions or {}
    out: dict[str, list] = {"clean": [], **{c: [] for c in conditions}}
    rng = np.random.default_rng(seed)
    for i in tqdm(ids, desc="clips", disable=not progress, leave=False):
        video = embed_video_clip(net, np.asarray(data.frames(i)))
        audio, fps = data.audio(i), data.clips[i]["fps"]
        out["clean"].append(sync_scores(net, None, audio, fps, video_embedding=video))
        for c, f in conditions.items():
            out[c].append(sync_scores(net, None, f(audio, rng), fps, video_embedding=video))
    return out


def import_syncnet_v2(path: str | os.PathLike) -> SyncNet:
    """Load the public `syncnet_v2.model` (a state dict keyed netcnnaud.*, netfcaud.*, netcnnlip.*, netfclip.*)."""
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{Path(path).name}: expected a state dict")
    state = {k.removeprefix("__S__."): v for k, v in state.items()}
    net = SyncNet(SyncNetConfig())
    own = net.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]  # 2017 file: none
    bad = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or bad:
        raise ValueError(f"{Path(path).name} is not a syncnet_v2 state dict: missing {missing[:4]}, "
                         f"wrong shape {bad[:4]}")
    net.load_state_dict({k: state[k] for k in own if k in state}, strict=False)
    return net.eval()
