"""Stage-1 features of a prepared dataset, computed once for stage 2 and the evaluation:
every clip's CPC context sequence c (100 Hz) and the students' ν and μ from the clip's audio.

    cache = AudioFeatures.build(prep, stage1_dir, out_dir)   # or AudioFeatures.load(out_dir)
    cache.window(i, t, fps, context)  -> (2*context+1, H) c around video frame t of clip i

`AugmentedFeatures` adds c of degraded copies of every clip (train/stage2.py --augment): the generator then
learns its mouth from speech heard through a room, noise, a phone line or a codec, judged against the clean
clip's frames.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

from .audio import SAMPLE_RATE
from .cpc import CPC
from .data import Prepared
from .modeling import fingerprint
from .generator import context_windows
from .students import Students


STAGE1_PARTS = ("cpc", "students")  # what the features depend on


class AudioFeatures:
    def __init__(self, c: np.ndarray, offsets: np.ndarray, nu: np.ndarray, mu: np.ndarray):
        self.c, self.offsets, self.nu, self.mu = c, offsets, nu, mu

    def sequence(self, i: int) -> np.ndarray:
        """(T_cpc, H) c of clip i."""
        return self.c[self.offsets[i]:self.offsets[i + 1]]

    def window(self, i: int, t: int, fps: int, context: int) -> np.ndarray:
        """(2*context+1, H) float32 c around the CPC frame of video frame t (edges repeated)."""
        seq = torch.from_numpy(np.asarray(self.sequence(i), dtype=np.float32))
        return context_windows(seq, t + 1, fps, context)[t].numpy()

    @staticmethod
    @torch.no_grad()
    def compute(cpc: CPC, students: Students, audio: np.ndarray, device="cpu") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(c (T, H), ν (D,), μ (6,)) of one clip's audio."""
        x = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))[None].to(device)
        c, _ = cpc(x)
        nu, mu = students.infer(c, x)
        return c[0].float().cpu().numpy(), nu[0].float().cpu().numpy(), mu[0].float().cpu().numpy()

    def pick(self) -> "AudioFeatures":
        """The features a training item reads its c from (here always these; see `AugmentedFeatures`)."""
        return self

    def stats(self, ids) -> tuple[np.ndarray, np.ndarray]:
        """Per-dimension mean and SD of c over every CPC frame of clips `ids` (the training voices')."""
        x = np.concatenate([np.asarray(self.sequence(i), np.float32) for i in ids])
        return x.mean(0), x.std(0)

    def normalised(self, generator) -> "AudioFeatures":
        """These features with every clip's c as `generator` reads it (`Generator.heard`: with c_norm, moved to the
        training voices' statistics), held in memory; ν and μ unchanged."""
        seqs = [generator.heard(torch.from_numpy(np.asarray(self.sequence(i), np.float32))).numpy()
                for i in range(len(self.offsets) - 1)]
        return AudioFeatures(np.concatenate(seqs).astype(self.c.dtype), self.offsets, self.nu, self.mu)

    @classmethod
    def build(cls, prep: str | os.PathLike, stage1: str | os.PathLike, out: str | os.PathLike,
              device: str = "cpu", progress: bool = True, transform=None, made_by: dict | None = None
              ) -> "AudioFeatures":
        """Compute (or load, when `out` holds them for this stage 1 and corpus) every clip's features.
        `transform(audio, i)`, if given, changes clip i's audio first (a degraded copy); `made_by` describes it
        (kept in features.json: a cache made otherwise is rebuilt)."""
        from tqdm.auto import tqdm

        out = Path(out)
        revision = fingerprint(stage1, STAGE1_PARTS)
        data = Prepared(prep)
        if (out / "features.json").exists():
            made = json.loads((out / "features.json").read_text())
            if (made.get("stage1_revision") == revision and made.get("clips") == len(data.clips)
                    and made.get("made_by") == made_by):
                return cls.load(out)
            how = "" if made.get("made_by") == made_by else f", {made.get('made_by')} not {made_by}"
            print(f"note: {out} was made from stage 1 {made.get('stage1_revision')} ({made.get('stage1')}) on "
                  f"{made.get('clips')} clips{how}, not {revision} ({stage1}); rebuilding it", file=sys.stderr)
        cpc = CPC.from_pretrained(Path(stage1) / "cpc").to(device).eval()
        students = Students.from_pretrained(Path(stage1) / "students").to(device).eval()
        seqs, nus, mus = [], [], []
        desc = "stage-1 features" + (f" ({made_by['name']})" if made_by and "name" in made_by else "")
        for i in tqdm(range(len(data.clips)), desc=desc, disable=not progress):
            audio = data.audio(i) if transform is None else transform(data.audio(i), i)
            c, nu, mu = cls.compute(cpc, students, audio, device)
            seqs.append(c.astype(np.float16))
            nus.append(nu)
            mus.append(mu)
        offsets = np.concatenate([[0], np.cumsum([len(s) for s in seqs])]).astype(np.int64)
        out.mkdir(parents=True, exist_ok=True)
        np.save(out / "c.npy", np.concatenate(seqs))
        np.save(out / "offsets.npy", offsets)
        np.save(out / "nu.npy", np.stack(nus))
        np.save(out / "mu.npy", np.stack(mus))
        (out / "features.json").write_text(json.dumps({"prep": str(prep), "stage1": str(stage1),
                                                       "stage1_revision": revision,
                                                       "clips": len(seqs), "sample_rate": SAMPLE_RATE,
                                                       "made_by": made_by}))
        return cls.load(out)

    @classmethod
    def load(cls, out: str | os.PathLike) -> "AudioFeatures":
        out = Path(out)
        return cls(np.load(out / "c.npy", mmap_mode="r"), np.load(out / "offsets.npy"), np.load(out / "nu.npy"),
                   np.load(out / "mu.npy"))


class AugmentedFeatures:
    """A corpus's clean features and those of degraded copies of its audio, for stage 2's training items:
    ν and μ are the clean clips' (what the students make of the voice is not what is trained here); each item
    reads its c from one of the clean and degraded versions, drawn at random (`pick`)."""

    def __init__(self, clean: AudioFeatures, copies: list[AudioFeatures]):
        self.clean, self.copies = clean, list(copies)
        self.c, self.offsets, self.nu, self.mu = clean.c, clean.offsets, clean.nu, clean.mu

    def sequence(self, i: int) -> np.ndarray:
        return self.clean.sequence(i)

    def window(self, i: int, t: int, fps: int, context: int) -> np.ndarray:
        return self.clean.window(i, t, fps, context)

    def pick(self) -> AudioFeatures:
        k = np.random.randint(len(self.copies) + 1)
        return self.clean if k == 0 else self.copies[k - 1]

    def stats(self, ids) -> tuple[np.ndarray, np.ndarray]:
        return self.clean.stats(ids)

    def normalised(self, generator) -> "AugmentedFeatures":
        return AugmentedFeatures(self.clean.normalised(generator), [f.normalised(generator) for f in self.copies])

    @classmethod
    def build(cls, prep: str | os.PathLike, stage1: str | os.PathLike, out: str | os.PathLike, p: float,
              copies: int, seed: int = 0, device: str = "cpu", progress: bool = True,
              semitones: float = 0.0) -> "AugmentedFeatures":
        """Clean features in `out`, and `copies` degraded ones in out/augment-k: clip i's audio through
        `s2v.degrade.augment(audio, rng, p, semitones=semitones)` with rng seeded by (seed, k, i), so a rebuild
        makes the same copies."""
        from .degrade import augment

        clean = AudioFeatures.build(prep, stage1, out, device, progress)
        made = []
        for k in range(copies):
            def transform(audio, i, k=k):
                return augment(audio, np.random.default_rng([seed, k, i]), p, semitones=semitones)

            made.append(AudioFeatures.build(prep, stage1, Path(out) / f"augment-{k}", device, progress, transform,
                                            {"name": f"augment {k + 1}/{copies}", "augment": p, "seed": seed,
                                             "copy": k, **({"semitones": semitones} if semitones else {})}))
        return cls(clean, made)

    @classmethod
    def load(cls, out: str | os.PathLike, copies: int) -> "AugmentedFeatures":
        return cls(AudioFeatures.load(out), [AudioFeatures.load(Path(out) / f"augment-{k}") for k in range(copies)])
