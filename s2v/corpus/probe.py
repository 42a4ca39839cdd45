"""`python -m s2v.corpus probe`: is the learning problem real? Linear probes on simple audio features.

Utterance features: mean and standard deviation over time of 40 log-mel bands, plus loudness and
duration. A ridge classifier trained on 70% of the seen actors' clips is tested on the rest
(speaker: which seen actor; emotion: which of the six) and on unseen actors (sex, age group, from
a probe trained on the seen actors). Chance levels are printed beside each figure. If speaker or
emotion were trivial (≈1.0 from a linear probe on crude features) or hopeless (≈ chance), the
corpus would not test what the paper's stage 1 has to learn.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..audio import SAMPLE_RATE, load_audio
from ..linear import ridge_probe, ridge_r2, ridge_regress


def utterance_features(audio: np.ndarray) -> np.ndarray:
    import torchaudio

    mel = torchaudio.transforms.MelSpectrogram(SAMPLE_RATE, n_fft=512, hop_length=160, n_mels=40)
    x = torch.from_numpy(audio)
    m = torch.log(mel(x) + 1e-5)  # (40, frames)
    energy = m.exp().sum(0)
    voiced = m[:, energy > energy.max() * 1e-3]
    return np.concatenate([voiced.mean(1).numpy(), voiced.std(1).numpy(),
                           [float(np.log(np.mean(audio ** 2) + 1e-9)), audio.size / SAMPLE_RATE]])


FACE_TRAITS = ("face_w", "face_h", "jaw", "nose_w")  # face parameters (actors.json) a body's size shifts


def cpc_features(cpc) -> callable:
    """audio -> the mean and SD over time of a CPC's context c_t and encoding z_t: what the students read."""
    @torch.no_grad()
    def features(audio: np.ndarray) -> np.ndarray:
        c, z = cpc(torch.from_numpy(audio)[None])
        return torch.cat([c[0].mean(0), c[0].std(0), z[0].mean(0), z[0].std(0)]).numpy()
    return features


def probe(corpus: str | Path, progress: bool = True, judge: str | Path | None = None,
          speaker: str | Path | None = None, cpc: str | Path | None = None) -> dict:
    """`speaker`: a saved `s2v.speaker.SpeakerEncoder`, or `cpc`: a saved `s2v.cpc.CPC`, whose embeddings
    (`cpc_features`) replace `utterance_features`."""
    from tqdm.auto import tqdm

    features, name = utterance_features, "log-mel statistics"
    if speaker is not None and cpc is not None:
        raise ValueError("probe one of speaker= and cpc= at a time")
    if speaker is not None:
        from ..speaker import SpeakerEncoder

        features, name = SpeakerEncoder.from_pretrained(speaker).eval().embed, "speaker encoder"
    if cpc is not None:
        from ..cpc import CPC

        features, name = cpc_features(CPC.from_pretrained(cpc).eval()), "CPC statistics"
    corpus = Path(corpus)
    actors = actors_of(corpus)
    rows = []
    for wav in tqdm(sorted((corpus / "AudioWAV").glob("*.wav")), desc="features", disable=not progress):
        actor, _, emotion, _ = wav.stem.split("_")
        rows.append((features(load_audio(wav)), actor, emotion))
    x = np.stack([r[0] for r in rows])
    actor = np.array([r[1] for r in rows])
    emo = np.array([r[2] for r in rows])
    seen = np.array([actors[a]["split"] == "seen" for a in actor])
    rng = np.random.default_rng(0)
    train = seen & (rng.random(len(rows)) < 0.7)
    test = seen & ~train
    unseen = ~seen
    sex = np.array([actors[a]["sex"] for a in actor])
    age = np.array([actors[a]["age_group"] for a in actor])
    accent = np.array([actors[a]["voice"]["language"] for a in actor])
    acc = lambda pred, y: round(float(np.mean(pred == y)), 3)
    out = {
        "features": name,
        "clips": len(rows),
        "speaker_top1_seen_test": acc(ridge_probe(x[train], actor[train], x[test]), actor[test]),
        "speaker_chance": round(1 / len(set(actor[seen])), 3),
        "emotion_seen_test": acc(ridge_probe(x[train], emo[train], x[test]), emo[test]),
        "emotion_unseen": acc(ridge_probe(x[train], emo[train], x[unseen]), emo[unseen]) if unseen.any() else None,
        "emotion_chance": round(1 / len(set(emo)), 3),
    }
    if unseen.any():
        out["sex_unseen"] = acc(ridge_probe(x[seen], sex[seen], x[unseen]), sex[unseen])
        out["age_group_unseen"] = acc(ridge_probe(x[seen], age[seen], x[unseen]), age[unseen])
        out["accent_unseen"] = acc(ridge_probe(x[seen], accent[seen], x[unseen]), accent[unseen])
        out["accent_chance"] = round(1 / len(set(accent[seen])), 3)
        out.update(face_traits(x, actor, seen, actors))
        if judge is not None:
            out.update(face_embedding(x, actor, seen, corpus, judge, actors))
    return out


def face_traits(x: np.ndarray, actor: np.ndarray, seen: np.ndarray, actors: dict) -> dict:
    """R² on unseen actors' clips of ridge regressions from voice features to each face trait (and to
    age and build), fitted on the seen actors' clips: how much of the face a voice can tell."""
    unseen = ~seen
    traits = {"age": [actors[a]["age"] for a in actor], "build": [actors[a].get("build", 0.0) for a in actor]}
    traits.update({k: [actors[a]["face"][k] for a in actor] for k in FACE_TRAITS})
    out = {}
    for k, v in traits.items():
        y = np.asarray(v, np.float64)
        if y[seen].std() > 0:
            out[f"r2_{k}_unseen"] = round(ridge_r2(x[seen], y[seen], x[unseen], y[unseen], lam=10.0), 3)
    return out


def face_embedding(x: np.ndarray, actor: np.ndarray, seen: np.ndarray, corpus: Path, judge, actors: dict) -> dict:
    """How much of the face embedding (an identity network's, of each actor's still) a voice predicts:
    R² of a ridge regression from voice features to the still's embedding on unseen actors' clips, and the
    open-set scores of the predicted embedding among the unseen actors' stills (`s2v.openset`): the
    reach of a linear voice→face map on crude features, to read the generator's figures against."""
    import cv2

    from ..attributes import embed_images, load_identity_judge
    from ..openset import match_scores

    ids = sorted(set(actor))
    stills = np.stack([cv2.imread(str(corpus / "Stills" / f"{a}.png"))[..., ::-1] for a in ids])
    emb = embed_images(load_identity_judge(judge), stills, "cpu")  # the network resizes to its own input
    row = {a: k for k, a in enumerate(ids)}
    y = emb[[row[a] for a in actor]]
    unseen = ~seen
    r2 = ridge_r2(x[seen], y[seen], x[unseen], y[unseen], lam=10.0)
    pred = ridge_regress(x[seen], y[seen], x[unseen], lam=10.0)
    cand = sorted(set(actor[unseen]))
    scores = match_scores(pred, np.array([cand.index(a) for a in actor[unseen]]), emb[[row[a] for a in cand]])
    out = {"r2_face_embedding_unseen": round(r2, 3),
           **{f"embedding_{k}_unseen": round(v, 3) if isinstance(v, float) else v for k, v in scores.items()}}
    out.update(trait_oracle(emb, ids, actors))
    return out


def actors_of(corpus: Path) -> dict:
    """id -> the actor's entry in the corpus' actors.json (split, sex, age, voice, face, ...)."""
    return {str(a["id"]): a for a in json.loads((Path(corpus) / "actors.json").read_text())["actors"]}


def trait_oracle(emb: np.ndarray, ids: list[str], actors: dict) -> dict:
    """1:2 matching among the unseen actors' stills (by the judge's embedding `emb`, rows in `ids` order) of a
    voice→face map that knows the speaker's sex (or sex and age group; on corpora with regions, traits 3, also
    sex and accent, and all three) *exactly* and draws the mean embedding of the seen actors who share them:
    what those traits alone are worth, the ceiling of any voice that tells nothing else, to read the open-set
    figures against."""
    from ..openset import match_scores

    seen = np.array([actors[a]["split"] == "seen" for a in ids])
    unseen = [k for k, a in enumerate(ids) if not seen[k]]
    out = {}
    traits = [("sex", lambda a: a["sex"]), ("sex_age_group", lambda a: (a["sex"], a["age_group"]))]
    if any(actors[a].get("region", -1) >= 0 for a in ids):
        traits += [("sex_accent", lambda a: (a["sex"], a["voice"]["language"])),
                   ("sex_age_group_accent", lambda a: (a["sex"], a["age_group"], a["voice"]["language"]))]
    for name, key in traits:
        keys = [key(actors[a]) for a in ids]
        pred = []
        for k in unseen:
            same = seen & np.array([x == keys[k] for x in keys])
            pred.append(emb[same].mean(0) if same.any() else emb[seen].mean(0))
        out[f"oracle_{name}_match_1to2_unseen"] = round(
            match_scores(np.stack(pred), np.arange(len(unseen)), emb[unseen])["match_1to2"], 3)
    return out
