"""Speech synthesis with eSpeak NG (through the `espeakng-loader` wheel and ctypes).

eSpeak NG is a formant synthesiser: each actor gets a voice *variant* file of its own (base pitch
and range in Hz, formant scaling = vocal-tract length and colour, flutter, roughness, breath), which
is what makes a voice recognisable, plus per-utterance prosody (pitch, range, rate, volume) that
carries the emotion. The library reports every phoneme with its position in the audio, which
drives the lips of the rendered face.

The library holds global state: one engine at a time per process (the corpus maker runs one per
worker process), loaded anew for each utterance so the output is reproducible.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# speak_lib.h constants
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1
_EVENT_PHONEME = 7
_PARAM = {"rate": 1, "volume": 2, "pitch": 3, "range": 4, "wordgap": 7}


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # milliseconds from the start of the utterance
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                                  ctypes.POINTER(_Event))


@dataclass(frozen=True)
class VoiceVariant:
    """An actor's voice timbre, written as an eSpeak NG variant file."""

    gender: str  # "male" | "female"
    pitch_base_hz: float
    pitch_range_hz: float
    formant_scale: tuple[float, ...]  # frequency scale (%) of formants 0..5
    formant_height: tuple[float, ...]  # amplitude (%) of formants 0..5
    flutter: int = 5
    roughness: int = 3
    breath: int = 0

    def text(self) -> str:
        """The variant file's text."""
        lines = ["language variant", "name s2v", f"gender {self.gender}", "",
                 f"pitch {int(self.pitch_base_hz)} {int(self.pitch_base_hz + self.pitch_range_hz)}",
                 f"flutter {self.flutter}", f"roughness {self.roughness}"]
        for i, (f, h) in enumerate(zip(self.formant_scale, self.formant_height)):
            lines.append(f"formant {i} {int(round(f))} {int(round(h))} 100")
        if self.breath:
            b = self.breath
            lines.append(f"breath 0 {b} {b} {b} {b} {b} {b} {b}")
        return "\n".join(lines) + "\n"

    def key(self) -> str:
        return "s2v" + hashlib.sha1(self.text().encode()).hexdigest()[:12]


@dataclass
class Utterance:
    """Synthesised speech: samples at `rate` and phoneme events (name, start seconds)."""

    audio: np.ndarray  # (N,) float32 in [-1, 1]
    rate: int
    phonemes: list[tuple[str, float]]
    words: list[float]  # word start times, seconds


@functools.lru_cache(maxsize=None)  # once per process: the stale-variant sweep below must not race the live ones
def _data_dir() -> Path:
    """A private copy of eSpeak's data folder (symlinks) whose `voices/!v` we may add files to."""
    import espeakng_loader

    src = Path(espeakng_loader.get_data_path())
    root = Path(os.environ.get("S2V_CACHE", Path(tempfile.gettempdir()) / "s2v-cache"))
    dst = root / f"espeak-ng-data-{os.getuid() if hasattr(os, 'getuid') else 0}"
    if not (dst / "voices" / "!v" / "m1").exists():
        tmp = Path(tempfile.mkdtemp(dir=root if root.exists() else None, prefix="espeak-"))
        for entry in src.iterdir():
            if entry.name != "voices":
                (tmp / entry.name).symlink_to(entry)
        (tmp / "voices" / "!v").mkdir(parents=True)
        for v in (src / "voices" / "!v").iterdir():
            (tmp / "voices" / "!v" / v.name).symlink_to(v)
        root.mkdir(parents=True, exist_ok=True)
        try:
            tmp.rename(dst)
        except OSError:  # another process won the race; use theirs
            pass
    import time

    for stale in (dst / "voices" / "!v").glob("s2v*"):  # variants left by crashed runs count against the cap
        try:
            if time.time() - stale.stat().st_mtime > 600:  # not one that a live process is about to load
                stale.unlink(missing_ok=True)
        except FileNotFoundError:
            pass
    return dst



def synthesize(text: str, **kwargs) -> Utterance:
    """Synthesise `text` on a fresh engine (see `Espeak.synth` for the arguments)."""
    with Espeak() as engine:
        return engine.synth(text, **kwargs)


class Espeak:
    """A fresh eSpeak NG engine: `with Espeak() as e: e.synth(...)`.

    The library keeps state in static variables between utterances (the flutter and glottal phase
    run on), so the same text would come out slightly different depending on what was said before.
    Each `Espeak` loads the library anew and unloads it on exit, which makes every utterance
    depend on its own arguments alone (about 10 ms of overhead).
    """

    def __init__(self) -> None:
        import espeakng_loader

        self.data = _data_dir()
        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self.lib.espeak_Initialize.restype = ctypes.c_int
        rate = self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 200, str(self.data).encode(),
                                          _INITIALIZE_PHONEME_EVENTS | _INITIALIZE_DONT_EXIT)
        if rate <= 0:
            raise RuntimeError(f"eSpeak NG failed to initialise with data at {self.data}")
        self.rate = rate
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[int, str, int]] = []
        self._cb = _SynthCallback(self._on_audio)  # keep a reference: ctypes does not
        self.lib.espeak_SetSynthCallback(self._cb)
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                          ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]

    def __enter__(self) -> "Espeak":
        return self

    def __exit__(self, *exc) -> None:
        import _ctypes

        self.lib.espeak_Terminate()
        _ctypes.dlclose(self.lib._handle)

    def _on_audio(self, wav, n, events) -> int:
        if n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            ev = events[i]
            if ev.type == _EVENT_PHONEME:
                self._events.append((ev.type, ev.id.string.decode("ascii", "replace"), ev.audio_position))
            elif ev.type == _EVENT_WORD:
                self._events.append((ev.type, "", ev.audio_position))
            i += 1
        return 0

    def _set_voice(self, language: str, variant: VoiceVariant) -> None:
        """Load `language` with the variant. eSpeak NG finds a variant only among the first 350 voice
        files it lists, so each variant file lives just until it is loaded (a corpus of hundreds of
        actors would pass that cap). The file is this process's own (its name carries the pid): no other
        worker can remove it before it is loaded, and a failed load never leaves a half-set voice behind
        that a retry would build on (the output depends on the variant's text alone)."""
        key = f"{variant.key()[:9]}x{os.getpid() % 0x1000000:x}"  # short: eSpeak's voice-name buffer is small
        name = f"{language}+{key}"
        path = self.data / "voices" / "!v" / key
        path.write_text(variant.text())
        try:
            if self.lib.espeak_SetVoiceByName(name.encode()) != 0:
                raise RuntimeError(f"eSpeak NG has no voice {name!r}")
        finally:
            path.unlink(missing_ok=True)

    def synth(self, text: str, *, language: str, variant: VoiceVariant, pitch: int, pitch_range: int,
              rate: int, volume: int, wordgap: int = 0, seed: int = 0) -> Utterance:
        """Synthesise `text`; `pitch`/`pitch_range` 0-100 (50 = the variant's own), `rate` in wpm.

        eSpeak NG draws random numbers (noise, flutter) from a generator that lives on between
        calls; seeding it per utterance makes the output depend on `seed` alone, not on call order.
        """
        self._set_voice(language, variant)
        for key, value in (("rate", rate), ("volume", volume), ("pitch", pitch), ("range", pitch_range),
                           ("wordgap", wordgap)):
            self.lib.espeak_SetParameter(_PARAM[key], int(value), 0)
        self._chunks, self._events = [], []
        self.lib.espeak_ng_SetRandSeed(ctypes.c_long(seed))
        buf = text.encode("utf-8") + b"\0"
        err = self.lib.espeak_Synth(buf, len(buf), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        if err != 0:
            raise RuntimeError(f"eSpeak NG synthesis failed (error {err}) for {text!r}")
        self.lib.espeak_Synchronize()
        audio = (np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)).astype(np.float32) / 32768
        phonemes = [(name, pos / 1000) for t, name, pos in self._events if t == _EVENT_PHONEME]
        words = [pos / 1000 for t, _, pos in self._events if t == _EVENT_WORD]
        return Utterance(audio, self.rate, phonemes, words)
