"""Timing constants and the one audio loader of s2v.

Everything runs on 16 kHz mono float32. The CPC encoder emits one frame every 160 samples (10 ms,
100 Hz). Video runs at the corpus' own fps (CREMA-D 30, VoxCeleb2 25). The number of samples per
video frame is not always whole (16000 / 30 = 533.33...), so frame <-> sample maps are done in
exact integer arithmetic, and the constants below are checked at import so a mismatch fails loudly.
"""
from __future__ import annotations

import os
import subprocess
import warnings
from fractions import Fraction
from pathlib import Path
from typing import Union

import numpy as np

SAMPLE_RATE = 16_000  # Hz
CPC_HOP = 160  # samples per CPC frame (product of g_enc's strides 5*4*2*2*2)
CPC_STRIDES = (5, 4, 2, 2, 2)
CPC_RATE = SAMPLE_RATE // CPC_HOP  # 100 CPC frames per second
FPS = {"crema-d": 30, "voxceleb2": 25}

MIN_SECONDS = 0.5  # shorter input has too little speech to say anything about a voice
SILENCE_PEAK = 1e-3  # peak amplitude below which input counts as silent (-60 dBFS)


def _check_timing() -> None:
    if SAMPLE_RATE % CPC_HOP:
        raise AssertionError(f"SAMPLE_RATE {SAMPLE_RATE} is not a multiple of CPC_HOP {CPC_HOP}")
    if int(np.prod(CPC_STRIDES)) != CPC_HOP:
        raise AssertionError(f"CPC strides {CPC_STRIDES} do not multiply to CPC_HOP {CPC_HOP}")
    for name, fps in FPS.items():
        # Within one alignment period, frames, samples and CPC frames all fall on whole numbers.
        period = alignment_period(fps)
        if (period * SAMPLE_RATE) % fps or (period * CPC_RATE) % fps:
            raise AssertionError(f"{name}: fps {fps} has no exact alignment with {SAMPLE_RATE} Hz")


def alignment_period(fps: int) -> int:
    """Smallest number of video frames that spans a whole number of CPC frames (30 fps -> 3)."""
    ratio = Fraction(CPC_RATE, fps)  # CPC frames per video frame
    return ratio.denominator


def samples_per_frame(fps: int) -> Fraction:
    """Exact audio samples per video frame (30 fps -> 1600/3)."""
    return Fraction(SAMPLE_RATE, fps)


def cpc_per_frame(fps: int) -> Fraction:
    """Exact CPC frames per video frame (30 fps -> 10/3, 25 fps -> 4)."""
    return Fraction(CPC_RATE, fps)


def frame_to_sample(frame: int | np.ndarray, fps: int) -> int | np.ndarray:
    """First audio sample of video frame `frame` (floor of the exact position)."""
    return frame * SAMPLE_RATE // fps


def frame_to_cpc(frame: int | np.ndarray, fps: int) -> int | np.ndarray:
    """Index of the CPC frame whose 10 ms window holds the centre of video frame `frame`."""
    return ((2 * frame + 1) * CPC_RATE) // (2 * fps)


def num_frames(num_samples: int, fps: int) -> int:
    """Video frames covering `num_samples` of audio, rounded to the nearest whole frame."""
    return int((2 * num_samples * fps + SAMPLE_RATE) // (2 * SAMPLE_RATE))


_check_timing()


# --------------------------------------------------------------------------------------- errors
class AudioError(ValueError):
    """Base class: the input cannot be used as speech. The message says what to do."""


class EmptyAudioError(AudioError):
    """The file or array holds no data."""


class UnreadableAudioError(AudioError):
    """The file is missing, corrupt, or in a format nothing here can decode."""


class NotAudioError(AudioError):
    """The file is a valid media file (an image, a silent video) with no audio stream."""


class TooShortAudioError(AudioError):
    """Less speech than `min_seconds`."""


class SilentAudioError(AudioError):
    """Every sample is (nearly) zero."""


class NoSpeechError(AudioError):
    """Sound, but no voice in it (noise, music, room tone): s2v.vad finds no speech."""


class AudioCappedWarning(UserWarning):
    """Input longer than `max_seconds` was cut to that length."""


AudioInput = Union[str, os.PathLike, bytes, np.ndarray, tuple]


# --------------------------------------------------------------------------------------- loading
def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary (the one inside the imageio-ffmpeg wheel unless S2V_FFMPEG is set)."""
    if os.environ.get("S2V_FFMPEG"):
        return os.environ["S2V_FFMPEG"]
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def resample(audio: np.ndarray, orig_rate: int, rate: int = SAMPLE_RATE) -> np.ndarray:
    """Polyphase resampling of a (N,) or (N, C) array along axis 0."""
    if orig_rate == rate:
        return audio
    from scipy.signal import resample_poly

    g = np.gcd(int(orig_rate), int(rate))
    return resample_poly(audio, rate // g, orig_rate // g, axis=0).astype(np.float32)


def _to_float(audio: np.ndarray) -> np.ndarray:
    if audio.dtype.kind == "i":
        return audio.astype(np.float32) / float(np.iinfo(audio.dtype).max + 1)
    if audio.dtype.kind == "u":
        info = np.iinfo(audio.dtype)
        mid = (info.max + 1) / 2
        return (audio.astype(np.float32) - mid) / mid
    if audio.dtype.kind == "f":
        return audio.astype(np.float32)
    raise UnreadableAudioError(f"audio array has dtype {audio.dtype}; expected integers or floats")


def _decode_ffmpeg(path: str, rate: int, max_seconds: float | None) -> np.ndarray:
    cmd = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-i", path]
    if max_seconds is not None:
        cmd += ["-t", f"{max_seconds + 1.0:.3f}"]  # decode a little more than needed to detect capping
    cmd += ["-vn", "-map", "0:a:0", "-ac", "1", "-ar", str(rate), "-f", "f32le", "-"]
    proc = subprocess.run(cmd, capture_output=True)
    err = proc.stderr.decode("utf-8", "replace").strip()
    if proc.returncode != 0:
        low = err.lower()
        if "matches no streams" in low or "does not contain any stream" in low:
            raise NotAudioError(f"{Path(path).name} has no audio track (an image, a text or a silent "
                                "video?). Upload a recording of speech instead.")
        raise UnreadableAudioError(f"could not read {Path(path).name}: it is corrupt or not a media "
                                   f"file ({err.splitlines()[-1] if err else 'ffmpeg failed'}). "
                                   "Try re-exporting it as WAV, MP3 or FLAC.")
    return np.frombuffer(proc.stdout, dtype=np.float32).copy()


def load_audio(src: AudioInput, rate: int = SAMPLE_RATE, *, min_seconds: float = MIN_SECONDS,
               max_seconds: float | None = None, source_rate: int | None = None) -> np.ndarray:
    """Load speech as (N,) float32 mono at `rate`.

    `src` is a path to any file ffmpeg reads (audio or video), raw file bytes, a (rate, array) pair
    as Gradio gives it, or an array at `source_rate` (default `rate`). Stereo is mixed down.
    Raises an `AudioError` subclass with an actionable message for empty, unreadable, non-audio,
    too short or silent input; input longer than `max_seconds` is cut, with an `AudioCappedWarning`.
    """
    if isinstance(src, tuple):
        if len(src) != 2:
            raise UnreadableAudioError("expected a (sample_rate, samples) pair")
        source_rate, src = int(src[0]), np.asarray(src[1])
    if isinstance(src, np.ndarray):
        audio = _to_float(src)
        if audio.ndim == 2:  # (N, C) as soundfile and Gradio give it; (C, N) if channels come first
            audio = audio.mean(axis=1 if audio.shape[0] >= audio.shape[1] else 0)
        elif audio.ndim != 1:
            raise UnreadableAudioError(f"audio array must be (N,) or (N, channels), got {audio.shape}")
        if audio.size == 0:
            raise EmptyAudioError("the audio is empty: record or upload some speech first.")
        audio = resample(audio, source_rate or rate, rate)
        if max_seconds is not None and audio.size > max_seconds * rate:
            audio = audio[: int(max_seconds * rate)]
            warnings.warn(AudioCappedWarning(f"input cut to its first {max_seconds:g} s"), stacklevel=2)
    else:
        if isinstance(src, bytes):
            if not src:
                raise EmptyAudioError("the uploaded file is empty (0 bytes): record or upload some speech.")
            import tempfile

            with tempfile.NamedTemporaryFile(suffix=".bin") as f:
                f.write(src)
                f.flush()
                return load_audio(f.name, rate, min_seconds=min_seconds, max_seconds=max_seconds)
        path = Path(os.fspath(src))
        if not path.exists():
            raise UnreadableAudioError(f"no such file: {path}")
        if path.is_dir():
            raise UnreadableAudioError(f"{path} is a folder, not an audio file")
        if path.stat().st_size == 0:
            raise EmptyAudioError(f"{path.name} is empty (0 bytes): record or upload some speech.")
        audio = _read_file(path, rate, max_seconds)
        if audio.size == 0:
            raise EmptyAudioError(f"{path.name} decodes to no audio samples: it holds no sound.")
        if max_seconds is not None and audio.size > max_seconds * rate:
            audio = audio[: int(max_seconds * rate)]
            warnings.warn(AudioCappedWarning(f"{path.name} was cut to its first {max_seconds:g} s"),
                          stacklevel=2)
    if not np.all(np.isfinite(audio)):
        raise UnreadableAudioError("the audio holds NaN or infinite samples; it is corrupt.")
    if audio.size < min_seconds * rate:
        raise TooShortAudioError(f"the audio lasts {audio.size / rate:.2f} s; at least {min_seconds:g} s "
                                 "of speech is needed. Record a full sentence.")
    if np.abs(audio).max() < SILENCE_PEAK:
        raise SilentAudioError("the audio is silent (no sound above -60 dBFS). Check the microphone "
                               "and record again.")
    return np.ascontiguousarray(audio, dtype=np.float32)


def _read_file(path: Path, rate: int, max_seconds: float | None) -> np.ndarray:
    """WAV/FLAC/OGG through soundfile (fast, exact); everything else through ffmpeg."""
    import soundfile as sf

    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception:  # not a format libsndfile knows (mp3 in old builds, m4a, webm, video): ffmpeg
        return _decode_ffmpeg(str(path), rate, max_seconds)
    if max_seconds is not None:
        data = data[: int((max_seconds + 1.0) * sr)]
    return resample(data.mean(axis=1), sr, rate) if data.size else np.zeros(0, np.float32)


def write_wav(path: str | os.PathLike, audio: np.ndarray, rate: int = SAMPLE_RATE) -> None:
    """Write (N,) float audio as 16-bit PCM WAV."""
    import soundfile as sf

    sf.write(str(path), np.clip(audio, -1, 1), rate, subtype="PCM_16")
