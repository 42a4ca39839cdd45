"""Stage 1 students: S_id and S_emo read ω = c_T and distil ν and μ from the face teachers.

Beyond the paper (options, the paper's form the default): ω may be the mean of c_t, or its mean and
standard deviation (`pool`); S_id may be one linear map fitted in closed form (`id_head`, `fit_linear_id`).

Paper section 2.1, eq. 2-3:
    L1 = λ ||μ̄ - μ̄*||² + l_distill(μ, μ*) + λ ||ν̄ - ν̄*||² + l_distill(ν, ν*),   λ = 0.025,
    l_distill(x, y) = - Σ_i softmax(x)_i log softmax(y)_i          (as written: x the student),
where (̄·) is the L2-normalised vector.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .audio import CPC_HOP
from .modeling import Pretrained
from .pitch import N_PITCH, frame_pitch, pitch_stats

LAMBDA = 0.025
EMO_INPUTS = ("omega", "prosody", "prosody-rel", "prosody-pitch")
N_PROSODY = 8  # loudness statistics of `prosody` (and of `relative_prosody`)
VOICED_NEPERS = 3.0  # a 10 ms frame is voiced when its log RMS is within this of the clip's loudest (~26 dB)


def l_distill(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Eq. 3 as written: -Σ softmax(x) log softmax(y), averaged over the batch. (B, D), (B, D) -> ()."""
    return -(F.softmax(x, -1) * F.log_softmax(y, -1)).sum(-1).mean()


def l_norm(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """||x̄ - ȳ||² of the L2-normalised vectors, averaged over the batch."""
    return (F.normalize(x, dim=-1) - F.normalize(y, dim=-1)).pow(2).sum(-1).mean()


ID_TARGETS = ("softmax", "embedding")
ID_HEADS = ("mlp", "linear")
POOLS = ("last", "mean", "stats")


def stage1_loss(mu: torch.Tensor, mu_star: torch.Tensor, nu: torch.Tensor, nu_star: torch.Tensor,
                lam: float = LAMBDA, distill: str = "as-written", id_target: str = "softmax") -> dict[str, torch.Tensor]:
    """Eq. 2. Returns the total and its four terms. `distill="teacher-weighted"` swaps the arguments
    of l_distill (the usual soft-target cross-entropy, -Σ softmax(y*) log softmax(x)): beyond the
    paper, for when the as-written form collapses onto the teacher's top unit. `id_target="embedding"`
    (beyond the paper): S_id regresses the direction of ν* (the cosine term at weight 1, no softmax term),
    so every unit of the face embedding counts, not mostly its largest."""
    if id_target not in ID_TARGETS:
        raise ValueError(f"id_target must be one of {ID_TARGETS}, got {id_target!r}")
    d = l_distill if distill == "as-written" else (lambda x, y: l_distill(y, x))
    embedding = id_target == "embedding"
    terms = {"emo_norm": lam * l_norm(mu, mu_star), "emo_distill": d(mu, mu_star),
             "id_norm": (1.0 if embedding else lam) * l_norm(nu, nu_star),
             "id_distill": nu.new_zeros(()) if embedding else d(nu, nu_star)}
    terms["total"] = sum(terms.values())
    return terms


@dataclass(frozen=True)
class StudentsConfig:
    in_dim: int = 256  # CPC c_t size
    id_dim: int = 256  # T_id embedding size (ν)
    emo_dim: int = 6  # T_emo classes (μ)
    hidden: int = 512
    pool: str = "last"  # last: ω = c_T as in the paper; mean: ω = mean of c_t over t; stats: its mean and SD
    dropout: float = 0.1
    emo_level: bool = False  # beyond the paper: S_emo also reads the input's loudness (log RMS, `audio_level`)
    # beyond the paper: "omega" = S_emo reads ω (as S_id); "prosody" = the mean and std of c_t over the voiced
    # frames plus N_PROSODY loudness statistics (`prosody`), the input normalised by running statistics;
    # "prosody-rel" = the same with statistics that do not change with the input's gain, nor with silence
    # trimmed off its ends (`relative_prosody`): the microphone's level is not the speaker's emotion;
    # "prosody-pitch" = "prosody-rel" and the voice's pitch statistics (`s2v.pitch.pitch_stats`), gain-free too
    emo_input: str = "omega"
    # beyond the paper: > 0 = S_emo also reads its input minus the speaker's own average (emotion is a departure
    # from how that speaker usually sounds): the average of the emo_speakers seen actors, weighted by
    # softmax(cos(ν, key) / emo_temperature) over their keys (mean student ν), or the true actor in training
    emo_speakers: int = 0
    emo_temperature: float = 0.01
    # beyond the paper: "linear" = S_id is one linear map of ω fitted in closed form (`fit_linear_id`: ridge
    # regression of ν*, its penalty chosen on seen actors held out whole), not the MLP trained by eq. 3
    id_head: str = "mlp"
    # beyond the paper: ω also holds the posteriors of an accent head over c_t (`s2v.accent`, trained on a voice
    # pool and frozen here) for the accents named (() = no head), and of the other traits it names (sex, age group)
    accents: tuple[str, ...] = ()
    accent_hidden: int = 128
    accent_traits: tuple[str, ...] = ("accent",)

    def __post_init__(self):
        if self.pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {self.pool!r}")
        if self.emo_input not in EMO_INPUTS:
            raise ValueError(f"emo_input must be one of {EMO_INPUTS}, got {self.emo_input!r}")
        if self.id_head not in ID_HEADS:
            raise ValueError(f"id_head must be one of {ID_HEADS}, got {self.id_head!r}")
        if self.emo_input.startswith("prosody") and self.emo_level:
            raise ValueError("emo_level is for emo_input='omega'; 'prosody' already reads the loudness")

    @property
    def omega_dim(self) -> int:
        """Size of ω (`Students.omega`): what S_id reads."""
        return self.in_dim * (2 if self.pool == "stats" else 1) + (self.accent_config().outputs if self.accents else 0)

    def accent_config(self):
        """The accent head's config (`s2v.accent`), for students with `accents`."""
        from .accent import AccentConfig

        return AccentConfig(self.in_dim, self.accent_hidden, self.accents, self.accent_traits)

    @property
    def emo_features(self) -> int:
        """Size of S_emo's input before speaker normalisation (`Students.emotion_input`)."""
        if self.emo_input.startswith("prosody"):
            return 2 * self.in_dim + N_PROSODY + (N_PITCH if self.emo_input == "prosody-pitch" else 0)
        return self.omega_dim + int(self.emo_level)


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
        self.s_id = (nn.Linear(config.omega_dim, config.id_dim) if config.id_head == "linear"
                     else _mlp(config.omega_dim, config.hidden, config.id_dim, config.dropout))
        d = config.emo_features * (2 if config.emo_speakers else 1)
        self.emo_norm = (nn.BatchNorm1d(d, affine=False) if config.emo_input.startswith("prosody")
                         else nn.Identity())
        self.s_emo = _mlp(d, config.hidden, config.emo_dim, config.dropout)
        if config.accents:
            from .accent import AccentHead

            self.accent = AccentHead(config.accent_config())
            self.accent.requires_grad_(False).eval()
        if config.emo_speakers:
            self.register_buffer("speaker_keys", torch.zeros(config.emo_speakers, config.id_dim))
            self.register_buffer("speaker_bases", torch.zeros(config.emo_speakers, config.emo_features))

    def set_speakers(self, keys: torch.Tensor | None = None, bases: torch.Tensor | None = None) -> None:
        """The seen actors' keys (A, id_dim; mean student ν) and average emotion inputs (A, emo_features)."""
        if keys is not None:
            self.speaker_keys.copy_(F.normalize(torch.as_tensor(keys, dtype=torch.float32), dim=-1))
        if bases is not None:
            self.speaker_bases.copy_(torch.as_tensor(bases, dtype=torch.float32))

    def train(self, mode: bool = True) -> "Students":
        super().train(mode)
        if self.config.accents:  # frozen: its batch norms keep the voice pool's statistics
            self.accent.eval()
        return self

    def omega(self, c: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """ω from c (B, T, H): c_T (the last valid step), the mean over the valid steps, or (B, 2H) their mean
        and standard deviation (`pool`); then, with `accents`, the accent head's posteriors."""
        b, t, _ = c.shape
        if lengths is None:
            lengths = torch.full((b,), t, device=c.device)
        lengths = lengths.clamp(1, t)
        if self.config.pool == "last":
            w = c[torch.arange(b, device=c.device), lengths - 1]
        else:
            mask = (torch.arange(t, device=c.device)[None] < lengths[:, None]).to(c.dtype)[..., None]
            mean, sd = masked_stats(c, mask, 1)
            w = torch.cat([mean, sd], 1) if self.config.pool == "stats" else mean
        if self.config.accents:
            w = torch.cat([w, self.accent.posteriors(c, lengths).to(w.dtype)], 1)
        return w

    def emotion_input(self, c: torch.Tensor, wav: torch.Tensor, n_samples: torch.Tensor | None = None) -> torch.Tensor:
        """(B, emo_features) what S_emo reads (before speaker normalisation), from c (B, T, H) and the
        waveform (B, N) it came from, each row `n_samples` long (all of it when None)."""
        b, t, _ = c.shape
        n_samples = torch.full((b,), wav.shape[1], device=c.device) if n_samples is None else n_samples.to(c.device)
        lengths = cpc_lengths(n_samples, t)
        if self.config.emo_input == "omega":
            w = self.omega(c, lengths)
            return torch.cat([w, audio_level(wav, n_samples).to(w.dtype)], 1) if self.config.emo_level else w
        level = frame_level(wav, t)
        stats = prosody if self.config.emo_input == "prosody" else relative_prosody
        with_pitch = self.config.emo_input == "prosody-pitch"
        if with_pitch:
            f0, aperiodicity = frame_pitch(wav, t)
        rows = []
        for j in range(b):
            n = int(lengths[j])
            cj, lj = c[j, :n].float(), level[j, :n]
            voiced = lj > lj.max() - VOICED_NEPERS
            cv = cj[voiced]
            parts = [cv.mean(0), cv.std(0, unbiased=False), stats(lj)]
            if with_pitch:
                parts.append(pitch_stats(f0[j, :n], aperiodicity[j, :n], voiced).to(cj.device))
            rows.append(torch.cat(parts))
        return torch.stack(rows).to(c.dtype)

    def speaker_weights(self, nu: torch.Tensor) -> torch.Tensor:
        """(B, A) softmax(cos(ν, key_a) / T) over the seen actors."""
        s = F.normalize(nu.float(), dim=-1) @ self.speaker_keys.T / self.config.emo_temperature
        return F.softmax(s, -1)

    def forward(self, c: torch.Tensor, lengths: torch.Tensor | None = None, level: torch.Tensor | None = None,
                *, e: torch.Tensor | None = None, speaker: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """c is (B, T, H) context vectors, or an already pooled ω (B, H). S_emo reads `e` (`emotion_input`)
        when given; else, for emo_input 'omega', ω and `level` (B, 1) = `audio_level` of the input when the
        config says so (the CPC normalises each input, so c has no loudness). `speaker` (B, A): the weights of
        the seen actors whose average input is taken off (training: the true actor); by default from ν.
        `infer(c, wav)` computes all of this from the audio."""
        w = c if c.ndim == 2 else self.omega(c, lengths)
        nu = self.s_id(w)
        if e is None:
            if self.config.emo_input != "omega":
                raise ValueError("these students read prosody: pass e=emotion_input(c, wav) or call infer(c, wav)")
            e = w
            if self.config.emo_level:
                if level is None:
                    raise ValueError("these students read the input's level: pass level=audio_level(wav)")
                e = torch.cat([w, level.to(w.dtype).view(-1, 1)], 1)
        if self.config.emo_speakers:
            weights = self.speaker_weights(nu) if speaker is None else speaker
            e = torch.cat([e - (weights.to(e.dtype) @ self.speaker_bases.to(e.dtype)), e], 1)
        return nu, self.s_emo(self.emo_norm(e))

    def infer(self, c: torch.Tensor, wav: torch.Tensor, n_samples: torch.Tensor | None = None):
        """(ν, μ) of c (B, T, H) and the waveform (B, N) it was computed from."""
        lengths = None if n_samples is None else cpc_lengths(n_samples.to(c.device), c.shape[1])
        return self(c, lengths, e=self.emotion_input(c, wav, n_samples))


RIDGE_LAMBDAS = (1.0, 10.0, 100.0, 1000.0, 10000.0)


def fit_linear_id(students: Students, omega, nu_star, actors, lambdas=RIDGE_LAMBDAS, folds: int = 5) -> dict:
    """Fit a linear S_id (`id_head="linear"`) in closed form: ridge regression of ν* (N, D) on ω (N, H)
    (standardised; `s2v.linear.ridge_affine`). The penalty is the one whose map best tells apart actors it
    never saw: the seen actors are split into `folds` groups, each held out whole in turn, and each λ is scored
    by the 1:2 matching (`s2v.openset`) of the held-out clips' predictions among the held-out actors' mean ν*.
    Beyond the paper: with a few clips a speaker, eq. 3's MLP learns the speakers; a strong penalty keeps the
    map to what voices share. Sets s_id's weight and bias; returns {"id_lambda", "id_cv_match_1to2"}."""
    from .linear import ridge_affine
    from .openset import match_scores

    if students.config.id_head != "linear":
        raise ValueError("fit_linear_id is for students with id_head='linear'")
    x, y = np.asarray(omega, np.float64), np.asarray(nu_star, np.float64)
    actors = np.asarray(actors)
    names = np.array(sorted(set(actors.tolist()), key=str))
    folds = min(folds, len(names) // 2)  # each held-out group needs two actors; fewer than four: no choice
    group = {a: k % max(folds, 1) for k, a in enumerate(np.random.default_rng(0).permutation(names))}
    fold = np.array([group[a] for a in actors])
    scores = {}
    for lam in lambdas:
        s = []
        for f in range(folds if folds > 1 else 0):
            tr, te = fold != f, fold == f
            w, b = ridge_affine(x[tr], y[tr], lam)
            held = sorted(set(actors[te].tolist()), key=str)
            cand = np.stack([y[te][actors[te] == a].mean(0) for a in held])
            s.append(match_scores(x[te] @ w + b, np.array([held.index(a) for a in actors[te]]), cand)["match_1to2"])
        scores[lam] = float(np.mean(s)) if s else 0.0
    lam = max(lambdas, key=lambda k: (scores[k], k))  # ties (and no choice): the strongest penalty
    w, b = ridge_affine(x, y, lam)
    with torch.no_grad():
        students.s_id.weight.copy_(torch.from_numpy(w.T.astype(np.float32)))
        students.s_id.bias.copy_(torch.from_numpy(b.astype(np.float32)))
    return {"id_lambda": lam, "id_cv_match_1to2": round(scores[lam], 4)}


def masked_stats(x: torch.Tensor, mask: torch.Tensor, dim: int, min_var: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation of x over `dim` where `mask` (x's shape, 1 along the other axes) is 1; the
    variance floored at `min_var` (> 0 where the SD is trained through)."""
    n = mask.sum(dim).clamp_min(1)
    mean = (x * mask).sum(dim) / n
    var = (((x - mean.unsqueeze(dim)) ** 2) * mask).sum(dim) / n
    return mean, var.clamp_min(min_var).sqrt()


def cpc_lengths(n_samples: torch.Tensor, frames: int) -> torch.Tensor:
    """(B,) valid CPC frames of each row from its length in samples, within 1..frames (c's length)."""
    return (n_samples // CPC_HOP).clamp(1, frames)


def frame_level(wav: torch.Tensor, frames: int) -> torch.Tensor:
    """(B, N) waveform -> (B, frames) log RMS of each CPC hop (10 ms), zero-padded at the end as needed."""
    n = frames * CPC_HOP
    x = wav.float()[:, :n]
    if x.shape[1] < n:
        x = F.pad(x, (0, n - x.shape[1]))
    return 0.5 * torch.log(x.view(x.shape[0], frames, CPC_HOP).pow(2).mean(-1) + 1e-10)


def prosody(level: torch.Tensor) -> torch.Tensor:
    """(N_PROSODY,) loudness statistics of one clip's frame levels (T,) (`frame_level`, 100 per second): over
    the voiced frames the mean, std, 90th and 10th percentiles; the voiced share; the duration in seconds;
    the mean |frame-to-frame change| within voiced stretches; the 4-8 Hz share of the level's modulation
    spectrum (tremolo, syllable rate)."""
    voiced = level > level.max() - VOICED_NEPERS
    lv = level[voiced]
    step = voiced[1:] & voiced[:-1]
    change = (level[1:] - level[:-1]).abs()[step].sum() / step.sum().clamp_min(1)
    mod = modulation_share(level)
    q = torch.quantile(lv, torch.tensor([0.9, 0.1], device=level.device))
    return torch.stack([lv.mean(), lv.std(unbiased=False), q[0], q[1], voiced.float().mean(),
                        level.new_tensor(level.numel() / 100), change, mod]).to(level.dtype)


def modulation_share(level: torch.Tensor) -> torch.Tensor:
    """The 4-8 Hz share of a frame-level series' (100 per second) modulation spectrum: tremolo, syllable rate."""
    x = level - level.mean()
    spectrum = torch.fft.rfft(x).abs()
    f = torch.fft.rfftfreq(x.numel(), 1 / 100).to(level.device)
    band, rest = spectrum[(f > 4) & (f < 8)], spectrum[f > 0.5]
    return band.mean() / (rest.mean() + 1e-6) if band.numel() and rest.numel() else level.new_zeros(())


def relative_prosody(level: torch.Tensor) -> torch.Tensor:
    """(N_PROSODY,) loudness statistics of one clip's frame levels (T,) that a gain does not change (all are
    differences of log levels, the voiced frames are those within VOICED_NEPERS of the loudest) and that
    silence before the first and after the last voiced frame does not change (all are taken over that span):
    the voiced frames' mean, 10th and 50th percentiles less their 90th; their std; the voiced share of the span;
    voiced onsets per second of span (syllable rate); the mean |frame-to-frame change| within voiced stretches;
    the 4-8 Hz share of the span's level modulation spectrum (tremolo)."""
    voiced = level > level.max() - VOICED_NEPERS
    idx = voiced.nonzero()[:, 0]
    # floored at 2 x VOICED_NEPERS below the loudest, so that digital silence (a fixed log floor) reads as quiet as
    # a noise floor that moves with the gain
    span = level[int(idx[0]):int(idx[-1]) + 1].clamp_min(level.max() - 2 * VOICED_NEPERS)
    voiced = span > level.max() - VOICED_NEPERS
    lv = span[voiced]
    q = torch.quantile(lv, torch.tensor([0.9, 0.5, 0.1], device=level.device))
    step = voiced[1:] & voiced[:-1]
    change = (span[1:] - span[:-1]).abs()[step].sum() / step.sum().clamp_min(1)
    onsets = (voiced[1:] & ~voiced[:-1]).sum() + 1
    mod = modulation_share(span)
    seconds = span.numel() / 100
    return torch.stack([lv.mean() - q[0], q[2] - q[0], q[1] - q[0], lv.std(unbiased=False), voiced.float().mean(),
                        onsets / seconds, change, mod]).to(level.dtype)


def audio_level(wav: torch.Tensor, n_samples: torch.Tensor | None = None) -> torch.Tensor:
    """(B, N) waveform -> (B, 1) log RMS over each row's first n_samples (all when None)."""
    if n_samples is None:
        power = wav.float().pow(2).mean(1)
    else:
        mask = (torch.arange(wav.shape[1], device=wav.device)[None] < n_samples.to(wav.device)[:, None]).float()
        power = (wav.float().pow(2) * mask).sum(1) / mask.sum(1).clamp_min(1)
    return (0.5 * torch.log(power + 1e-10))[:, None]
