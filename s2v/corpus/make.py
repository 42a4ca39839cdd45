"""`python -m s2v.corpus make`: the synthetic corpus in CREMA-D's layout.

AudioWAV/<actor>_<sentence>_<emotion>_<level>.wav   16 kHz mono PCM
VideoFlash/<same stem>.flv                          H.264 (+ AAC) in FLV, 30 fps, as long as the audio
VideoDemographics.csv                               ActorID, Age, Sex, Race, Ethnicity
actors.json                                         corpus settings and every actor (split, sex, age
                                                    group, voice and face parameters)
Stills/<actor>.png                                  neutral face, mouth closed
"""
from __future__ import annotations

import csv
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..audio import FPS, SAMPLE_RATE, num_frames, resample, write_wav
from ..video import write_video
from ..labels import EMOTIONS
from .actors import EFFORT_TILT, EXPRESSION, LEVELS, PROSODY, SENTENCES, TRAITS, Actor, make_actors
from .face import FaceRenderer, Mouth, Pose
from .motion import frame_rms, mouth_track, poses
from .speech import synthesize

CORPUS_FPS = FPS["crema-d"]


@dataclass(frozen=True)
class ClipSpec:
    actor: Actor
    sentence: str
    emotion: str
    level: str
    seed: int
    level_spread: float = 0.0  # dB: the clip's recording level is drawn uniformly within ± this

    @property
    def stem(self) -> str:
        return f"{self.actor.id}_{self.sentence}_{self.emotion}_{self.level}"

    def rng(self, stream: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.actor.id, list(SENTENCES).index(self.sentence),
                                      EMOTIONS.index(self.emotion), stream])


def _channel(audio: np.ndarray, voice, rng: np.random.Generator) -> np.ndarray:
    """The actor's own colour (a resonance and a spectral tilt), then a faint room noise."""
    from scipy.signal import lfilter

    # peaking filter (RBJ biquad) at eq_hz
    w0 = 2 * np.pi * voice.eq_hz / SAMPLE_RATE
    A, alpha = 10 ** (voice.eq_db / 40), np.sin(w0) / (2 * 1.4)
    b = [1 + alpha * A, -2 * np.cos(w0), 1 - alpha * A]
    a = [1 + alpha / A, -2 * np.cos(w0), 1 - alpha / A]
    y = lfilter(np.array(b) / a[0], np.array(a) / a[0], audio)
    y = y + 0.35 * voice.tilt * np.concatenate([[0.0], np.diff(y)])  # brighter (+) or darker (-)
    y = y + rng.normal(0, 10 ** (-62 / 20), y.shape)
    return y.astype(np.float32)


def effort_shelf(audio: np.ndarray, db: float) -> np.ndarray:
    """`audio` with `db` more level at 2 kHz and above than below 500 Hz (a smooth step between, on a log
    frequency axis; zero phase): vocal effort's brightening (`actors.EFFORT_TILT`)."""
    if not db or audio.size < 2:
        return audio
    f = np.fft.rfftfreq(audio.size, 1 / SAMPLE_RATE)
    s = np.clip(np.log2(np.maximum(f, 1.0) / 500.0) / 2, 0, 1)
    s = s * s * (3 - 2 * s)
    return np.fft.irfft(np.fft.rfft(audio) * 10 ** (db * s / 20), audio.size).astype(np.float32)


def synth_speech(spec: ClipSpec) -> tuple[np.ndarray, list[tuple[str, float]]]:
    """The clip's speech at 16 kHz and its phonemes (name, start s), leading silence included."""
    v = spec.actor.voice
    k = LEVELS[spec.level] if spec.emotion != "NEU" else 0.0
    p = PROSODY[spec.emotion]
    rng = spec.rng(1)
    jitter = rng.normal(0, 1, 3)
    effort = 1 + k * (p.volume - 1)  # the emotion's volume relative to the actor's neutral
    utt = synthesize(
        SENTENCES[spec.sentence], language=v.language, variant=v.variant,
        pitch=int(np.clip(v.pitch + k * p.pitch + 2 * jitter[0], 0, 99)),
        pitch_range=int(np.clip(v.range * (1 + k * (p.range - 1)) + 3 * jitter[1], 0, 99)),
        rate=int(np.clip(v.rate * (1 + k * (p.rate - 1)) * (1 + 0.03 * jitter[2]), 80, 400)),
        volume=int(np.clip(v.volume * effort, 10, 200)),
        wordgap=int(round(k * p.wordgap)), seed=int(rng.integers(2 ** 31)))
    audio = resample(utt.audio, utt.rate, SAMPLE_RATE)
    if p.tremolo and k:
        t = np.arange(audio.size) / SAMPLE_RATE
        audio = audio * (1 + k * p.tremolo * np.sin(2 * np.pi * rng.uniform(5, 7) * t)).astype(np.float32)
    audio = effort_shelf(audio, EFFORT_TILT * 20 * np.log10(effort))
    lead, tail = rng.uniform(0.15, 0.35), rng.uniform(0.15, 0.35)
    audio = np.concatenate([np.zeros(int(lead * SAMPLE_RATE), np.float32), audio,
                            np.zeros(int(tail * SAMPLE_RATE), np.float32)])
    audio = _channel(audio, v, rng)
    if spec.level_spread:  # where the microphone sat and how it was set: a gain that says nothing of the speaker
        audio = audio * np.float32(10 ** (spec.rng(3).uniform(-spec.level_spread, spec.level_spread) / 20))
    peak = np.abs(audio).max()
    if peak > 0.98:
        audio *= 0.98 / peak
    phonemes = [(name, t + lead) for name, t in utt.phonemes]
    return audio, phonemes


def render_clip(spec: ClipSpec, size: int, audio: np.ndarray, phonemes) -> np.ndarray:
    """(T, size, size, 3) uint8 frames that follow `audio`."""
    k = LEVELS[spec.level] if spec.emotion != "NEU" else 0.0
    renderer = FaceRenderer(spec.actor.face, EXPRESSION[spec.emotion].scaled(k), size)
    return _speak(renderer, audio, phonemes, spec.rng(2), 1.0 + 0.5 * (spec.emotion in ("ANG", "FEA", "HAP")) * k)


def render_lips(actor: Actor, audio: np.ndarray, size: int = 128, seed: int = 0, phonemes=None) -> np.ndarray:
    """(T, size, size, 3) uint8 frames of `actor`'s neutral face speaking `audio` (16 kHz, any source) by the
    corpus' rule: visemes from `phonemes` (eSpeak's (name, seconds) events) or, without them, one open vowel
    wherever the audio is voiced, so that the jaw follows the audio's loudness alone. Any recorded speech can drive
    that: `benchmarks/real_voices.py` scores such clips as a reference for what a sync judge makes of a voice."""
    renderer = FaceRenderer(actor.face, EXPRESSION["NEU"].scaled(0.0), size)
    return _speak(renderer, audio, phonemes if phonemes is not None else [("a", 0.0)], np.random.default_rng(seed))


def _speak(renderer: FaceRenderer, audio: np.ndarray, phonemes, rng: np.random.Generator,
           motion: float = 1.0) -> np.ndarray:
    n = num_frames(audio.size, CORPUS_FPS)
    mouths, _ = mouth_track(phonemes, audio, CORPUS_FPS, n)
    energy = frame_rms(audio, CORPUS_FPS, n)
    energy = energy / (energy.max() + 1e-8)
    pose = poses(n, CORPUS_FPS, rng, energy, motion)
    return np.stack([renderer.frame(m, p) for m, p in zip(mouths, pose)])


def make_clip(spec: ClipSpec, out: Path, size: int) -> str:
    """Write one clip's wav and flv (skipped when both exist). Returns the stem."""
    wav, flv = out / "AudioWAV" / f"{spec.stem}.wav", out / "VideoFlash" / f"{spec.stem}.flv"
    if wav.exists() and flv.exists():
        return spec.stem
    audio, phonemes = synth_speech(spec)
    frames = render_clip(spec, size, audio, phonemes)
    write_video(flv, frames, CORPUS_FPS, audio, fmt="flv")
    part = wav.with_name(wav.name + ".part.wav")
    write_wav(part, audio)
    os.replace(part, wav)
    return spec.stem


def still(actor: Actor, size: int) -> np.ndarray:
    """The actor's reference image: neutral, mouth closed, head still, eyes open."""
    return FaceRenderer(actor.face, EXPRESSION["NEU"], size).frame(Mouth(), Pose())


def actor_lines(actor: Actor, sentences: list[str], emotions: list[str], seed: int,
                per_actor: int | None) -> list[tuple[str, str]]:
    """(sentence, emotion) pairs the actor speaks: all of them, or `per_actor` drawn so that the emotions
    take turns (each emotion's sentences in a random order of the actor's own, no pair twice)."""
    if per_actor is None or per_actor >= len(sentences) * len(emotions):
        return [(s, e) for s in sentences for e in emotions]
    rng = np.random.default_rng([seed, actor.id, 555])
    order = [list(rng.permutation(sentences)) for _ in emotions]
    first = int(rng.integers(len(emotions)))
    return [(str(order[(first + j) % len(emotions)][j // len(emotions)]), emotions[(first + j) % len(emotions)])
            for j in range(per_actor)]


def clip_specs(actors: list[Actor], sentences: list[str], emotions: list[str], seed: int,
               per_actor: int | None = None, level_spread: float = 0.0) -> list[ClipSpec]:
    """One clip per actor x sentence x emotion (or `per_actor` of them, `actor_lines`). As in CREMA-D,
    IEO carries an intensity level (LO/MD/HI, one per clip here) and the other sentences are
    unspecified (XX)."""
    specs = []
    for a in actors:
        for s, e in actor_lines(a, sentences, emotions, seed, per_actor):
            level = "XX"
            if s == "IEO" and e != "NEU":
                level = ("LO", "MD", "HI")[np.random.default_rng([seed, a.id, EMOTIONS.index(e)]).integers(3)]
            specs.append(ClipSpec(a, s, e, level, seed, level_spread))
    return specs


def _work(args) -> str:
    spec, out, size = args
    return make_clip(spec, Path(out), size)


def make_corpus(out: str | os.PathLike, seen: int = 300, unseen: int = 40, sentences: int = 12,
                emotions: tuple[str, ...] = EMOTIONS, seed: int = 0, workers: int | None = None,
                size: int = 128, progress: bool = True, per_actor: int | None = 8,
                traits: int = TRAITS, level_spread: float = 0.0) -> dict:
    """Make the corpus in `out` (resumable: finished clips are kept). Returns a summary."""
    from tqdm.auto import tqdm

    for e in emotions:
        if e not in EMOTIONS:
            raise ValueError(f"unknown emotion {e!r}; choose from {','.join(EMOTIONS)}")
    if not 1 <= sentences <= len(SENTENCES):
        raise ValueError(f"--sentences must be 1..{len(SENTENCES)}")
    if seen < 1 or unseen < 0:
        raise ValueError("--seen must be >= 1 and --unseen >= 0")
    if per_actor is not None and per_actor < 1:
        raise ValueError("--clips-per-actor must be >= 1")
    if size < 32 or size % 2:
        raise ValueError("--size must be an even number >= 32")
    out = Path(out)
    for sub in ("AudioWAV", "VideoFlash", "Stills"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    old = json.loads((out / "actors.json").read_text()) if (out / "actors.json").exists() else None
    for key, now in (("effort_tilt", EFFORT_TILT), ("level_spread", level_spread)):
        if old is not None and old.get(key, 0.0) != now:  # resuming would mix two kinds of clip
            raise ValueError(f"{out} was made with {key} {old.get(key, 0.0)} (now: {now}); make the corpus in a "
                             "new folder")
    actors = make_actors(seen, unseen, seed, traits)
    sent = list(SENTENCES)[:sentences]
    meta = {"format": "s2v-synthetic-crema-d", "version": 1, "seed": seed, "size": size, "fps": CORPUS_FPS,
            "sample_rate": SAMPLE_RATE, "traits": traits, "clips_per_actor": per_actor, "effort_tilt": EFFORT_TILT,
            "level_spread": level_spread,
            "sentences": {s: SENTENCES[s] for s in sent}, "emotions": list(emotions),
            "actors": [a.to_json() for a in actors]}
    (out / "actors.json").write_text(json.dumps(meta, indent=1))
    with open(out / "VideoDemographics.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ActorID", "Age", "Sex", "Race", "Ethnicity"])
        for a in actors:
            w.writerow([a.id, a.age, a.sex, "Synthetic", "Synthetic"])
    for a in actors:
        cv2.imwrite(str(out / "Stills" / f"{a.id}.png"), still(a, size)[..., ::-1])
    specs = clip_specs(actors, sent, list(emotions), seed, per_actor, level_spread)
    jobs = [(s, str(out), size) for s in specs]
    workers = workers or os.cpu_count() or 1
    bar = tqdm(total=len(jobs), desc="clips", unit="clip", disable=not progress)
    if workers == 1:
        for j in jobs:
            _work(j)
            bar.update()
    else:
        with ProcessPoolExecutor(workers) as pool:
            for _ in pool.map(_work, jobs, chunksize=4):
                bar.update()
    bar.close()
    size_mb = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 2 ** 20
    return {"clips": len(specs), "actors": len(actors), "seconds": round(time.time() - t0, 1),
            "megabytes": round(size_mb, 1), "out": str(out)}
