"""Does a clip hold speech at all? Voice activity detection by Silero VAD, whose model ships inside the
`silero-vad` wheel (nothing is downloaded). The pipeline refuses input with less than `MIN_SPEECH`
seconds of speech (noise, music, room tone) with a message, instead of drawing a talking face for it.
"""
from __future__ import annotations

import threading
import warnings

import numpy as np
import torch

from .audio import SAMPLE_RATE

MIN_SPEECH = 0.3  # seconds of speech below which a clip counts as holding none
# music can hold a few voice-like notes: under SHORT seconds of speech that fill under MIN_SHARE of the
# clip also count as none (a 16 s saxophone piece: 0.9 s "speech", 6 %; the real voices of
# benchmarks/real_voices.py and the example voices: 65-100 %)
SHORT, MIN_SHARE = 2.0, 0.2
PAD, FADE = 0.1, 0.05  # gate_pauses: speech spans widened by PAD s, the rest faded out over FADE s

_model = None
_lock = threading.Lock()  # the VAD network is stateful (an RNN over 32 ms windows): one clip at a time


def _load():
    global _model
    if _model is None:
        n = torch.get_num_threads()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit.load's deprecation notice
            from silero_vad import load_silero_vad  # importing it sets torch to one thread

            _model = load_silero_vad()
        torch.set_num_threads(n)
    return _model


def speech_spans(audio: np.ndarray, rate: int = SAMPLE_RATE) -> list[tuple[int, int]]:
    """(start, end) sample indices of the speech Silero VAD finds in mono float audio at 16 kHz."""
    if rate != SAMPLE_RATE:
        raise ValueError(f"the VAD takes {SAMPLE_RATE} Hz audio, got {rate}")
    x = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
    with _lock:  # the lock also keeps two first calls from loading the model twice
        model = _load()  # first: importing silero_vad changes torch's thread count, which _load puts back
        from silero_vad import get_speech_timestamps

        with torch.inference_mode():
            spans = get_speech_timestamps(x, model, sampling_rate=rate)
    return [(int(s["start"]), int(s["end"])) for s in spans]


def speech_seconds(audio: np.ndarray, rate: int = SAMPLE_RATE) -> float:
    """Seconds of speech Silero VAD finds in mono float audio at 16 kHz."""
    return sum(e - s for s, e in speech_spans(audio, rate)) / rate


def no_speech_reason(audio: np.ndarray, rate: int = SAMPLE_RATE,
                     spans: list[tuple[int, int]] | None = None) -> str | None:
    """Why a clip counts as holding no speech (for the message), or None when it holds enough. `spans`: the
    clip's `speech_spans`, when already found."""
    if spans is None:
        spans = speech_spans(audio, rate)
    found, total = sum(e - s for s, e in spans) / rate, len(audio) / rate
    if found < MIN_SPEECH:
        return "the audio holds sound but no voice (noise or music?)"
    if found < SHORT and found < MIN_SHARE * total:
        return (f"only {found:.1f} s of the {total:.1f} s sound like a voice (music, or a long silence around a "
                "word?)")
    return None


def gate_pauses(audio: np.ndarray, spans: list[tuple[int, int]], rate: int = SAMPLE_RATE, pad: float = PAD,
                fade: float = FADE) -> np.ndarray:
    """The audio with what lies outside the speech `spans` (each widened by `pad` s) faded to digital silence
    over `fade` s: a room's hum or hiss in a pause then reads to the generator as the corpus' quiet pauses,
    and the mouth closes (with -40 dBFS noise in a pause the bundle's mouth stayed half open). The input
    itself when nothing lies outside."""
    n = len(audio)
    keep = np.zeros(n, np.float32)
    p = int(pad * rate)
    for s, e in spans:
        keep[max(0, s - p):min(n, e + p)] = 1.0
    if keep.all():
        return audio
    k = max(1, int(fade * rate))
    ramp = np.convolve(keep, np.ones(k, np.float32) / k, mode="same")  # soft edges, no clicks
    return (audio * np.maximum(keep, ramp)).astype(np.float32)
