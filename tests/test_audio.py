"""The audio loader: every format, rates, stereo, and a clear error for each kind of bad input."""
from __future__ import annotations

import subprocess
import warnings
from fractions import Fraction

import numpy as np
import pytest
import soundfile as sf

from s2v import audio as A


def test_timing_constants_are_exact():
    assert A.CPC_RATE == 100 and A.SAMPLE_RATE % A.CPC_HOP == 0
    assert A.samples_per_frame(30) == Fraction(1600, 3)
    assert A.samples_per_frame(25) == 640
    assert A.cpc_per_frame(25) == 4 and A.alignment_period(30) == 3
    # frame boundaries land exactly on whole samples every alignment period
    assert A.frame_to_sample(3, 30) == 1600 and A.frame_to_sample(30, 30) == 16000
    # the CPC frame holding a video frame's centre: frame 0 of 30 fps is centred at 16.7 ms -> CPC frame 1
    assert list(A.frame_to_cpc(np.arange(4), 30)) == [1, 5, 8, 11]
    assert A.num_frames(16000, 30) == 30 and A.num_frames(16000 + 200, 30) == 30


def _tone(seconds=1.0, rate=16000, channels=1, amp=0.3):
    t = np.arange(int(seconds * rate)) / rate
    x = amp * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    return np.stack([x] * channels, 1).astype(np.float32) if channels > 1 else x.astype(np.float32)


def _ffmpeg_encode(src_wav, dst, *args):
    subprocess.run([A.ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(src_wav), *args, str(dst)], check=True)


def test_real_speech_fixture(speech_wav):
    x = A.load_audio(speech_wav)
    assert x.dtype == np.float32 and x.ndim == 1
    assert 0.5 < x.size / A.SAMPLE_RATE < 5 and 0.05 < np.abs(x).max() <= 1.0


@pytest.mark.parametrize("ext,args", [
    ("flac", []), ("ogg", ["-c:a", "libvorbis"]), ("mp3", []), ("m4a", ["-c:a", "aac"]),
    ("webm", ["-c:a", "libopus"]), ("opus", ["-c:a", "libopus"]), ("wav", ["-ac", "2", "-ar", "44100"]),
])
def test_formats_rates_and_stereo(tmp_path, speech_wav, ext, args):
    ref = A.load_audio(speech_wav)
    dst = tmp_path / f"speech.{ext}"
    _ffmpeg_encode(speech_wav, dst, *args)
    x = A.load_audio(dst)
    assert x.dtype == np.float32 and x.ndim == 1
    assert abs(x.size - ref.size) < 0.08 * A.SAMPLE_RATE  # codec padding only
    n = min(x.size, ref.size)
    # same loudness envelope as the original (codecs may delay a little)
    env = lambda y: np.sqrt(np.convolve(y[:n] ** 2, np.ones(800) / 800, mode="same"))
    assert np.corrcoef(env(x), env(ref))[0, 1] > 0.8


def test_any_rate_and_stereo_arrays():
    st = _tone(1.0, 48000, channels=2)
    x = A.load_audio((48000, st))  # Gradio's (rate, array) pair
    assert x.size == 16000 and x.dtype == np.float32
    x8 = A.load_audio((8000, (_tone(1.0, 8000) * 32767).astype(np.int16)))
    assert x8.size == 16000 and 0.2 < np.abs(x8).max() < 0.5


def test_video_file_gives_its_audio(tiny_corpus):
    flv = sorted((tiny_corpus / "VideoFlash").glob("*.flv"))[0]
    wav = tiny_corpus / "AudioWAV" / (flv.stem + ".wav")
    # AAC in FLV keeps the encoder's priming and padding (about 0.12 s in all)
    assert abs(A.load_audio(flv).size - A.load_audio(wav).size) < 0.15 * A.SAMPLE_RATE


def test_empty(tmp_path):
    p = tmp_path / "empty.wav"
    p.write_bytes(b"")
    with pytest.raises(A.EmptyAudioError, match="empty"):
        A.load_audio(p)
    with pytest.raises(A.EmptyAudioError):
        A.load_audio(np.zeros(0, np.float32))
    with pytest.raises(A.EmptyAudioError):
        A.load_audio(b"")


def test_unreadable(tmp_path):
    p = tmp_path / "corrupt.mp3"
    p.write_bytes(b"ID3\x03\x00" + bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8)))
    with pytest.raises(A.UnreadableAudioError, match="corrupt"):
        A.load_audio(p)
    t = tmp_path / "notes.txt"
    t.write_text("this is not audio at all\n" * 20)
    with pytest.raises((A.UnreadableAudioError, A.NotAudioError)):  # ffmpeg reads text as a "tty" video
        A.load_audio(t)
    with pytest.raises(A.UnreadableAudioError, match="no such file"):
        A.load_audio(tmp_path / "missing.wav")


def test_not_audio(tmp_path, tiny_corpus):
    png = sorted((tiny_corpus / "Stills").glob("*.png"))[0]
    with pytest.raises(A.NotAudioError, match="no audio"):
        A.load_audio(png)
    silent_video = tmp_path / "novoice.mp4"
    subprocess.run([A.ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(sorted((tiny_corpus / "VideoFlash").glob("*.flv"))[0]),
                    "-an", "-c:v", "copy", str(silent_video)], check=True)
    with pytest.raises(A.NotAudioError):
        A.load_audio(silent_video)


def test_too_short_and_silent(tmp_path):
    p = tmp_path / "short.wav"
    sf.write(p, _tone(0.2), 16000)
    with pytest.raises(A.TooShortAudioError, match="at least"):
        A.load_audio(p)
    q = tmp_path / "silent.wav"
    sf.write(q, np.zeros(32000, np.float32), 16000)
    with pytest.raises(A.SilentAudioError, match="silent"):
        A.load_audio(q)
    for err in (A.EmptyAudioError, A.UnreadableAudioError, A.NotAudioError, A.TooShortAudioError,
                A.SilentAudioError):
        assert issubclass(err, A.AudioError)


def test_long_input_is_capped(tmp_path):
    p = tmp_path / "long.wav"
    sf.write(p, _tone(5.0), 16000)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        x = A.load_audio(p, max_seconds=2.0)
    assert x.size == 32000
    assert any(issubclass(i.category, A.AudioCappedWarning) for i in w)
