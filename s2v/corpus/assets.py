"""`python -m s2v.corpus assets`: example voices and stills for the app, picked from a prepared corpus.

assets/voices/seen/*.wav are test clips of seen actors (training speakers, sentences the model heard
them say in other takes), assets/voices/unseen/*.wav clips of held-out actors; assets/stills/ holds
each example speaker's real still, so the app can show what the speaker actually looks like. File
names say who speaks: ACTOR_sex_agegroup_EMOTION.wav. The pick is seeded and spreads over sexes and
emotions.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from ..labels import EMOTION_NAMES


def _pick(clips: list[dict], actors: dict, n: int, rng) -> list[dict]:
    """n clips of n different actors, alternating sex, each with a different emotion where possible."""
    by_actor: dict[str, list[dict]] = {}
    for c in clips:
        by_actor.setdefault(c["actor"], []).append(c)
    names = sorted(by_actor)
    rng.shuffle(names)
    names.sort(key=lambda a: actors[a].get("sex", ""))  # stable: shuffled within each sex
    sexes = sorted({actors[a].get("sex", "") for a in names})
    order = [a for group in zip(*[[a for a in names if actors[a].get("sex", "") == s] for s in sexes]) for a in group]
    order += [a for a in names if a not in order]
    out, used = [], set()
    for a in order[:n]:
        options = [c for c in by_actor[a] if c["emotion"] not in used] or by_actor[a]
        c = options[rng.integers(len(options))]
        used.add(c["emotion"])
        out.append(c)
    return out


def make_assets(prep: str | Path, corpus: str | Path, out: str | Path = "assets", seen: int = 3, unseen: int = 3,
                seed: int = 0) -> dict:
    prep, corpus, out = Path(prep), Path(corpus), Path(out)
    index = json.loads((prep / "index.json").read_text())
    actors = index["actors"]
    rng = np.random.default_rng(seed)
    written = {}
    for kind, split, n in (("seen", "test", seen), ("unseen", "unseen", unseen)):
        d = out / "voices" / kind
        if d.is_dir():
            shutil.rmtree(d)
        d.mkdir(parents=True)
        clips = [c for c in index["clips"] if c["split"] == split]
        if not clips:
            raise ValueError(f"{prep} has no {split} clips to take {kind} examples from")
        written[kind] = []
        for c in _pick(clips, actors, n, rng):
            src = corpus / "AudioWAV" / f"{c['id']}.wav"
            if not src.exists():
                raise FileNotFoundError(f"{src} not found: is {corpus} the corpus {prep} was prepared from?")
            info = actors[c["actor"]]
            name = f"{c['actor']}_{info.get('sex', '').lower()}_{info.get('age_group', '')}_" \
                   f"{EMOTION_NAMES.get(c['emotion'], c['emotion'])}.wav"
            shutil.copyfile(src, d / name)
            still = corpus / "Stills" / f"{c['actor']}.png"
            if still.exists():
                (out / "stills").mkdir(parents=True, exist_ok=True)
                shutil.copyfile(still, out / "stills" / f"{c['actor']}.png")
            written[kind].append(name)
    return written
