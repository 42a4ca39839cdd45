"""Stage 2 losses (paper eq. 4-10).

LSGAN with the usual targets, real -> 1 and fake -> 0 (the paper writes real -> 0, fake -> 1; the
two are the same game with the labels swapped). L_sim is L1 on the upper half of the face (image
rows 0 .. H/2, nose up); L_grad is L1 between the gradients of Gaussian-smoothed frames.
Beyond the paper, `l_expr` compares what the frozen emotion teacher sees in a generated frame with
what it sees in the real one, and `l_sync_expert` asks a frozen sync expert whether a window of
generated lips goes with its audio.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

REAL, FAKE = 1.0, 0.0


def lsgan_d(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Discriminator side: ½ E[(D(real) - 1)²] + ½ E[D(fake)²]."""
    return 0.5 * ((real_logits - REAL) ** 2).mean() + 0.5 * ((fake_logits - FAKE) ** 2).mean()


def lsgan_g(fake_logits: torch.Tensor) -> torch.Tensor:
    """Generator side: ½ E[(D(fake) - 1)²]."""
    return 0.5 * ((fake_logits - REAL) ** 2).mean()


def sync_d(in_sync: torch.Tensor, off_sync: torch.Tensor, generated: torch.Tensor) -> torch.Tensor:
    """D_sync (eq. 6 with real -> 1): (c_τ, φ_τ) in sync is real; (c_τ', φ_τ) off sync and
    (c_τ, F(c_τ)) generated are fake, each weighted ½."""
    return ((in_sync - REAL) ** 2).mean() + 0.5 * ((off_sync - FAKE) ** 2).mean() \
        + 0.5 * ((generated - FAKE) ** 2).mean()


def l_sim(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Eq. 8: mean L1 over the upper half of the frame (rows 0 .. H/2), (B, 3, H, W)."""
    h = fake.shape[-2] // 2
    return (fake[..., :h, :] - real[..., :h, :]).abs().mean()


def l_lower(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Beyond the paper (train/stage2.py --lambda-lower): mean L1 over the lower half (rows H/2 .. H), (B, 3, H, W)."""
    h = fake.shape[-2] // 2
    return (fake[..., h:, :] - real[..., h:, :]).abs().mean()


def _gauss_kernel(sigma: float, device, dtype) -> torch.Tensor:
    r = max(1, int(round(2 * sigma)))
    x = torch.arange(-r, r + 1, device=device, dtype=dtype)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def smooth(x: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """ψ: a separable Gaussian blur per channel, reflect padding. (B, C, H, W) -> same."""
    k = _gauss_kernel(sigma, x.device, x.dtype)
    c, r = x.shape[1], k.numel() // 2
    x = F.pad(x, (r, r, r, r), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """∇: forward differences along x and y."""
    return x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]


def l_grad(fake: torch.Tensor, real: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """Eq. 9: L1 between ∇ψ(F) and ∇ψ(φ)."""
    fx, fy = gradients(smooth(fake, sigma))
    rx, ry = gradients(smooth(real, sigma))
    return (fx - rx).abs().mean() + (fy - ry).abs().mean()


def l_expr(teacher, fake: torch.Tensor, real: torch.Tensor, region: str = "full") -> torch.Tensor:
    """Beyond the paper: 1 - cos between the emotion teacher's pooled features (`EmotionTeacher.embed`)
    of the generated and the real frame, both (B, 3, H, W) in [-1, 1]; the teacher stays frozen.
    region "upper": the teacher still sees the whole generated face, but the gradient reaches only its
    upper half (rows 0 .. H/2, where L_sim acts), so the mouth is left to the sync and lower-face terms."""
    if region == "upper":
        h = fake.shape[-2] // 2
        fake = torch.cat([fake[..., :h, :], fake[..., h:, :].detach()], -2)
    elif region != "full":
        raise ValueError(f"region must be 'full' or 'upper', not {region!r}")
    with torch.no_grad():
        target = teacher.embed((real + 1) / 2)
    return (1 - F.cosine_similarity(teacher.embed((fake + 1) / 2), target, dim=1)).mean()


def sync_distances(expert, fake: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
    """(B, K) distances, by the frozen sync expert (s2v.syncnet.SyncNet), between each window of 5 generated
    frames `fake` (B, 5, 3, H, W) in [-1, 1] and its K MFCC windows `audio` (B, K, 1, 13, 20)."""
    from .syncnet import lip_tensor

    b, t = fake.shape[:2]
    k = audio.shape[1]
    x = lip_tensor((fake.flatten(0, 1) + 1) * 127.5, expert.config)  # (B*5, 3, S, S)
    x = x.view(b, t, *x.shape[1:]).transpose(1, 2)  # (B, 3, 5, S, S)
    v = expert.embed_video(x)
    with torch.no_grad():
        a = expert.embed_audio(audio.flatten(0, 1)).view(b, k, -1)
    return (v[:, None].float() - a.float()).pow(2).sum(-1).add(1e-6).sqrt()


def l_sync_expert(expert, fake: torch.Tensor, audio: torch.Tensor, pull: float = 0.0) -> torch.Tensor:
    """Beyond the paper (Wav2Lip's expert sync loss, in the expert's own terms): `fake` (B, 5, 3, H, W) in
    [-1, 1] are windows of consecutive generated frames, `audio` (B, K, 1, 13, 20) MFCC windows of which
    index 0 starts with the video window and the others are shifted. The frozen sync expert embeds both;
    the loss is its training objective, cross-entropy of the in-sync window over the negative distances
    (`sync_distances`), so the generator is pushed to lips the expert finds in sync and not at another
    offset. The cross-entropy only asks the in-sync distance to be the smallest, which lips far from every
    audio window also satisfy (LSE-D, the distance itself, rose by a quarter); `pull` adds that many times
    the mean in-sync distance, drawing the lips to where the expert puts speech."""
    ce, in_sync = sync_expert_terms(expert, fake, audio)
    return ce + pull * in_sync if pull else ce


def sync_expert_terms(expert, fake: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The two parts of `l_sync_expert`, apart (train/stage2.py logs them so): the cross-entropy of the in-sync
    window over the negative distances, and the mean in-sync distance."""
    dist = sync_distances(expert, fake, audio)
    ce = F.cross_entropy(-dist, torch.zeros(len(dist), dtype=torch.long, device=dist.device))
    return ce, dist[:, 0].mean()
