"""Stage 1 students: S_id and S_emo read ω = c_T and distil ν and μ from the face teachers.

Paper section 2.1, eq. 2-3:
    L1 = λ ||μ̄ - μ̄*||² + l_distill(μ, μ*) + λ ||ν̄ - ν̄*||² + l_distill(ν, ν*),   λ = 0.025,
    l_distill(x, y) = - Σ_i softmax(x)_i log softmax(y)_i          (as written: x the student),
where (̄·) is the L2-normalised vector.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .modeling import Pretrained

LAMBDA = 0.025


def l_distill(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Eq. 3 as written: -Σ softmax(x) log softmax(y), averaged over the batch. (B, D), (B, D) -> ()."""
    return -(F.softmax(x, -1) * F.log_softmax(y, -1)).sum(-1).mean()


def l_norm(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """||x̄ - ȳ||² of the L2-normalised vectors, averaged over the batch."""
    return (F.normalize(x, dim=-1) - F.normalize(y, dim=-1)).pow(2).sum(-1).mean()


def stage1_loss(mu: torch.Tensor, mu_star: torch.Tensor, nu: torch.Tensor, nu_star: torch.Tensor,
                lam: float = LAMBDA, distill: str = "as-written") -> dict[str, torch.Tensor]:
    """Eq. 2. Returns the total and its four terms. `distill="teacher-weighted"` swaps the arguments
    of l_distill (the usual soft-target cross-entropy, -Σ softmax(y*) log softmax(x)): beyond the
    paper, for when the as-written form collapses onto the teacher's top unit."""
    d = l_distill if distill == "as-written" else (lambda x, y: l_distill(y, x))
    terms = {"emo_norm": lam * l_norm(mu, mu_star), "emo_distill": d(mu, mu_star),
             "id_norm": lam * l_norm(nu, nu_star), "id_distill": d(nu, nu_star)}
    terms["total"] = sum(terms.values())
    return terms


@dataclass(frozen=True)
class StudentsConfig:
    in_dim: int = 256  # CPC c_t size
    id_dim: int = 256  # T_id embedding size (ν)
    emo_dim: int = 6  # T_emo classes (μ)
    hidden: int = 512
    pool: str = "last"  # last: ω = c_T as in the paper; mean: ω = mean of c_t over t
    dropout: float = 0.1
    emo_level: bool = False  # beyond the paper: S_emo also reads the input's loudness (log RMS, `audio_level`)


def _mlp(i: int, h: int, o: int, p: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(i, h), nn.LayerNorm(h), nn.GELU(), nn.Dropout(p), nn.Linear(h, h), nn.GELU(),
                         nn.Linear(h, o))


class Students(Pretrained):
    """S_id and S_emo over ω; `forward(c, lengths)` -> (ν (B, id_dim), μ (B, emo_dim))."""

    config_class = StudentsConfig
    model_type = "s2v-students"

    def __init__(self, config: StudentsConfig = StudentsConfig()):
        super().__init__()
        self.config = config
        if config.pool not in ("last", "mean"):
            raise ValueError(f"pool must be 'last' or 'mean', got {config.pool!r}")
        self.s_id = _mlp(config.in_dim, config.hidden, config.id_dim, config.dropout)
        self.s_emo = _mlp(config.in_dim + int(config.emo_level), config.hidden, config.emo_dim, config.dropout)

    def omega(self, c: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """ω from c (B, T, H): c_T (the last valid step) or the mean over the valid steps."""
        b, t, _ = c.shape
        if lengths is None:
            lengths = torch.full((b,), t, device=c.device)
        lengths = lengths.clamp(1, t)
        if self.config.pool == "last":
            return c[torch.arange(b, device=c.device), lengths - 1]
        mask = (torch.arange(t, device=c.device)[None] < lengths[:, None]).to(c.dtype)
        return (c * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)

    def forward(self, c: torch.Tensor, lengths: torch.Tensor | None = None,
                level: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """c is (B, T, H) context vectors, or an already pooled ω (B, H); `level` (B, 1) is `audio_level` of
        the input, read by S_emo when the config says so (the CPC normalises each input, so c has no loudness)."""
        w = c if c.ndim == 2 else self.omega(c, lengths)
        e = w
        if self.config.emo_level:
            if level is None:
                raise ValueError("these students read the input's level: pass level=audio_level(wav)")
            e = torch.cat([w, level.to(w.dtype).view(-1, 1)], 1)
        return self.s_id(w), self.s_emo(e)


def audio_level(wav: torch.Tensor, n_samples: torch.Tensor | None = None) -> torch.Tensor:
    """(B, N) waveform -> (B, 1) log RMS over each row's first n_samples (all when None)."""
    if n_samples is None:
        power = wav.float().pow(2).mean(1)
    else:
        mask = (torch.arange(wav.shape[1], device=wav.device)[None] < n_samples.to(wav.device)[:, None]).float()
        power = (wav.float().pow(2) * mask).sum(1) / mask.sum(1).clamp_min(1)
    return (0.5 * torch.log(power + 1e-10))[:, None]
