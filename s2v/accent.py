"""Which accent a voice speaks (and, if asked, its sex and age group), read from the CPC's c_t: an input of S_id
beyond the paper.

On the many-identity corpus (`s2v.corpus make --traits 3`) where an actor grew up sets its accent and shifts the
odds of its colouring, as ancestry and place go together in real populations. The identity student needs that
accent from one clip, and c_t's mean and SD hold it badly: a ridge probe reads it for 0.68-0.75 of unseen
actors' clips, so the student's ν lands on the wrong colouring. Accent is a phonetic property (which vowel a
word gets, a flap, a dropped /h/), spread over a few phones of a sentence, so this head reads the frame sequence:
a small TDNN (x-vector style: dilated Conv1d over c_t normalised per clip, then the mean and SD over time) that
ends in one logit per accent (`traits`: also one per sex and per age group, each trait its own softmax).

It learns from a *voice pool*: actors drawn like the corpus' own (another seed, so none of them is a corpus
actor) who only speak — audio needs no face, and a few thousand voices cost minutes — each labelled with its
accent, as a real accent-identification set is labelled with where its speakers grew up (Common Voice's
speakers give their accent, sex and age). With the head in `Students` (`StudentsConfig.accents`) ω gains the
head's posteriors and the closed-form S_id maps them too.

    python -m s2v.accent --cpc checkpoints/default/stage1/cpc --out runs/accent          # 1,000 voices
    python -m s2v.accent --cpc ... --out ... --corpus data/crema-t3     # also: accuracy on a corpus' actors
    python -m s2v.accent --cpc ... --out ... --traits accent,sex,age_group
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .corpus.actors import ACCENTS
from .labels import AGE_GROUPS
from .modeling import Pretrained

POOL_SEED = 101  # the voice pool's actors: a seed that no documented corpus or face pool uses


TRAITS = ("accent", "sex", "age_group")
SEXES = ("Female", "Male")


@dataclass(frozen=True)
class AccentConfig:
    in_dim: int = 256  # c_t size
    hidden: int = 128
    accents: tuple[str, ...] = ACCENTS
    traits: tuple[str, ...] = ("accent",)  # what the head names, each with a softmax of its own (TRAITS)

    def __post_init__(self):
        if not self.traits or any(t not in TRAITS for t in self.traits):
            raise ValueError(f"traits must be some of {TRAITS}, got {self.traits}")

    def classes(self, trait: str) -> tuple[str, ...]:
        return {"accent": self.accents, "sex": SEXES, "age_group": AGE_GROUPS}[trait]

    @property
    def outputs(self) -> int:
        """Logits (and posteriors) in all: one per class of each trait."""
        return sum(len(self.classes(t)) for t in self.traits)


def trait_labels(actor: dict, config: AccentConfig) -> tuple[int, ...]:
    """An actor's class index for each of the head's traits, from its actors.json entry (`Actor.to_json`)."""
    value = {"accent": actor["voice"]["language"], "sex": actor["sex"], "age_group": actor["age_group"]}
    return tuple(config.classes(t).index(value[t]) for t in config.traits)


def _masked_stats(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and SD over time of x (B, C, T) where mask (B, 1, T) is 1."""
    from .students import masked_stats

    return masked_stats(x, mask, 2, min_var=1e-8)


class AccentHead(Pretrained):
    """`forward(c, lengths)` -> (B, outputs) logits from c (B, T, in_dim), the traits' one after another;
    `posteriors` each trait's softmax, side by side."""

    config_class = AccentConfig
    model_type = "s2v-accent"

    def __init__(self, config: AccentConfig = AccentConfig()):
        super().__init__()
        self.config = config
        h = config.hidden

        def layer(i: int, o: int, k: int, d: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv1d(i, o, k, dilation=d, padding=d * (k - 1) // 2), nn.ReLU(), nn.BatchNorm1d(o))

        self.frames = nn.Sequential(layer(config.in_dim, h, 5, 1), layer(h, h, 3, 2), layer(h, h, 3, 3),
                                    layer(h, h, 1, 1), layer(h, 2 * h, 1, 1))
        self.out = nn.Sequential(nn.Linear(4 * h, h), nn.ReLU(), nn.BatchNorm1d(h), nn.Linear(h, config.outputs))

    def forward(self, c: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        b, t, _ = c.shape
        lengths = torch.full((b,), t, device=c.device) if lengths is None else lengths.to(c.device).clamp(1, t)
        mask = (torch.arange(t, device=c.device)[None] < lengths[:, None]).to(c.dtype)[:, None]
        x = c.transpose(1, 2)
        mean, sd = _masked_stats(x, mask)
        x = (x - mean[..., None]) / (sd[..., None] + 1e-3) * mask  # per clip: the speaker's colour and level off
        for layer in self.frames:  # padding stays zero, as a clip alone sees it past its end
            x = layer(x) * mask
        return self.out(torch.cat(_masked_stats(x, mask), 1))

    def split(self, logits: torch.Tensor) -> list[torch.Tensor]:
        """The logits of each trait, in `traits` order."""
        return list(logits.split([len(self.config.classes(t)) for t in self.config.traits], -1))

    def posteriors(self, c: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return torch.cat([F.softmax(x.float(), -1) for x in self.split(self(c, lengths))], -1)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Cross-entropy (label smoothing 0.1) summed over the traits; labels (B, len(traits))."""
        return sum(F.cross_entropy(x, labels[:, k], label_smoothing=0.1) for k, x in enumerate(self.split(logits)))


def _speech(spec):
    from .corpus.make import synth_speech

    return synth_speech(spec)[0]


def voice_pool(voices: int, seed: int = POOL_SEED, per_actor: int = 8, workers: int = 2, progress: bool = True):
    """Audio-only actors drawn as the many-identity corpus draws them (traits 3), `per_actor` clips each (the
    emotions taking turns, as in the corpus): a list of (audio, the actor's actors.json entry), one per clip."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    from tqdm.auto import tqdm

    from .corpus.actors import SENTENCES, make_actors
    from .corpus.make import clip_specs
    from .labels import EMOTIONS

    actors = make_actors(voices, 0, seed, traits=3)
    entry = {a.id: a.to_json() for a in actors}
    specs = clip_specs(actors, list(SENTENCES), list(EMOTIONS), seed, per_actor)

    def rows(done):
        return [(audio, entry[spec.actor.id]) for spec, audio in
                tqdm(zip(specs, done), total=len(specs), desc="voice pool", unit="clip", disable=not progress)]

    if workers <= 1:
        return rows(map(_speech, specs))
    # spawn: a forked child inherits torch's thread pool in whatever state it was and can hang in it
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        return rows(pool.map(_speech, specs, chunksize=16))


@torch.no_grad()
def encode(cpc, audio: np.ndarray, device="cpu", max_seconds: float = 6.0) -> torch.Tensor:
    """(T, H) float16 c_t of one clip (its first `max_seconds`, as stage 1 reads it)."""
    from .audio import SAMPLE_RATE

    x = torch.from_numpy(np.asarray(audio, np.float32)[: int(max_seconds * SAMPLE_RATE)])[None].to(device)
    return cpc(x)[0][0].to(torch.float16).cpu()


def _batch(cs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(c) for c in cs])
    out = torch.zeros(len(cs), int(lengths.max()), cs[0].shape[1])
    for j, c in enumerate(cs):
        out[j, : len(c)] = c.float()
    return out, lengths


@torch.no_grad()
def predict(head: AccentHead, cs: list[torch.Tensor], device="cpu", batch: int = 128) -> np.ndarray:
    """(N, outputs) posteriors of clips given as c_t sequences."""
    head.eval()
    out = []
    for s in range(0, len(cs), batch):
        c, lengths = _batch(cs[s:s + batch])
        out.append(head.posteriors(c.to(device), lengths.to(device)).cpu())
    return torch.cat(out).numpy()


def accuracy(head: AccentHead, posteriors: np.ndarray, labels: np.ndarray) -> dict:
    """{trait: share of clips whose top class is right} from `predict`'s posteriors and labels (N, traits)."""
    parts = head.split(torch.from_numpy(posteriors))
    return {t: round(float(np.mean(x.argmax(1).numpy() == labels[:, k])), 4)
            for k, (t, x) in enumerate(zip(head.config.traits, parts))}


def train_head(cs: list[torch.Tensor], labels: np.ndarray, config: AccentConfig, epochs: int = 4,
               batch_size: int = 64, lr: float = 2e-3, seed: int = 0, device="cpu", progress: bool = True,
               on_epoch=None) -> AccentHead:
    """Train an AccentHead on clips (c_t sequences) and their class indices (N, len(traits)), or (N,) for one
    trait: AdamW, one-cycle schedule, `AccentHead.loss`. `on_epoch(epoch, head)` is called after each epoch."""
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    head = AccentHead(config).to(device)
    y = torch.as_tensor(np.asarray(labels).reshape(len(cs), -1), dtype=torch.long)
    per_epoch = max(len(cs) // batch_size, 1)
    opt = torch.optim.AdamW(head.parameters(), lr, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=epochs * per_epoch)
    bar = tqdm(total=epochs * per_epoch, desc="accent head", disable=not progress)
    for epoch in range(epochs):
        head.train()
        order = rng.permutation(len(cs))
        for s in range(per_epoch):
            idx = order[s * batch_size:(s + 1) * batch_size]
            c, lengths = _batch([cs[i] for i in idx])
            loss = head.loss(head(c.to(device), lengths.to(device)), y[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update()
            bar.set_postfix(loss=f"{loss.item():.3f}")
        if on_epoch is not None:
            on_epoch(epoch, head)
    bar.close()
    return head.eval()


def corpus_accuracy(head: AccentHead, cpc, corpus: str | Path, device="cpu", progress: bool = True) -> dict:
    """Each trait's accuracy on a corpus' clips (AudioWAV and actors.json), per split, with chance (the commonest
    class's share)."""
    from tqdm.auto import tqdm

    from .audio import load_audio
    from .corpus.probe import actors_of

    actors = actors_of(Path(corpus))
    wavs = sorted((Path(corpus) / "AudioWAV").glob("*.wav"))
    cs = [encode(cpc, load_audio(w), device) for w in tqdm(wavs, desc="corpus c_t", disable=not progress)]
    who = [actors[w.stem.split("_")[0]] for w in wavs]
    post = predict(head, cs, device)
    truth = np.array([trait_labels(a, head.config) for a in who])
    split = np.array([a["split"] for a in who])
    out = {}
    for s in ("seen", "unseen"):
        if (split == s).any():
            out.update({f"{t}_{s}": v for t, v in accuracy(head, post[split == s], truth[split == s]).items()})
    for k, t in enumerate(head.config.traits):
        out[f"{t}_chance"] = round(float(np.bincount(truth[:, k]).max() / len(truth)), 4)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cpc", required=True, help="the CPC folder whose c_t the head reads (stage 1's)")
    p.add_argument("--out", required=True, help="where the head is written (config.json, model.safetensors)")
    p.add_argument("--traits", default="accent", help=f"what the head names, comma-separated, of {','.join(TRAITS)}")
    p.add_argument("--voices", type=int, default=1000, help="actors in the voice pool (10 %% held out)")
    p.add_argument("--clips-per-voice", type=int, default=8)
    p.add_argument("--seed", type=int, default=POOL_SEED, help="the voice pool's seed (not a corpus')")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--hidden", type=int, default=AccentConfig.hidden)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--corpus", default=None, help="also report accuracy on this corpus' actors (a corpus folder)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--workers", type=int, default=2, help="processes that synthesise the voice pool")
    a = p.parse_args(argv)
    if a.voices < 10:
        raise SystemExit("--voices must be at least 10 (a tenth is held out)")
    try:
        config = AccentConfig(hidden=a.hidden, traits=tuple(t.strip() for t in a.traits.split(",") if t.strip()))
    except ValueError as e:
        raise SystemExit(f"--traits: {e}")

    from tqdm.auto import tqdm

    from .cpc import CPC

    t0 = time.time()
    cpc = CPC.from_pretrained(a.cpc).eval().to(a.device)
    config = replace(config, in_dim=cpc.dim)
    pool = voice_pool(a.voices, a.seed, a.clips_per_voice, a.workers)  # synthesis first, then the CPC alone
    cs = [encode(cpc, audio, a.device) for audio, _ in tqdm(pool, desc="voice pool c_t", unit="clip")]
    labels = np.array([trait_labels(actor, config) for _, actor in pool])
    actor = np.array([actor["id"] for _, actor in pool])
    del pool
    held = np.isin(actor, np.unique(actor)[:: 10])  # every tenth voice, whole
    tr, te = np.flatnonzero(~held), np.flatnonzero(held)
    val = {}

    def on_epoch(epoch: int, head: AccentHead) -> None:
        acc = accuracy(head, predict(head, [cs[i] for i in te], a.device), labels[te])
        val.update({f"{t}_heldout_voices": v for t, v in acc.items()})
        print(f"epoch {epoch + 1}: held-out voices: {acc}", flush=True)

    head = train_head([cs[i] for i in tr], labels[tr], config, a.epochs, a.batch_size, device=a.device,
                      on_epoch=on_epoch)
    metrics = {"voices": a.voices, "clips": len(cs), "seed": a.seed, "traits": list(config.traits), **val,
               **{f"{t}_chance": round(float(np.bincount(labels[:, k]).max() / len(labels)), 4)
                  for k, t in enumerate(config.traits)}}
    if a.corpus:
        metrics.update({f"corpus_{k}": v for k, v in corpus_accuracy(head, cpc, a.corpus, a.device).items()})
    metrics["seconds"] = round(time.time() - t0, 1)
    head.cpu().save_pretrained(a.out, extra={"cpc": str(a.cpc), **metrics}, card=(
        "# s2v accent head\n\nA TDNN over the CPC's c_t (normalised per clip; mean and SD over time) that names "
        f"a voice's {', '.join(config.traits)} ({len(ACCENTS)} eSpeak NG accents); trained on a pool of {a.voices} "
        f"synthetic voices (seed {a.seed}, audio only) through the CPC in `{a.cpc}`.\n\n"
        f"```\n{json.dumps(metrics, indent=1)}\n```\n"))
    (Path(a.out) / "metrics.json").write_text(json.dumps(metrics, indent=1))
    print(json.dumps(metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
