"""The three discriminators of stage 2 (paper eq. 4-6), one contract for all:
`forward(...) -> (logits (B, N), features [intermediate maps])`.

- D_ID judges identity maps: the generator's ν̃ (fake) against T_id's maps of the speaker's still (real).
- D_fr judges frames (PatchGAN: one logit per patch).
- D_sync judges (c window, frame) pairs: in sync (real), off sync or generated (fake).

Each is one entry of `ADVERSARIES` (after audiocraft's adversarial losses): its network, its learning rate
(paper 3.1), the generator's LSGAN term and its own loss. The container, the optimizers and both halves of
train/stage2.py's step are built from that table, so a new discriminator is one entry.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from torch.nn.utils import spectral_norm

from .losses import lsgan_d, lsgan_g, sync_d
from .modeling import Pretrained


def _down(c_in: int, c_out: int, norm: bool = True) -> nn.Sequential:
    layers = [spectral_norm(nn.Conv2d(c_in, c_out, 4, 2, 1))]
    return nn.Sequential(*layers, nn.LeakyReLU(0.2, True))


@dataclass(frozen=True)
class DiscriminatorsConfig:
    size: int = 64
    c_dim: int = 256
    window: int = 1
    id_channels: tuple[int, int, int] = (64, 32, 16)
    width: int = 64


class IdentityD(nn.Module):
    """D_ID over [map at S/8, S/4, S/2] (coarse to fine): fine -> down, joined by the coarser maps."""

    def __init__(self, cfg: DiscriminatorsConfig):
        super().__init__()
        c3, c2, c1 = cfg.id_channels
        w = cfg.width
        self.d1 = _down(c1, w)  # S/2 -> S/4
        self.d2 = _down(w + c2, 2 * w)  # S/4 -> S/8
        self.d3 = _down(2 * w + c3, 4 * w)  # S/8 -> S/16
        self.head = spectral_norm(nn.Conv2d(4 * w, 1, 3, padding=1))

    def forward(self, maps: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        m3, m2, m1 = maps
        h1 = self.d1(m1)
        h2 = self.d2(torch.cat([h1, m2], 1))
        h3 = self.d3(torch.cat([h2, m3], 1))
        return self.head(h3).flatten(1), [h1, h2, h3]


class FrameD(nn.Module):
    """D_fr: PatchGAN over (B, 3, S, S) frames in [-1, 1], down to S/16 patches."""

    def __init__(self, cfg: DiscriminatorsConfig):
        super().__init__()
        w = cfg.width
        chans = [3, w, 2 * w, 4 * w, 4 * w]
        self.downs = nn.ModuleList(_down(a, b) for a, b in zip(chans[:-1], chans[1:]))
        self.head = spectral_norm(nn.Conv2d(chans[-1], 1, 3, padding=1))

    def forward(self, frame: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        feats = []
        h = frame
        for d in self.downs:
            h = d(h)
            feats.append(h)
        return self.head(h).flatten(1), feats


class SyncD(nn.Module):
    """D_sync: (c window (B, W, c_dim), frame) -> one logit; the frame's lower half carries the mouth."""

    def __init__(self, cfg: DiscriminatorsConfig):
        super().__init__()
        w = cfg.width
        chans = [3, w, 2 * w, 4 * w]
        self.frame = nn.Sequential(*[_down(a, b) for a, b in zip(chans[:-1], chans[1:])],
                                   nn.AdaptiveAvgPool2d(1), nn.Flatten(), spectral_norm(nn.Linear(4 * w, 256)))
        self.audio = nn.Sequential(spectral_norm(nn.Linear(cfg.window * cfg.c_dim, 256)), nn.LeakyReLU(0.2, True),
                                   spectral_norm(nn.Linear(256, 256)))
        self.head = nn.Sequential(nn.LeakyReLU(0.2, True), spectral_norm(nn.Linear(512, 256)), nn.LeakyReLU(0.2, True),
                                  spectral_norm(nn.Linear(256, 1)))

    def forward(self, c: torch.Tensor, frame: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        if c.ndim == 2:
            c = c.unsqueeze(1)
        h = frame.shape[-2]
        v = self.frame(frame[..., h // 2:, :])  # nose down: where the sync shows
        a = self.audio(c.reshape(c.shape[0], -1))
        return self.head(torch.cat([v, a], 1)), [v, a]


@dataclass(frozen=True)
class Adversary:
    """One discriminator's part in stage 2. The losses take `D` (a callable `D(name, *inputs)`: the
    container, or its distributed wrapper so that gradients are synced) and the step's tensors `s`:
    real, fake (B, 3, S, S); c, c_off (B, W, c_dim); maps, real_maps (ν̃ and T_id's maps of the still)."""

    network: Callable[[DiscriminatorsConfig], nn.Module]
    lr: float  # RMSProp learning rate
    g_loss: Callable[[Callable, dict], torch.Tensor]  # the generator's LSGAN term (D frozen)
    d_loss: Callable[[Callable, dict], torch.Tensor]  # the discriminator's own loss (fake detached)
    needs_identity_branch: bool = False


# The discriminators' own losses judge all their inputs in one call (real and fake stacked on the batch axis,
# split after): the same logits as one call each (no discriminator has a batch statistic), a third of the kernel
# launches, which is what bounds a GPU step at these sizes, and one spectral-norm power iteration per step.
def _id_d(D, s):
    b = s["maps"][0].shape[0]
    logits = D("id", [torch.cat([r, f]) for r, f in zip(s["real_maps"], s["maps"])])[0]
    return lsgan_d(logits[:b], logits[b:])


def _fr_d(D, s):
    logits = D("fr", torch.cat([s["real"], s["fake"]]))[0]
    return lsgan_d(*logits.chunk(2))


def _sync_d(D, s):
    logits = D("sync", torch.cat([s["c"], s["c_off"], s["c"]]), torch.cat([s["real"], s["real"], s["fake"]]))[0]
    return sync_d(*logits.chunk(3))


ADVERSARIES: dict[str, Adversary] = {  # order = the order of modules and optimizers in checkpoints
    "id": Adversary(IdentityD, 3e-4, lambda D, s: lsgan_g(D("id", s["maps"])[0]), _id_d, needs_identity_branch=True),
    "fr": Adversary(FrameD, 1e-4, lambda D, s: lsgan_g(D("fr", s["fake"])[0]), _fr_d),
    "sync": Adversary(SyncD, 1e-5, lambda D, s: lsgan_g(D("sync", s["c"], s["fake"])[0]), _sync_d),
}


def active_adversaries(identity_branch: bool, without: tuple[str, ...] = ()) -> list[str]:
    """The discriminators that take part: all, less D_ID for a generator without the identity branch and
    less those named in `without` (train/stage2.py --no-d-sync)."""
    bad = [k for k in without if k not in ADVERSARIES]
    if bad:
        raise ValueError(f"no adversary {bad[0]!r}; there are {', '.join(ADVERSARIES)}")
    return [k for k, a in ADVERSARIES.items() if (identity_branch or not a.needs_identity_branch) and k not in without]


class Discriminators(Pretrained):
    """Every discriminator of `ADVERSARIES` in one module (saved and restored together)."""

    config_class = DiscriminatorsConfig
    model_type = "s2v-discriminators"

    def __init__(self, config: DiscriminatorsConfig = DiscriminatorsConfig()):
        super().__init__()
        self.config = config
        for name, adv in ADVERSARIES.items():
            self.add_module(name, adv.network(config))

    def forward(self, kind: str, *inputs: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """`D("fr", frame)`, `D("sync", c, frame)`, `D("id", maps)`: one entry point, so a
        distributed wrapper sees every discriminator call."""
        return getattr(self, kind)(*inputs)
