"""The bundled model (checkpoints/default) on the voices it ships with (assets/voices): behaviour a user relies on."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import load_benchmark

ROOT = Path(__file__).resolve().parents[1]
VOICES = sorted((ROOT / "assets" / "voices").glob("*/*.wav"))


@pytest.fixture(scope="module")
def bundle():
    from s2v.pipeline import Speech2Video

    return Speech2Video.from_pretrained(ROOT / "checkpoints" / "default", device="cpu")


def test_emotion_does_not_hang_on_gain_or_trimming(bundle):
    """Issue 18: the same voice 10 dB quieter or louder, or with its silences cut off, gets the same top emotion.
    Each clip is first brought to a peak of 0.25 so that +10 dB (peak 0.79) is a pure gain, not clipping."""
    st = load_benchmark("emotion_stability")
    assert len(VOICES) >= 6
    for path in VOICES:
        wav, rate = sf.read(path, dtype="float32")
        assert rate == 16000
        wav = wav * (0.25 / np.abs(wav).max())
        top = int(st.read_out(bundle, wav).argmax())
        for name, w in {"-10 dB": wav * 10 ** (-10 / 20), "+10 dB": wav * 10 ** (10 / 20),
                        "trimmed": st.trimmed(wav)}.items():
            assert np.abs(w).max() < 1.0
            p = st.read_out(bundle, w)
            assert int(p.argmax()) == top, f"{path.name} {name}: top {p.argmax()} against {top}"
