"""The accent head (s2v.accent) and ω with its posteriors (StudentsConfig.accents)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from s2v.accent import AccentConfig, AccentHead, accuracy, predict, train_head, trait_labels, voice_pool
from s2v.corpus.actors import ACCENTS, make_actors
from s2v.students import Students, StudentsConfig

ROOT = Path(__file__).resolve().parents[1]


def _clips(n: int, accents: int, rng: np.random.Generator, dim: int = 8) -> tuple[list[torch.Tensor], np.ndarray]:
    """Clips whose accent is *when* a pattern comes, not how loud or bright a clip is: each clip is noise with its
    own offset and scale per channel (a speaker's colour, which the head's per-clip normalisation takes off), and
    at a few random places channel 0 then channel 1 (accent 0: a step apart, accent 1: three steps, ...). A second
    label (n, 2)[:, 1] is whether channel 2 echoes channel 0's spikes."""
    cs, labels = [], np.stack([rng.integers(accents, size=n), rng.integers(2, size=n)], 1)
    for y, echo in labels:
        t = int(rng.integers(60, 100))
        c = rng.normal(0, 0.3, (t, dim))
        for s in rng.choice(t - 10, 4, replace=False):
            c[s, 0] += 3.0
            c[s, 2] += 3.0 * echo
            c[s + 1 + 2 * int(y), 1] += 3.0
        cs.append(torch.from_numpy((c * rng.uniform(0.5, 2, dim) + rng.normal(0, 2, dim)).astype(np.float32)))
    return cs, labels


def test_accent_head_learns_a_temporal_pattern_and_ignores_padding():
    rng = np.random.default_rng(0)
    cfg = AccentConfig(in_dim=8, hidden=16, accents=("a", "b", "c"))
    cs, labels = _clips(300, 3, rng)
    y = labels[:, 0]
    head = train_head(cs, y, cfg, epochs=12, batch_size=32, lr=5e-3, progress=False)
    test, tl = _clips(90, 3, rng)
    ty = tl[:, 0]
    p = predict(head, test)
    assert p.shape == (90, 3) and np.allclose(p.sum(1), 1, atol=1e-5)
    assert (p.argmax(1) == ty).mean() > 0.9  # three classes: chance 1/3
    # a clip's posteriors do not depend on the longer clips it is batched with
    alone = np.concatenate([predict(head, [c]) for c in test[:8]])
    assert np.allclose(alone, p[:8], atol=1e-4)
    # a head that saw no structure does not find it: labels shuffled -> near chance on the test clips
    noise = train_head(cs, rng.permutation(y), cfg, epochs=12, batch_size=32, lr=5e-3, progress=False)
    assert (predict(noise, test).argmax(1) == ty).mean() < 0.6
    # two traits, each its own softmax: both learnt, and the posteriors of each sum to one
    both = AccentConfig(in_dim=8, hidden=16, accents=("a", "b", "c"), traits=("accent", "sex"))
    assert both.outputs == 5
    two = train_head(cs, labels, both, epochs=12, batch_size=32, lr=5e-3, progress=False)
    p2 = predict(two, test)
    assert p2.shape == (90, 5) and np.allclose(p2[:, :3].sum(1), 1, atol=1e-5) and np.allclose(p2[:, 3:].sum(1), 1, atol=1e-5)
    acc = accuracy(two, p2, tl)
    assert set(acc) == {"accent", "sex"} and min(acc.values()) > 0.9
    with pytest.raises(ValueError):
        AccentConfig(traits=("accent", "height"))


def test_voice_pool_labels_each_clip_with_its_actors_accent():
    pool = voice_pool(3, seed=7, per_actor=2, workers=1, progress=False)
    actors = {a.id: a for a in make_actors(3, 0, 7, traits=3)}
    assert len(pool) == 6 and {p[1]["id"] for p in pool} == set(actors)
    cfg = AccentConfig(traits=("accent", "sex", "age_group"))
    for audio, entry in pool:
        assert audio.ndim == 1 and audio.size > 16000 * 0.5 and np.abs(audio).max() > 0.01
        a = actors[entry["id"]]
        accent, sex, age = trait_labels(entry, cfg)
        assert (ACCENTS[accent], ("Female", "Male")[sex], ("young", "middle", "older")[age]) == (
            a.voice.language, a.sex, a.age_group)


def test_students_omega_holds_the_accent_posteriors(tmp_path):
    cfg = StudentsConfig(in_dim=8, id_dim=4, pool="stats", id_head="linear", accents=("a", "b", "c"),
                         accent_hidden=16)
    assert StudentsConfig(in_dim=8, accents=("a", "b"), accent_traits=("accent", "sex", "age_group")).omega_dim == 8 + 7
    st = Students(cfg)
    assert cfg.omega_dim == 2 * 8 + 3 and st.s_id.in_features == 19
    c, lengths = torch.randn(2, 30, 8), torch.tensor([30, 12])
    w = st.omega(c, lengths)
    assert w.shape == (2, 19) and torch.allclose(w[:, 16:].sum(1), torch.ones(2), atol=1e-5)
    assert torch.allclose(w[1], st.omega(c[1:, :12])[0], atol=1e-5)  # padding is not read
    st.train()
    assert not st.accent.training and not any(q.requires_grad for q in st.accent.parameters())
    st.save_pretrained(tmp_path / "st")
    back = Students.from_pretrained(tmp_path / "st").eval()
    assert back.config.accents == ("a", "b", "c") and torch.allclose(back.omega(c, lengths), st.eval().omega(c, lengths))


def test_stage1_with_an_accent_head(tiny_prep, tmp_path):
    """The CLI trains a head on a (tiny) voice pool through the stage-1 CPC; stage 1 --accent carries it into the
    students, frozen, and fits S_id on ω with its posteriors."""
    import importlib
    import subprocess

    from s2v.cpc import CPC, CPCConfig

    torch.manual_seed(0)
    CPC(CPCConfig(hidden_encoder=32, hidden_ar=32, n_negatives=8)).save_pretrained(tmp_path / "cpc")
    r = subprocess.run([sys.executable, "-m", "s2v.accent", "--cpc", str(tmp_path / "cpc"), "--out",
                        str(tmp_path / "accent"), "--voices", "10", "--clips-per-voice", "2", "--epochs", "1",
                        "--hidden", "16", "--workers", "1", "--device", "cpu", "--traits", "accent,sex"],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    m = json.loads((tmp_path / "accent" / "metrics.json").read_text())
    assert m["clips"] == 20 and 0 <= m["accent_heldout_voices"] <= 1 and 0 <= m["sex_heldout_voices"] <= 1
    head = AccentHead.from_pretrained(tmp_path / "accent")
    sys.path.insert(0, str(ROOT / "train"))
    stage1 = importlib.import_module("stage1")
    out = tmp_path / "s1"
    args = stage1.parse_args(["--data", str(tiny_prep), "--cpc", str(tmp_path / "cpc"), "--teachers",
                              str(tiny_prep.parent / "teachers"), "--output-dir", str(out), "--max-steps", "2",
                              "--batch-size", "4", "--checkpointing-steps", "1000", "--pool", "stats", "--id-head",
                              "linear", "--accent", str(tmp_path / "accent"), "--emo-input", "prosody"])
    stage1.main(args)
    st = Students.from_pretrained(out / "students")
    assert st.config.accents == ACCENTS and st.config.accent_traits == ("accent", "sex")
    assert st.s_id.in_features == 2 * 32 + len(ACCENTS) + 2
    for k, v in head.state_dict().items():  # the head as trained, untouched by stage 1's steps
        assert torch.equal(st.accent.state_dict()[k], v), k
    with pytest.raises(SystemExit, match="finetune-cpc"):
        stage1.main(stage1.parse_args(["--data", str(tiny_prep), "--cpc", str(tmp_path / "cpc"),
                                       "--teachers", str(tiny_prep.parent / "teachers"), "--output-dir",
                                       str(tmp_path / "x"), "--accent", str(tmp_path / "accent"), "--finetune-cpc"]))
