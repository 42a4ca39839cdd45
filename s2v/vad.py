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


def speech_seconds(audio: np.ndarray, rate: int = SAMPLE_RATE) -> float:
    """Seconds of speech Silero VAD finds in mono float audio at 16 kHz."""
    if rate != SAMPLE_RATE:
        raise ValueError(f"speech_seconds takes {SAMPLE_RATE} Hz audio, got {rate}")
    x = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
    with _lock:  # the lock also keeps two first calls from loading the model twice
        model = _load()  # first: importing silero_vad changes torch's thread count, which _load puts back
        from silero_vad import get_speech_timestamps

        with torch.inference_mode():
            spans = get_speech_timestamps(x, model, sampling_rate=rate)
    return sum(s["end"] - s["start"] for s in spans) / rate


def no_speech_reason(audio: np.ndarray, rate: int = SAMPLE_RATE) -> str | None:
    """Why a clip counts as holding no speech (for the message), or None when it holds enough."""
    found, total = speech_seconds(audio, rate), len(audio) / rate
    if found < MIN_SPEECH:
        return "the audio holds sound but no voice (noise or music?)"
    if found < SHORT and found < MIN_SHARE * total:
        return (f"only {found:.1f} s of the {total:.1f} s sound like a voice (music, or a long silence around a "
                "word?)")
    return None
