"""The voice's pitch (F0) per CPC frame, and the statistics of it that S_emo can read (beyond the paper).

Emotion moves the pitch: its level and its range (the corpus' `PROSODY` raises or lowers eSpeak's pitch and
widens or narrows its range per emotion, as real emotional speech does). Pitch, unlike loudness, does not
change with the microphone's gain, so an emotion read-out built on it need not hang on the input's level.

`frame_pitch` is YIN (de Cheveigné & Kawahara 2002): the cumulative-mean-normalised difference function of
each 10 ms frame's 25 ms window, its first dip under a threshold (else its deepest point), batched in torch
on whatever device the waveform is on. A ratio of energies, so a gain does not change it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .audio import CPC_HOP, SAMPLE_RATE

F0_MIN, F0_MAX = 60.0, 500.0  # Hz: the speaking range of adults and children
WINDOW = 400  # samples (25 ms) compared with their shifted copy
THRESHOLD = 0.15  # YIN's absolute threshold on the normalised difference
PERIODIC = 0.35  # a frame is pitched when its normalised difference at the chosen lag is below this
N_PITCH = 6  # statistics of `pitch_stats`


def frame_pitch(wav: torch.Tensor, frames: int, rate: int = SAMPLE_RATE) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, N) waveform -> ((B, frames) F0 in Hz, (B, frames) aperiodicity in [0, 1], 0 = perfectly periodic),
    one value per CPC hop (frame j centred on sample (j + 1/2) x CPC_HOP), the input zero-padded as needed."""
    lag_min, lag_max = int(rate / F0_MAX), int(rate / F0_MIN) + 1
    span = WINDOW + lag_max
    x = wav.float()
    centre = CPC_HOP // 2
    left = span // 2 - centre
    need = (frames - 1) * CPC_HOP + span - left
    x = F.pad(x, (left, max(0, need - x.shape[1])))[:, :left + need]
    seg = x.unfold(1, span, CPC_HOP)[:, :frames]  # (B, frames, span)
    n = 1 << (span + WINDOW - 1).bit_length()
    head = seg[..., :WINDOW]
    corr = torch.fft.irfft(torch.fft.rfft(head, n).conj() * torch.fft.rfft(seg, n), n)[..., :lag_max + 1]
    energy = F.pad(seg.pow(2).cumsum(-1), (1, 0))
    lags = torch.arange(lag_max + 1, device=x.device)
    e_lag = energy[..., lags + WINDOW] - energy[..., lags]
    d = (e_lag[..., :1] + e_lag - 2 * corr).clamp_min(0)  # difference function d(τ), τ = 0..lag_max
    cum = d[..., 1:].cumsum(-1)
    ratio = torch.where(cum > 1e-9, d[..., 1:] * lags[1:] / cum.clamp_min(1e-12), torch.ones_like(cum))
    cmnd = torch.cat([torch.ones_like(d[..., :1]), ratio], -1)  # silence: nothing periodic
    r = cmnd[..., lag_min:]
    below = r < THRESHOLD
    none = torch.full(below.shape[:-1], r.shape[-1], dtype=torch.long, device=x.device)
    first = torch.where(below.any(-1), below.float().argmax(-1), none)  # the first lag under the threshold
    k = torch.arange(r.shape[-1], device=x.device)
    after = k >= first[..., None]
    run = after & below & ((~below & after).cumsum(-1) == 0)  # the stretch under the threshold from its first dip
    pick = torch.where(run.any(-1), r.masked_fill(~run, float("inf")).argmin(-1), r.argmin(-1))
    # parabolic interpolation of the dip for a sub-sample lag
    y0 = r.gather(-1, (pick - 1).clamp_min(0)[..., None])[..., 0]
    y1 = r.gather(-1, pick[..., None])[..., 0]
    y2 = r.gather(-1, (pick + 1).clamp_max(r.shape[-1] - 1)[..., None])[..., 0]
    den = y0 - 2 * y1 + y2
    shift = torch.where(den.abs() > 1e-9, 0.5 * (y0 - y2) / den, torch.zeros_like(den)).clamp(-0.5, 0.5)
    lag = (pick + lag_min).float() + shift
    return rate / lag, y1.clamp(0, 1)


def semitones(f0: torch.Tensor) -> torch.Tensor:
    """Hz -> semitones above 100 Hz."""
    return 12 * torch.log2(f0 / 100.0)


def pitch_stats(f0: torch.Tensor, aperiodicity: torch.Tensor, voiced: torch.Tensor) -> torch.Tensor:
    """(N_PITCH,) one clip's pitch statistics over its frames (T,) that are voiced (by loudness) and pitched
    (aperiodicity < PERIODIC), in semitones: the median; the 90th less the 10th percentile (range); the SD;
    the mean |change| between pitched neighbours, per 10 ms; the pitched share of the voiced frames; their
    mean aperiodicity. None changes with a gain or with silence trimmed off the ends. Zeros when nothing is
    pitched (with a pitched share of 0)."""
    pitched = voiced & (aperiodicity < PERIODIC)
    if int(pitched.sum()) < 2:
        return f0.new_zeros(N_PITCH)
    st = semitones(f0[pitched])
    q = torch.quantile(st, torch.tensor([0.9, 0.5, 0.1], device=st.device, dtype=st.dtype))
    step = pitched[1:] & pitched[:-1]
    all_st = semitones(f0.clamp_min(1.0))
    change = (all_st[1:] - all_st[:-1]).abs()[step]
    change = change.mean() if change.numel() else f0.new_zeros(())
    share = pitched.float().sum() / voiced.float().sum().clamp_min(1)
    return torch.stack([q[1], q[0] - q[2], st.std(unbiased=False), change, share,
                        aperiodicity[pitched].mean()]).to(f0.dtype)
