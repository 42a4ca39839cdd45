"""Contrastive predictive coding (CPC) for audio, in the layout of facebookresearch/CPC_audio.

g_enc: five Conv1d (kernels 10, 8, 4, 4, 4; strides 5, 4, 2, 2, 2) with channel norm and ReLU, one
z_t every 160 samples (10 ms at 16 kHz). g_ar: a one-layer LSTM (or GRU) giving c_t. The InfoNCE
loss predicts z_{t+k}, k = 1..12, from c_t against negatives drawn from the batch.

Module names match CPC_audio (`gEncoder.conv0`, `gEncoder.batchNorm0`, ..., `gAR.baseNet`), so its
checkpoints (`{"weights": ..., "config": ...}`) load with `import_cpc_audio`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .audio import CPC_HOP, CPC_STRIDES
from .modeling import Pretrained

_KERNELS = (10, 8, 4, 4, 4)
_PADDING = (3, 2, 1, 1, 1)


@dataclass(frozen=True)
class CPCConfig:
    hidden_encoder: int = 256
    hidden_ar: int = 256
    ar_mode: str = "LSTM"  # LSTM | GRU
    n_levels_ar: int = 1
    n_predicts: int = 12
    n_negatives: int = 128
    temperature: float = 0.1  # scores are cosine similarities / temperature
    normalize_input: bool = True  # zero-mean, unit-variance waveform per sequence (off for CPC_audio weights)

    def __post_init__(self):
        if self.ar_mode not in ("LSTM", "GRU"):
            raise ValueError(f"ar_mode must be LSTM or GRU, got {self.ar_mode!r}")


class ChannelNorm(nn.Module):
    """Normalise each time step across channels (CPC_audio's 'layerNorm' mode)."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1, channels, 1))
        self.bias = nn.Parameter(torch.zeros(1, channels, 1))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=1, keepdim=True)
        var = x.var(dim=1, keepdim=True)
        return (x - mean) * torch.rsqrt(var + self.eps) * self.weight + self.bias


class CPCEncoder(nn.Module):
    """g_enc: (B, N) waveform -> (B, N // 160, C) z."""

    def __init__(self, hidden: int):
        super().__init__()
        c_in = 1
        for i, (k, s, p) in enumerate(zip(_KERNELS, CPC_STRIDES, _PADDING)):
            setattr(self, f"conv{i}", nn.Conv1d(c_in, hidden, k, stride=s, padding=p))
            setattr(self, f"batchNorm{i}", ChannelNorm(hidden))
            c_in = hidden

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        x = wav.unsqueeze(1)
        for i in range(5):
            x = F.relu(getattr(self, f"batchNorm{i}")(getattr(self, f"conv{i}")(x)))
        return x.transpose(1, 2)


class CPCAR(nn.Module):
    """g_ar: (B, T, C) z -> (B, T, H) c (causal: c_t sees z_1..z_t)."""

    def __init__(self, dim_in: int, dim_out: int, mode: str, levels: int):
        super().__init__()
        rnn = nn.LSTM if mode == "LSTM" else nn.GRU
        self.baseNet = rnn(dim_in, dim_out, num_layers=levels, batch_first=True)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        self.baseNet.flatten_parameters() if z.is_cuda else None
        return self.baseNet(z)[0]


class CPC(Pretrained):
    """The CPC model; `forward(wav)` -> (c (B, T, H), z (B, T, C)); `loss(c, z)` -> InfoNCE."""

    config_class = CPCConfig
    model_type = "s2v-cpc"

    def __init__(self, config: CPCConfig = CPCConfig()):
        super().__init__()
        self.config = config
        self.gEncoder = CPCEncoder(config.hidden_encoder)
        self.gAR = CPCAR(config.hidden_encoder, config.hidden_ar, config.ar_mode, config.n_levels_ar)
        # one linear predictor per step ahead: W_k c_t ~ z_{t+k}
        self.predictors = nn.ModuleList(nn.Linear(config.hidden_ar, config.hidden_encoder, bias=False)
                                        for _ in range(config.n_predicts))

    @property
    def dim(self) -> int:
        return self.config.hidden_ar

    def forward(self, wav: torch.Tensor, n_samples: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """`n_samples` (B,): each row's length in a zero-padded batch; each row is then normalised over its own
        samples and its padding stays zero, so that a clip's c_t (but for the last few frames, whose receptive
        field reaches into the padding) is what the clip alone gets."""
        if wav.ndim != 2:
            raise ValueError(f"expected (B, samples) audio, got {tuple(wav.shape)}")
        if wav.shape[1] < CPC_HOP:
            raise ValueError(f"audio too short for one CPC frame ({wav.shape[1]} < {CPC_HOP} samples)")
        if self.config.normalize_input:
            # speech at -26 dBFS is tiny next to the conv biases: unnormalised, every z_t starts out alike
            if n_samples is None:
                wav = (wav - wav.mean(1, keepdim=True)) / (wav.std(1, keepdim=True) + 1e-5)
            else:
                n = n_samples.to(wav.device).view(-1, 1).clamp(2, wav.shape[1])
                valid = (torch.arange(wav.shape[1], device=wav.device)[None] < n).to(wav.dtype)
                mean = (wav * valid).sum(1, keepdim=True) / n
                var = ((wav - mean) ** 2 * valid).sum(1, keepdim=True) / (n - 1)  # unbiased, as torch.std
                wav = (wav - mean) / (var.sqrt() + 1e-5) * valid
        z = self.gEncoder(wav)
        return self.gAR(z), z

    def loss(self, c: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """InfoNCE over k = 1..K steps ahead: the true z_{t+k} against `n_negatives` z drawn at random
        from the whole batch (one draw shared by all positions and steps, which turns the scores
        into one matrix product). Scores are cosine similarities over a temperature (CPC_audio uses
        raw dot products; on a CPU budget those barely move in a few thousand steps).
        Returns (mean loss, (K,) accuracy of picking the true one)."""
        b, t, d = z.shape
        K, n_neg = self.config.n_predicts, self.config.n_negatives
        if t <= K:
            raise ValueError(f"need more than {K} CPC frames per sequence, got {t}")
        window = t - K
        ctx = c[:, :window]  # (B, W, H)
        zn = F.normalize(z, dim=-1)  # cosine scores with a temperature: far better conditioned than raw
        negatives = zn.reshape(b * t, d)[torch.randint(0, b * t, (n_neg,), device=z.device)]  # (N, C)
        target = torch.zeros(b * window, dtype=torch.long, device=z.device)
        losses, accs = [], []
        for k in range(1, K + 1):
            pred = F.normalize(self.predictors[k - 1](ctx), dim=-1)  # (B, W, C)
            pos = (pred * zn[:, k:k + window]).sum(-1, keepdim=True)  # (B, W, 1)
            logits = torch.cat([pos, pred @ negatives.T], -1) / self.config.temperature  # (B, W, 1 + N)
            losses.append(F.cross_entropy(logits.reshape(b * window, -1), target))
            accs.append((logits.argmax(-1) == 0).float().mean())
        return torch.stack(losses).mean(), torch.stack(accs).detach()


def import_cpc_audio(path: str | os.PathLike) -> CPC:
    """Load a CPC_audio checkpoint: a dict with `weights` (gEncoder.*, gAR.*) and `config`
    (hiddenEncoder, hiddenGar, arMode, nLevelsGRU, nPredicts, ...). Only g_enc and g_ar are taken;
    CPC_audio keeps its predictors in a separate criterion, so ours start fresh."""
    ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or "weights" not in ckpt:
        raise ValueError(f"{Path(path).name} is not a CPC_audio checkpoint (no 'weights' entry)")
    cfg = ckpt.get("config") or {}
    norm = cfg.get("normMode", "layerNorm")
    if norm != "layerNorm":
        raise ValueError(f"only normMode 'layerNorm' (channel norm) is supported, the checkpoint has {norm!r}")
    if cfg.get("arMode", "LSTM") not in ("LSTM", "GRU"):
        raise ValueError(f"arMode {cfg.get('arMode')!r} is not supported (LSTM or GRU)")
    config = CPCConfig(hidden_encoder=int(cfg.get("hiddenEncoder", 256)), hidden_ar=int(cfg.get("hiddenGar", 256)),
                       ar_mode=cfg.get("arMode", "LSTM"), n_levels_ar=int(cfg.get("nLevelsGRU", 1)),
                       n_predicts=int(cfg.get("nPredicts", 12)), n_negatives=int(cfg.get("negativeSamplingExt", 128)),
                       normalize_input=False)
    model = CPC(config)
    state = {k: v for k, v in ckpt["weights"].items() if k.startswith(("gEncoder.", "gAR."))}
    own = {k: v for k, v in model.state_dict().items() if k.startswith(("gEncoder.", "gAR."))}
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    wrong = [k for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        raise ValueError(f"{Path(path).name}: missing {missing[:5]}, unexpected {unexpected[:5]}, wrong shapes {wrong[:5]}")
    model.load_state_dict(state, strict=False)
    return model
