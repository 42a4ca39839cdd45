"""A speaker encoder trained on real speech, beside the paper's CPC: who a voice recalls.

Every other part of s2v has heard only eSpeak NG, so S_id maps a real microphone voice, or a corpus voice
through a phone line or a room, onto one seen actor for nearly every speaker (`benchmarks/real_voices.py`).
This module carries the GE2E speaker encoder of Resemblyzer (Wan et al. 2018, "Generalized end-to-end loss
for speaker verification"; trained by Resemble AI on LibriSpeech, VoxCeleb 1 and 2; Apache-2.0): a 3-layer
LSTM over 40-band mel spectrograms of 1.6 s windows, mean of the L2-normalised window embeddings. Its weights
come from the `resemblyzer` wheel on PyPI (`from_resemblyzer`), are stored in the model folder
(`stage1/speaker/`) with each seen actor's key (the mean embedding over its training clips), and the
pipeline's identity recall weighs the seen actors by the cosine of the voice's embedding to their keys
(`Speech2Video.identity`). Beyond the paper.

    python -m s2v.speaker --data data24/prep64 --model checkpoints/default   # weights from PyPI's wheel
    python -m s2v.speaker --data ... --model ... --weights path/to/pretrained.pt
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .audio import SAMPLE_RATE
from .modeling import Pretrained

WHEEL = "resemblyzer==0.1.4"


@dataclass
class SpeakerConfig:
    n_mels: int = 40
    hidden: int = 256
    layers: int = 3
    dim: int = 256
    window: int = 160  # mel frames per partial embedding (1.6 s)
    step: int = 77  # mel frames between partials (Resemblyzer's 1.3 partials a second)
    min_coverage: float = 0.75  # the last partial is kept when this share of it is audio
    level_dbfs: float = -30.0  # every input is scaled to this RMS first (the level Resemblyzer trained at)
    ids: tuple[str, ...] = ()  # the seen actors whose keys are held, in the gallery's order
    # the recording conditions each actor has a key for (s2v.degrade.CONDITIONS, and "clean"): a voice's
    # similarity to an actor is its best over them
    conditions: tuple[str, ...] = ("clean",)
    temperature: float = 0.005  # recall: softmax(similarity / T) over the seen actors (one face, or two blended)


class SpeakerEncoder(Pretrained):
    """GE2E: `embed(wav)` -> (dim,) unit vector; `similarity(e)` -> (A,) each seen actor's best cosine over its
    keys (one per recording condition); `weights(e)` -> (A,) the recall's softmax over them."""

    config_class = SpeakerConfig
    model_type = "s2v-speaker"

    def __init__(self, config: SpeakerConfig = SpeakerConfig()):
        super().__init__()
        self.config = config
        self.lstm = nn.LSTM(config.n_mels, config.hidden, config.layers, batch_first=True)
        self.linear = nn.Linear(config.hidden, config.dim)
        self.register_buffer("keys", torch.zeros(len(config.conditions) * len(config.ids), config.dim))

    def mel(self, x: torch.Tensor) -> torch.Tensor:
        """(N,) waveform -> (T, n_mels) power mel frames, as Resemblyzer computes them (librosa's
        melspectrogram defaults: 25 ms Hann windows every 10 ms, Slaney mel scale and norm)."""
        import torchaudio

        m = torchaudio.transforms.MelSpectrogram(SAMPLE_RATE, n_fft=400, hop_length=160, n_mels=self.config.n_mels,
                                                 norm="slaney", mel_scale="slaney", pad_mode="constant")
        return m.to(x.device)(x).T

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        """(B, window, n_mels) power mel frames -> (B, dim) unit embeddings."""
        _, (h, _) = self.lstm(mels)
        return F.normalize(F.relu(self.linear(h[-1])), dim=-1)

    def partials(self, n_frames: int) -> list[int]:
        """Start frames of the partial windows over `n_frames` mel frames (at least one)."""
        c = self.config
        starts = list(range(0, max(1, n_frames - c.window + c.step + 1), c.step))
        if len(starts) > 1 and (n_frames - starts[-1]) / c.window < c.min_coverage:
            starts = starts[:-1]
        return starts

    @torch.no_grad()
    def embed(self, wav: np.ndarray | torch.Tensor) -> np.ndarray:
        """(dim,) float32 embedding of a 16 kHz waveform; a gain does not change it."""
        c = self.config
        x = torch.from_numpy(np.array(wav, dtype=np.float32)).flatten()  # a copy: the caller's array may be read-only
        rms = x.pow(2).mean().sqrt()
        if rms <= 0:
            raise ValueError("silent input: no speaker to embed")
        x = x * (10 ** (c.level_dbfs / 20) / rms)
        m = self.mel(x.to(self.linear.weight.device))
        starts = self.partials(m.shape[0])
        need = starts[-1] + c.window
        if m.shape[0] < need:
            m = F.pad(m, (0, 0, 0, need - m.shape[0]))
        e = self(torch.stack([m[s:s + c.window] for s in starts])).mean(0)
        return F.normalize(e, dim=0).cpu().numpy()

    def similarity(self, e: np.ndarray) -> np.ndarray:
        """(A,) for each seen actor (`config.ids`) the best cosine of an embedding to its keys (`config.conditions`)."""
        k = F.normalize(self.keys.float(), dim=-1).cpu().numpy()
        s = k @ (e / (np.linalg.norm(e) + 1e-8))
        return s.reshape(len(self.config.conditions), len(self.config.ids)).max(0)

    def weights(self, e: np.ndarray) -> np.ndarray:
        """(A,) softmax(similarity / temperature) over the seen actors."""
        s = self.similarity(e) / self.config.temperature
        w = np.exp(s - s.max())
        return (w / w.sum()).astype(np.float32)

    def set_keys(self, ids: list[str], keys: np.ndarray, conditions: tuple[str, ...] = ("clean",)) -> "SpeakerEncoder":
        """A copy that holds `keys` for the seen actors `ids`: (A, dim), or (C, A, dim) one per recording
        condition in `conditions`."""
        import dataclasses

        keys = np.asarray(keys, np.float32)
        keys = keys[None] if keys.ndim == 2 else keys
        if keys.shape[:2] != (len(conditions), len(ids)):
            raise ValueError(f"keys of shape {keys.shape} for {len(conditions)} conditions x {len(ids)} actors")
        out = SpeakerEncoder(dataclasses.replace(self.config, ids=tuple(ids), conditions=tuple(conditions)))
        state = {k: v for k, v in self.state_dict().items() if k != "keys"}
        out.load_state_dict({**state, "keys": torch.from_numpy(keys.reshape(-1, keys.shape[-1]))})
        return out

    @classmethod
    def from_resemblyzer(cls, path: str | Path) -> "SpeakerEncoder":
        """The encoder with the weights of Resemblyzer's `pretrained.pt` (its "model_state"; a plain state dict
        of tensors, read with weights_only)."""
        ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
        state = ckpt.get("model_state", ckpt)
        enc = cls()
        missing, unexpected = enc.load_state_dict(
            {k: v for k, v in state.items() if k.startswith(("lstm.", "linear."))}, strict=False)
        if [k for k in missing if k != "keys"] or unexpected:
            raise ValueError(f"{path}: not a Resemblyzer voice encoder (missing {missing}, unexpected {unexpected})")
        return enc


def resemblyzer_weights(cache: str | Path | None = None) -> Path:
    """Resemblyzer's pretrained.pt: from the installed package, else from its wheel on PyPI (pip download,
    the one network use, at training time only) unpacked under `cache` (default ~/.cache/s2v/resemblyzer)."""
    try:
        import importlib.util

        spec = importlib.util.find_spec("resemblyzer")
        if spec and spec.origin and (Path(spec.origin).parent / "pretrained.pt").exists():
            return Path(spec.origin).parent / "pretrained.pt"
    except (ImportError, ValueError):
        pass
    cache = Path(cache or Path.home() / ".cache" / "s2v" / "resemblyzer")
    out = cache / "pretrained.pt"
    if out.exists():
        return out
    cache.mkdir(parents=True, exist_ok=True)
    r = subprocess.run([sys.executable, "-m", "pip", "download", WHEEL, "--no-deps", "-d", str(cache)],
                       capture_output=True, text=True)
    wheels = sorted(cache.glob("[Rr]esemblyzer-*.whl"))
    if r.returncode or not wheels:
        raise RuntimeError(f"could not fetch {WHEEL} from PyPI ({r.stderr.strip()[-300:]}); pass --weights "
                           "path/to/pretrained.pt")
    with zipfile.ZipFile(wheels[-1]) as z:
        out.write_bytes(z.read("resemblyzer/pretrained.pt"))
    return out


CONDITIONS = ("clean", "reverb", "noise", "phone", "opus")


def actor_keys(encoder: SpeakerEncoder, data, ids: list[str], conditions=CONDITIONS, seed: int = 0,
               progress: bool = True) -> np.ndarray:
    """(C, A, dim) each actor's unit mean embedding over its training clips of a `Prepared` dataset, as
    recorded (`clean`) and through each of `conditions`' s2v.degrade.CONDITIONS (a room, noise, a phone line,
    a codec): enrolment in every condition, so that a voice through a phone finds its speaker's phone key."""
    from tqdm.auto import tqdm

    from .degrade import CONDITIONS as DEGRADE

    unknown = [c for c in conditions if c != "clean" and c not in DEGRADE]
    if unknown:
        raise ValueError(f"unknown recording conditions {unknown}; known: clean, {', '.join(DEGRADE)}")
    rng = np.random.default_rng(seed)
    train = [i for i in data.split("train") if data.clips[i]["actor"] in set(ids)]
    actors = np.array([data.clips[i]["actor"] for i in train])
    out = []
    for c in conditions:
        f = (lambda w: w) if c == "clean" else (lambda w, f=DEGRADE[c]: f(w, rng))
        emb = np.stack([encoder.embed(f(data.audio(i)))
                        for i in tqdm(train, desc=f"speaker keys ({c})", disable=not progress)])
        keys = np.stack([emb[actors == a].mean(0) for a in ids])
        out.append(keys / np.linalg.norm(keys, axis=1, keepdims=True))
    return np.stack(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="the prepared corpus the model's gallery came from")
    p.add_argument("--model", required=True, help="a model folder with stage1/gallery; writes stage1/speaker/")
    p.add_argument("--weights", default=None, help="Resemblyzer's pretrained.pt (default: from its PyPI wheel)")
    p.add_argument("--temperature", type=float, default=SpeakerConfig.temperature)
    p.add_argument("--conditions", default=",".join(CONDITIONS),
                   help="recording conditions each actor gets a key for (clean and s2v.degrade.CONDITIONS)")
    p.add_argument("--dtype", default="float16", choices=("float16", "float32"),
                   help="storage of the weights (from_pretrained loads them into float32)")
    a = p.parse_args(argv)

    from .data import Prepared
    from .gallery import Gallery
    from .pipeline import _stage1_dir

    s1 = _stage1_dir(Path(a.model))
    gallery = Gallery.load(s1 / "gallery")
    enc = SpeakerEncoder.from_resemblyzer(a.weights or resemblyzer_weights())
    enc.config.temperature = a.temperature
    conditions = tuple(x.strip() for x in a.conditions.split(",") if x.strip())
    enc = enc.set_keys(gallery.ids, actor_keys(enc, Prepared(a.data), gallery.ids, conditions), conditions)
    enc.to(getattr(torch, a.dtype)).save_pretrained(s1 / "speaker", card=(
        "# s2v speaker encoder\n\nResemblyzer's GE2E voice encoder (Apache-2.0; trained on LibriSpeech and "
        "VoxCeleb 1 and 2 by Resemble AI), with the mean embedding of each seen actor's training clips as its "
        f"keys ({len(gallery.ids)} actors, from `{a.data}`), one per recording condition ({', '.join(conditions)}; "
        "s2v.degrade). The pipeline recalls a voice's face by its best cosine to each actor's keys, softmax "
        f"temperature {a.temperature}.\n"))
    from .bundle import add_part

    add_part(a.model, "stage1/speaker", "Resemblyzer's GE2E speaker encoder (real speech; Apache-2.0) and each "
             "seen actor's key: who a voice recalls (`python -m s2v.speaker`)")
    print(f"wrote {s1 / 'speaker'} ({len(gallery.ids)} actor keys)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
