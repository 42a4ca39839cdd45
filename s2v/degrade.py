"""Recording conditions a voice meets outside the studio, applied to 16 kHz speech: room reverberation,
background noise, a narrow microphone or telephone band, a lossy codec, a gain change.

Used by `benchmarks/real_voices.py` to degrade corpus voices whose speaker, sex and emotion are known
(and meant for training-time augmentation). Every function takes and returns a (N,) float32 array at
16 kHz of the same length; randomness comes from the `rng` passed in.
"""
from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import numpy as np

from .audio import SAMPLE_RATE, ffmpeg_exe, resample


def _fit(y: np.ndarray, n: int) -> np.ndarray:
    y = np.asarray(y, np.float32)[:n]
    return np.pad(y, (0, n - len(y))) if len(y) < n else y


def room_impulse(rt60: float, rng: np.random.Generator, rate: int = SAMPLE_RATE, direct: float = 1.0) -> np.ndarray:
    """A synthetic room impulse response: a direct path, then exponentially decaying noise whose energy falls
    60 dB in `rt60` seconds (the Schroeder/Polack model of a diffuse late field)."""
    n = max(int(rt60 * rate), 1)
    t = np.arange(n) / rate
    tail = rng.standard_normal(n) * np.exp(-6.9078 * t / rt60)  # 10^(-60/20) = e^-6.9078 at t = rt60
    tail[: int(0.002 * rate)] = 0  # the first reflections arrive a couple of ms after the direct sound
    h = tail / np.sqrt(np.sum(tail ** 2) + 1e-12)
    h[0] += direct
    return (h / np.abs(h).max()).astype(np.float32)


def reverb(wav: np.ndarray, rt60: float, rng: np.random.Generator) -> np.ndarray:
    """The voice in a room with reverberation time `rt60` s, at its original peak level."""
    from scipy.signal import fftconvolve

    y = fftconvolve(wav, room_impulse(rt60, rng))[: len(wav)]
    return (y * (np.abs(wav).max() / (np.abs(y).max() + 1e-12))).astype(np.float32)


def add_noise(wav: np.ndarray, snr_db: float, rng: np.random.Generator, colour: str = "pink") -> np.ndarray:
    """Stationary background noise `snr_db` dB under the speech's power (white or pink)."""
    n = rng.standard_normal(len(wav))
    if colour == "pink":  # 1/f power: shape white noise's spectrum by 1/sqrt(f)
        spec = np.fft.rfft(n)
        f = np.maximum(np.fft.rfftfreq(len(n)), 1.0 / len(n))
        n = np.fft.irfft(spec / np.sqrt(f), len(n))
    elif colour != "white":
        raise ValueError(f"colour must be 'pink' or 'white', not {colour!r}")
    p_speech = np.mean(wav.astype(np.float64) ** 2)
    n *= np.sqrt(p_speech / (np.mean(n ** 2) * 10 ** (snr_db / 10) + 1e-20))
    return (wav + n).astype(np.float32)


def band_limit(wav: np.ndarray, rate: int = 8000) -> np.ndarray:
    """Through a channel sampled at `rate` (8000: the telephone band, nothing above 4 kHz) and back."""
    return _fit(resample(resample(wav, SAMPLE_RATE, rate), rate, SAMPLE_RATE), len(wav))


CODECS = {  # name -> ffmpeg output arguments
    "mp3": ["-c:a", "libmp3lame", "-b:a", "32k", "-f", "mp3"],
    "opus": ["-c:a", "libopus", "-b:a", "12k", "-f", "ogg"],
    "amr": ["-c:a", "libopencore_amrnb", "-ar", "8000", "-b:a", "7.95k", "-f", "amr"],  # GSM-era phone codec
}


def codec(wav: np.ndarray, name: str = "opus") -> np.ndarray:
    """Encoded with a lossy speech or music codec at a low bit rate (`CODECS`) and decoded again."""
    if name not in CODECS:
        raise ValueError(f"codec must be one of {', '.join(CODECS)}, not {name!r}")
    from .audio import write_wav

    with tempfile.TemporaryDirectory() as d:
        src, enc = Path(d) / "in.wav", Path(d) / f"out.{name}"
        write_wav(src, np.clip(wav, -1, 1))
        subprocess.run([ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", str(src),
                        "-ac", "1", *CODECS[name], str(enc)], check=True, capture_output=True)
        out = subprocess.run([ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-i", str(enc),
                              "-ac", "1", "-ar", str(SAMPLE_RATE), "-f", "f32le", "-"], check=True,
                             capture_output=True).stdout
    y = np.frombuffer(out, np.float32)
    # codecs add a few ms of delay (encoder priming): align by cross-correlation over the first 50 ms lags
    lag = _delay(wav, y, int(0.05 * SAMPLE_RATE))
    return _fit(y[lag:], len(wav))


def _delay(x: np.ndarray, y: np.ndarray, max_lag: int) -> int:
    n = min(len(x), len(y) - max_lag)
    if n <= 0:
        return 0
    scores = [float(np.dot(x[:n], y[k:k + n])) for k in range(max_lag)]
    return int(np.argmax(scores))


def gain(wav: np.ndarray, db: float) -> np.ndarray:
    """Louder or quieter by `db` decibels (clipped to [-1, 1], as a recorder would)."""
    return np.clip(wav * 10 ** (db / 20), -1, 1).astype(np.float32)


def pitch_shift(wav: np.ndarray, semitones: float) -> np.ndarray:
    """Another voice saying the same thing at the same pace: pitch and formants raised (lowered) by `semitones`
    together, as a smaller (larger) speaker's would be; duration kept. A phase vocoder stretches the time by the
    ratio 2^(semitones/12) (`torchaudio.functional.phase_vocoder`), then a polyphase resampling by a fraction
    within 0.1 % of the ratio brings the length back and moves every frequency (a few ms a clip; torchaudio's
    own `pitch_shift` resamples through a kernel of the exact ratio and takes seconds)."""
    import math
    from fractions import Fraction

    import torch
    from scipy.signal import resample_poly
    from torchaudio.functional import phase_vocoder

    if semitones == 0:
        return np.asarray(wav, np.float32)
    ratio = 2.0 ** (semitones / 12)
    n_fft, hop = 512, 128
    window = torch.hann_window(n_fft)
    x = torch.from_numpy(np.ascontiguousarray(wav, np.float32))
    spec = torch.stft(x, n_fft, hop, window=window, return_complex=True)
    advance = torch.linspace(0, math.pi * hop, spec.shape[-2])[..., None]
    stretched = phase_vocoder(spec, 1.0 / ratio, advance)
    y = torch.istft(stretched, n_fft, hop, window=window, length=int(round(len(wav) * ratio))).numpy()
    f = Fraction(ratio).limit_denominator(64)
    return _fit(resample_poly(y, f.denominator, f.numerator).astype(np.float32), len(wav))


CONDITIONS = {  # the benchmark's degradations: name -> function(wav, rng)
    "reverb": lambda w, rng: reverb(w, 0.6, rng),
    "noise": lambda w, rng: add_noise(w, 20.0, rng),
    "phone": lambda w, rng: codec(band_limit(w, 8000), "amr"),
    "opus": lambda w, rng: codec(w, "opus"),
}


def augment(wav: np.ndarray, rng: np.random.Generator, p: float = 0.5, gain_db: float = 10.0,
            semitones: float = 0.0, conditions: dict | None = None, weights: dict | None = None) -> np.ndarray:
    """Training-time augmentation: with `semitones` > 0, first another voice (`pitch_shift` by a number of
    semitones drawn uniformly in ±`semitones`); with probability `p`, one of `CONDITIONS` drawn at random; then
    a gain drawn uniformly in ±`gain_db` dB (clipped). p = 0, gain_db = 0 and semitones = 0 leave the voice as
    it is. `conditions`: the conditions to draw from, `CONDITIONS` when None; `weights`: {name: relative
    weight} of the draw (a name left out weighs 1; None: all alike). (Not for the identity student: a shifted
    voice is another speaker's.)"""
    conditions = CONDITIONS if conditions is None else conditions
    if semitones > 0:
        wav = pitch_shift(wav, float(rng.uniform(-semitones, semitones)))
    if p > 0 and rng.random() < p:
        names = list(conditions)
        if weights is None:
            name = names[rng.integers(len(names))]
        else:
            w = np.array([float(weights.get(k, 1.0)) for k in names])
            name = names[rng.choice(len(names), p=w / w.sum())]
        wav = conditions[name](wav, rng)
    if gain_db > 0:
        wav = gain(wav, float(rng.uniform(-gain_db, gain_db)))
    return wav
