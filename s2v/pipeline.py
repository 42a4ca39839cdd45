"""Speech2Video: speech in, talking face out.

    pipe = Speech2Video.from_pretrained("runs/stage2")        # or a bundled folder
    result = pipe("speech.wav")                                # or (rate, samples)
    result.emotion      # {"anger": p, ...}
    result.identity     # [(actor id, similarity), ...] seen actors, most similar first
    result.write_mp4("out.mp4")                                 # H.264 + AAC, upscaled for display

A model folder holds `generator/` and the stage 1 it was trained on: either `stage1/` inside it
(`cpc/`, `students/`, `gallery/`) or the path recorded in `stage2.json`.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .audio import SAMPLE_RATE, load_audio, num_frames
from .labels import EMOTION_NAMES, EMOTIONS
from .cpc import CPC
from .gallery import Gallery
from .generator import Generator, generate_clip, to_uint8
from .students import Students


@dataclass
class Result:
    frames: np.ndarray  # (T, H, W, 3) uint8
    fps: int
    audio: np.ndarray  # (N,) float32 16 kHz, what the frames follow
    emotion: dict[str, float]  # class name -> probability: the μ the face was drawn with (after any override)
    identity: list[tuple[str, float]]  # (seen actor id, cosine similarity), most similar first
    nu: np.ndarray = None  # the ν and μ the generator used (after any swap or blend)
    mu: np.ndarray = None
    notices: list[str] = field(default_factory=list)
    unfamiliar: str | None = None  # why the emotion read-out is uncertain (s2v.familiar), else None
    voice_emotion: dict[str, float] = None  # the students' own read-out, before the familiarity check and override
    familiarity: float | None = None  # the voice's distance from the training voices / the threshold (s2v.familiar)

    def write_mp4(self, path: str | os.PathLike, upscale: int | None = 256) -> Path:
        """MP4 (H.264 + AAC, browser-playable) with the speech as its sound."""
        from .video import write_video

        write_video(path, self.frames, self.fps, self.audio, SAMPLE_RATE, fmt="mp4", upscale=upscale,
                    preset="veryfast")  # for display: encode speed over file size
        return Path(path)


def _stage1_dir(model_dir: Path) -> Path:
    if (model_dir / "stage1" / "cpc").is_dir():
        return model_dir / "stage1"
    meta = model_dir / "stage2.json"
    if meta.exists():
        p = Path(json.loads(meta.read_text())["stage1"])
        if p.is_dir():
            return p
    raise FileNotFoundError(f"{model_dir} has no stage1/ and its stage2.json names no stage 1 folder that exists")


RECALL = 0.05  # temperature of the identity recall (None: the voice's ν as is)


def default_identity(nu_norm: bool) -> str:
    """A model folder's identity mode when it does not say: a generator trained on the teacher's ν* of many
    faces (`nu_norm`) decodes any ν ("voice"); one trained on the student's ν of a few actors needs "recall"."""
    return "voice" if nu_norm else "recall"


def default_recall(model_dir: Path, generator: Generator) -> float | None:
    """How a model folder wants ν used: its model_index.json's "identity" ("recall" onto the seen actors, or
    "voice": decoded as is), else by how the generator was trained (`default_identity`)."""
    index = model_dir / "model_index.json"
    mode = json.loads(index.read_text()).get("identity") if index.exists() else None
    if mode is None:
        mode = default_identity(generator.config.nu_norm)
    if mode not in ("recall", "voice"):
        raise ValueError(f"{index}: identity must be 'recall' or 'voice', got {mode!r}")
    return RECALL if mode == "recall" else None


class Speech2Video:
    def __init__(self, cpc: CPC, students: Students, generator: Generator, gallery: Gallery | None,
                 fps: int = 30, device: str | torch.device = "cpu", recall: float | None = RECALL):
        self.device = torch.device(device)
        self.cpc = cpc.to(self.device).eval()
        self.students = students.to(self.device).eval()
        # channels_last: oneDNN's fast path for the decoder's convolutions (2-3x on CPU, same frames to 1e-6)
        self.generator = generator.to(self.device, memory_format=torch.channels_last).eval()
        self.gallery = gallery
        self.fps = fps
        self.recall = recall if gallery is not None else None
        self.source = ""  # where from_pretrained found the model
        self.vad = True  # refuse input without speech (s2v.vad); False feeds any sound to the model
        # the generator hears the pauses the VAD finds as silence (s2v.vad.gate_pauses): the mouth closes in them
        self.gate_pauses = True
        self.familiarity = None  # s2v.familiar.Familiarity: how far a voice is from the training voices
        self.speaker = None  # s2v.speaker.SpeakerEncoder: recall by a speaker encoder trained on real speech

    @classmethod
    def from_pretrained(cls, model: str | os.PathLike | None, device: str | None = None, fps: int = 30,
                        recall: float | None | str = "auto") -> "Speech2Video":
        """`model`: a folder, a Hub id, or None ($S2V_MODEL, else the bundled model); see `s2v.hub.resolve_model`.
        `recall`: temperature of the soft nearest-seen-identity mapping of ν (`Gallery.recall`); None feeds the
        voice's ν to the generator as the paper does; "auto" (default) what the model folder says
        (`default_recall`)."""
        from .hub import resolve_model

        d, source = resolve_model(model)  # a folder, or a Hub id (bundled model if the Hub is unreachable)
        s1 = _stage1_dir(d)
        gallery = Gallery.load(s1 / "gallery") if (s1 / "gallery" / "gallery.json").exists() else None
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        generator = Generator.from_pretrained(d / "generator")
        if recall == "auto":
            recall = default_recall(d, generator)
        pipe = cls(CPC.from_pretrained(s1 / "cpc"), Students.from_pretrained(s1 / "students"), generator, gallery,
                   fps, device, recall)
        pipe.source = source
        if (s1 / "familiarity" / "familiarity.json").exists():
            from .familiar import Familiarity

            pipe.familiarity = Familiarity.load(s1 / "familiarity")
        if gallery is not None and (s1 / "speaker" / "config.json").exists():
            from .speaker import SpeakerEncoder

            speaker = SpeakerEncoder.from_pretrained(s1 / "speaker")
            if list(speaker.config.ids) != list(gallery.ids):
                raise ValueError(f"{s1 / 'speaker'} holds keys for other actors than {s1 / 'gallery'}: "
                                 "run python -m s2v.speaker again")
            pipe.speaker = speaker.to(pipe.device).eval()
        return pipe

    def identity(self, nu: torch.Tensor, wav: np.ndarray | None = None,
                 embedding: np.ndarray | None = None) -> torch.Tensor:
        """The ν the generator gets for a voice's ν (B, D): recalled onto the seen actors, or as is. With a
        speaker encoder (`s2v.speaker`) and the voice's waveform `wav` (or its `embedding`; then B = 1), the
        seen actors are weighed by the encoder's similarity instead of S_id's."""
        if self.recall is None:
            return nu
        if self.speaker is not None and (wav is not None or embedding is not None):
            e = self.speaker.embed(wav) if embedding is None else embedding
            return torch.from_numpy(self.gallery.mix(self.speaker.weights(e)))[None].to(nu.device, nu.dtype)
        return torch.from_numpy(self.gallery.recall(nu.float().cpu().numpy(), self.recall)).to(nu.device)

    @torch.no_grad()
    def heard(self, wav: np.ndarray, c: torch.Tensor, spans: list[tuple[int, int]] | None = None) -> torch.Tensor:
        """The context vectors (1, T, H) the generator reads for `wav`, whose CPC output is `c`: with what lies
        outside the speech (`spans` from `s2v.vad.speech_spans`, found here when None) faded to silence when
        `gate_pauses` is on, so the mouth closes in pauses; `c` itself when it is off or nothing lies outside."""
        if not self.gate_pauses:
            return c
        from .vad import gate_pauses, speech_spans

        gated = gate_pauses(wav, speech_spans(wav) if spans is None else spans)
        if gated is wav:
            return c
        return self.cpc(torch.from_numpy(gated)[None].to(self.device))[0].to(c.dtype)

    @torch.no_grad()
    def __call__(self, audio, *, max_seconds: float | None = 600.0, emotion: dict[str, float] | None = None,
                 emotion_weight: float = 0.0, actor: str | None = None) -> Result:
        """Generate the clip. `emotion` (class -> weight) blended into μ with `emotion_weight` in [0, 1];
        `actor` swaps in a seen actor's identity (its mean ν* from the gallery)."""
        import warnings

        from .audio import AudioCappedWarning

        notices = []
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", AudioCappedWarning)
            wav = load_audio(audio, max_seconds=max_seconds)
        notices += [str(w.message) for w in caught if issubclass(w.category, AudioCappedWarning)]
        spans = None
        if self.vad:
            from .audio import NoSpeechError
            from .vad import no_speech_reason, speech_spans

            spans = speech_spans(wav)
            reason = no_speech_reason(wav, spans=spans)
            if reason:
                raise NoSpeechError(f"no speech found: {reason}. Record or upload someone speaking.")
        x = torch.from_numpy(wav)[None].to(self.device)
        c, _ = self.cpc(x)
        c_gen = self.heard(wav, c, spans)
        nu, mu = self.students.infer(c, x)
        own = drawn = torch.softmax(mu, -1)[0]
        unfamiliar = familiarity = None
        if self.familiarity is not None:  # a voice unlike the training voices: the read-out blends to uniform
            dist = self.familiarity.distance(c[0].float().cpu().numpy())
            familiarity, conf = dist / self.familiarity.threshold, self.familiarity.confidence(dist)
            if conf < 1:
                unfamiliar = (f"this voice is unlike the voices the model learned from (distance "
                              f"{familiarity:.1f}× the corpus voices' 99th percentile): "
                              f"the emotion read-out is uncertain (confidence {conf:.2f})")
                drawn = conf * drawn + (1 - conf) / drawn.numel()
        if emotion and emotion_weight > 0:
            target = torch.tensor([float(emotion.get(e, emotion.get(EMOTION_NAMES[e], 0.0))) for e in EMOTIONS],
                                  device=self.device)
            if target.sum() > 0:
                drawn = (1 - emotion_weight) * drawn + emotion_weight * target / target.sum()
        if drawn is not own:  # the generator draws what the bars show
            mu = torch.log(drawn.clamp_min(1e-6))[None] + mu.logsumexp(-1, keepdim=True)
        identity = []
        if self.gallery is not None:
            spk = self.speaker.embed(wav) if self.speaker is not None else None
            sims = self.gallery.similarity(nu.cpu().numpy())[0] if spk is None else self.speaker.similarity(spk)
            identity = sorted(zip(self.gallery.ids, map(float, sims)), key=lambda p: -p[1])
            if actor is not None:
                if actor not in self.gallery.ids:
                    raise ValueError(f"unknown actor {actor!r}; seen actors: {', '.join(self.gallery.ids)}")
                nu = torch.from_numpy(self.gallery.embeddings[self.gallery.ids.index(actor)])[None].to(self.device)
            else:
                nu = self.identity(nu, embedding=spk)
        n = num_frames(wav.size, self.fps)
        frames = generate_clip(self.generator, c_gen[0], nu[0], mu[0], n, self.fps)
        frames = to_uint8(frames)
        emo = {EMOTION_NAMES[e]: float(p) for e, p in zip(EMOTIONS, drawn.tolist())}
        voice = {EMOTION_NAMES[e]: float(p) for e, p in zip(EMOTIONS, own.tolist())}
        return Result(frames, self.fps, wav, emo, identity, nu[0].cpu().numpy(), mu[0].cpu().numpy(), notices,
                      unfamiliar, voice, familiarity)
