"""The frame generator F(c_t, ν, μ) with its identity branch (paper section 2.2, Fig. 2).

μ is concatenated to c_t (or, beyond the paper, to a short window of c around t); that vector is
decoded from 4x4 up to the frame by transposed convolutions, each followed by two 1x1 convolutions.
ν goes through its own three transposed convolutions, each doubling; after each, a 1x1
convolution aligns the map to the identity teacher's feature map of the same size (image/8, /4,
/2). Those aligned maps are D_ID's "fake" side and are concatenated into the decoder's layer of the
same size. `identity_branch=False` gives the S2F-like ablation: ν joins the input vector instead.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .audio import frame_to_cpc
from .modeling import Pretrained


def context_windows(c: torch.Tensor, n_frames: int, fps: int, context: int) -> torch.Tensor:
    """(T_cpc, H) c of a clip -> (n_frames, 2*context+1, H): c around each video frame's CPC index,
    repeating the edge frames."""
    centre = frame_to_cpc(torch.arange(n_frames), fps)
    idx = (centre[:, None] + torch.arange(-context, context + 1)[None]).clamp(0, c.shape[0] - 1)
    return c[idx.to(c.device)]


C_NORMS = (None, "mean", "standard")


def clip_normalise(c: torch.Tensor, mean: torch.Tensor, std: torch.Tensor | None = None, eps: float = 1e-3):
    """(T, H) c of one clip given `mean` (H,) over its T frames, dimension by dimension: c - c.mean(0) + mean;
    with `std` (H,) also that SD: (c - c.mean(0)) / c.std(0) * std + mean. In c's dtype."""
    x = c.float()
    x = x - x.mean(0)
    if std is not None:
        x = x / x.std(0, unbiased=False).clamp_min(eps) * std.to(x)
    return (x + mean.to(x)).to(c.dtype)


def to_uint8(frames: torch.Tensor, numpy: bool = True):
    """Generator output (T, 3, S, S) in [-1, 1] -> (T, S, S, 3) uint8 images: numpy, or (numpy=False) a tensor
    left on the generator's device."""
    out = ((frames.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1)
    return out.cpu().numpy() if numpy else out


def frame_batch(device) -> int:
    """Frames per generator call: 32 on a CPU (measured on 2 cores at 64 px: 524 frames/s at 32, 413 at 64, 326
    at 256: the activations stay in cache), 512 on an accelerator."""
    return 32 if torch.device(device).type == "cpu" else 512


@torch.no_grad()
def generate_clip(generator: "Generator", c: torch.Tensor, nu: torch.Tensor, mu: torch.Tensor, n_frames: int,
                  fps: int, batch: int | None = None) -> torch.Tensor:
    """All frames of a clip: (n_frames, 3, S, S) in [-1, 1] from its c (T_cpc, H), ν (D,), μ (6,)."""
    return generate_clips(generator, c, [nu], mu, n_frames, fps, batch)[0]


@torch.no_grad()
def generate_clips(generator: "Generator", c: torch.Tensor, nus: list[torch.Tensor], mu: torch.Tensor, n_frames: int,
                   fps: int, batch: int | None = None) -> list[torch.Tensor]:
    """`generate_clip` for several ν of one clip (an evaluation's methods) in shared batches: a list of
    (n_frames, 3, S, S). Same frames as one `generate_clip` per ν (the generator is in eval mode)."""
    batch = batch or frame_batch(c.device)
    win = context_windows(generator.heard(c), n_frames, fps, generator.config.context)
    k = len(nus)
    w_all = win.repeat(k, 1, 1)
    nu_all = torch.stack(nus).repeat_interleave(n_frames, 0)
    out = []
    for s in range(0, k * n_frames, batch):
        w = w_all[s:s + batch]
        out.append(generator(w, nu_all[s:s + batch], mu.expand(len(w), -1))[0])
    return list(torch.cat(out).split(n_frames)) if out else []


@dataclass(frozen=True)
class GeneratorConfig:
    size: int = 64  # output side: 64 (default, CPU) or 128
    c_dim: int = 256  # CPC context size
    context: int = 0  # CPC frames on each side of t (0: c_t alone, the paper's form)
    nu_dim: int = 256
    mu_dim: int = 6
    id_channels: tuple[int, int, int] = (64, 32, 16)  # T_id maps at size/8, /4, /2 (coarse to fine)
    base: int = 256  # decoder channels at 4x4
    min_channels: int = 32
    identity_branch: bool = True
    # beyond the paper: ν is centred and scaled to norm sqrt(nu_dim) on the way in, so the teacher's ν* (a ReLU
    # embedding) and the student's ν (logits matched to it through a softmax, which ignores a shift) land in one
    # space and the generator can be trained on either (train/stage2.py --nu-source)
    nu_norm: bool = False
    # beyond the paper: a voice recorded otherwise (another microphone, room or speaker than the corpus') shifts c_t
    # as a whole; "mean" gives each clip's c the training voices' mean (buffer c_mean) dimension by dimension, as
    # cepstral mean normalisation does, "standard" also their SD (c_std); None: c as the encoder gives it (the paper)
    c_norm: str | None = None

    def __post_init__(self):
        if self.c_norm not in C_NORMS:
            raise ValueError(f"c_norm must be one of {C_NORMS}, got {self.c_norm!r}")
        if self.size < 32 or self.size & (self.size - 1):
            raise ValueError(f"size must be a power of two >= 32, got {self.size}")

    @property
    def window(self) -> int:
        return 2 * self.context + 1

    @property
    def id_sizes(self) -> tuple[int, int, int]:
        return (self.size // 8, self.size // 4, self.size // 2)


def _up(c_in: int, c_out: int) -> nn.Sequential:
    """Transposed conv (x2), then two 1x1 convs (Fig. 2's ⊕ block)."""
    return nn.Sequential(nn.ConvTranspose2d(c_in, c_out, 4, 2, 1), nn.BatchNorm2d(c_out), nn.ReLU(True),
                         nn.Conv2d(c_out, c_out, 1), nn.ReLU(True), nn.Conv2d(c_out, c_out, 1), nn.ReLU(True))


class Generator(Pretrained):
    """F: (c (B, window, c_dim), ν (B, nu_dim), μ (B, mu_dim)) -> (frame (B, 3, S, S) in [-1, 1],
    identity maps [(B, C_i, S/8·2^i, ...)] coarse to fine, empty without the identity branch)."""

    config_class = GeneratorConfig
    model_type = "s2v-generator"

    def __init__(self, config: GeneratorConfig = GeneratorConfig()):
        super().__init__()
        self.config = cfg = config
        in_dim = cfg.window * cfg.c_dim + cfg.mu_dim + (0 if cfg.identity_branch else cfg.nu_dim)
        self.audio = nn.Sequential(nn.Linear(in_dim, 512), nn.LeakyReLU(0.2, True), nn.Linear(512, cfg.base * 16))
        n_up = int(math.log2(cfg.size // 4))
        sizes = [4 * 2 ** (i + 1) for i in range(n_up)]  # decoder output size of each up block
        ch = [max(cfg.min_channels, cfg.base // 2 ** (i + 1)) for i in range(n_up)]
        self.blocks = nn.ModuleList()
        c_in = cfg.base
        self.join = {}  # decoder block index -> identity map index joining after it
        for i, (s, c) in enumerate(zip(sizes, ch)):
            self.blocks.append(_up(c_in, c))
            c_in = c
            if cfg.identity_branch and s in cfg.id_sizes:
                j = cfg.id_sizes.index(s)
                self.join[i] = j
                c_in += cfg.id_channels[j]
        self.to_rgb = nn.Sequential(nn.Conv2d(c_in, c_in, 3, padding=1), nn.ReLU(True), nn.Conv2d(c_in, 3, 3, padding=1),
                                    nn.Tanh())
        if cfg.identity_branch:
            s0, c0 = cfg.size // 16, 128
            self.id_in = nn.Linear(cfg.nu_dim, c0 * s0 * s0)
            self.id_ups = nn.ModuleList()
            self.id_align = nn.ModuleList()
            for j in range(3):
                c_out = max(32, c0 // 2)
                self.id_ups.append(nn.Sequential(nn.ConvTranspose2d(c0, c_out, 4, 2, 1), nn.BatchNorm2d(c_out),
                                                 nn.ReLU(True)))
                self.id_align.append(nn.Conv2d(c_out, cfg.id_channels[j], 1))  # 1x1 alignment to T_id
                c0 = c_out
        if cfg.c_norm:  # set from the training clips by train/stage2.py (`set_c_stats`); saved with the weights
            self.register_buffer("c_mean", torch.zeros(cfg.c_dim))
            self.register_buffer("c_std", torch.ones(cfg.c_dim))

    def set_c_stats(self, mean, std) -> None:
        """The training voices' per-dimension mean and SD of c, which `heard` gives every clip (c_norm)."""
        with torch.no_grad():
            self.c_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
            self.c_std.copy_(torch.as_tensor(std, dtype=torch.float32))

    def heard(self, c: torch.Tensor) -> torch.Tensor:
        """A clip's c (T, H) as the generator reads it: itself, or with `c_norm` moved to the training voices' mean
        (and SD) (`clip_normalise`)."""
        if not self.config.c_norm:
            return c
        return clip_normalise(c, self.c_mean, self.c_std if self.config.c_norm == "standard" else None)

    def identity_maps(self, nu: torch.Tensor) -> list[torch.Tensor]:
        """ν̃: three maps at size/8, /4, /2 with T_id's channels (coarse to fine)."""
        s0 = self.config.size // 16
        h = self.id_in(nu).view(nu.shape[0], -1, s0, s0)
        maps = []
        for up, align in zip(self.id_ups, self.id_align):
            h = up(h)
            maps.append(align(h))
        return maps

    def forward(self, c: torch.Tensor, nu: torch.Tensor, mu: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        cfg = self.config
        if c.ndim == 2:
            c = c.unsqueeze(1)
        if c.shape[1:] != (cfg.window, cfg.c_dim):
            raise ValueError(f"c must be (B, {cfg.window}, {cfg.c_dim}), got {tuple(c.shape)}")
        b = c.shape[0]
        if cfg.nu_norm:
            nu = nu - nu.mean(-1, keepdim=True)
            nu = nu * (cfg.nu_dim ** 0.5 / nu.norm(dim=-1, keepdim=True).clamp_min(1e-6))
        parts = [c.reshape(b, -1), mu] + ([] if cfg.identity_branch else [nu])
        h = self.audio(torch.cat(parts, 1)).view(b, cfg.base, 4, 4)
        maps = self.identity_maps(nu) if cfg.identity_branch else []
        for i, block in enumerate(self.blocks):
            h = block(h)
            if i in self.join:
                h = torch.cat([h, maps[self.join[i]]], 1)
        return self.to_rgb(h), maps
