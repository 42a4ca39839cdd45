"""Stage 1: CPC (shapes, causality, InfoNCE, CPC_audio import), students and eq. 2-3, the trainers."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import read_scalars
from s2v.cpc import CPC, CPCConfig, import_cpc_audio
from s2v.students import LAMBDA, Students, StudentsConfig, fit_linear_id, l_distill, stage1_loss

ROOT = Path(__file__).resolve().parents[1]


def test_cpc_shapes_and_causality():
    torch.manual_seed(0)
    # g_enc and g_ar are causal; the optional per-sequence input normalisation uses the whole
    # sequence's level, so causality is checked without it
    m = CPC(CPCConfig(hidden_encoder=32, hidden_ar=24, n_negatives=8, normalize_input=False)).eval()
    wav = torch.randn(2, 16000)
    c, z = m(wav)
    assert z.shape == (2, 100, 32) and c.shape == (2, 100, 24)  # one frame per 10 ms
    # c_t depends only on the past: changing the last 0.3 s leaves the first 0.6 s of c unchanged
    wav2 = wav.clone()
    wav2[:, 11200:] = torch.randn(2, 4800)
    c2, _ = m(wav2)
    assert torch.allclose(c[:, :60], c2[:, :60], atol=1e-5) and not torch.allclose(c[:, -5:], c2[:, -5:])
    loss, acc = m.loss(c, z)
    assert loss.ndim == 0 and acc.shape == (12,) and ((0 <= acc) & (acc <= 1)).all()
    with pytest.raises(ValueError, match="more than 12"):
        m.loss(c[:, :12], z[:, :12])
    assert CPC(CPCConfig(ar_mode="GRU", hidden_encoder=16, hidden_ar=16))(torch.randn(1, 3200))[0].shape == (1, 20, 16)


def test_cpc_in_a_padded_batch_reads_each_clip_as_it_reads_it_alone():
    """Stage 1 encodes clips in zero-padded batches, the pipeline one clip at a time: with `n_samples` each row
    is normalised over its own samples, so its c_t (but for the last frames, whose receptive field reaches the
    padding) is the clip's own; normalised over the padded row it is not (what stage 1 did until 2026-11-23)."""
    torch.manual_seed(0)
    m = CPC(CPCConfig(hidden_encoder=32, hidden_ar=24, n_negatives=8)).eval()
    short, long = torch.randn(8000) * 0.05, torch.randn(16000) * 0.2
    batch = torch.zeros(2, 16000)
    batch[0, :8000], batch[1] = short, long
    with torch.no_grad():
        alone, _ = m(short[None])
        c, _ = m(batch, torch.tensor([8000, 16000]))
        old, _ = m(batch)
        loud, _ = m(short[None] * 10)
    assert torch.allclose(c[0, :45], alone[0, :45], atol=1e-5)  # 50 frames; the last few see the padding
    assert torch.allclose(c[1], m(long[None])[0][0], atol=1e-5)  # a full row is as before
    assert not torch.allclose(old[0, :45], alone[0, :45], atol=1e-3)
    assert torch.allclose(loud, alone, atol=1e-4)  # and a gain changes nothing


def _cpc_audio_checkpoint(hidden_enc: int, hidden_ar: int, mode: str) -> dict:
    """A CPC_audio-style checkpoint: {'weights': gEncoder.* and gAR.*, 'config': its args}."""
    w = {}
    c_in = 1
    for i, k in enumerate((10, 8, 4, 4, 4)):
        w[f"gEncoder.conv{i}.weight"] = torch.randn(hidden_enc, c_in, k) * 0.05
        w[f"gEncoder.conv{i}.bias"] = torch.zeros(hidden_enc)
        w[f"gEncoder.batchNorm{i}.weight"] = torch.ones(1, hidden_enc, 1)
        w[f"gEncoder.batchNorm{i}.bias"] = torch.zeros(1, hidden_enc, 1)
        c_in = hidden_enc
    gates = 4 if mode == "LSTM" else 3
    w["gAR.baseNet.weight_ih_l0"] = torch.randn(gates * hidden_ar, hidden_enc) * 0.05
    w["gAR.baseNet.weight_hh_l0"] = torch.randn(gates * hidden_ar, hidden_ar) * 0.05
    w["gAR.baseNet.bias_ih_l0"] = torch.zeros(gates * hidden_ar)
    w["gAR.baseNet.bias_hh_l0"] = torch.zeros(gates * hidden_ar)
    w["cpcCriterion.wPrediction.0.predictor.weight"] = torch.zeros(hidden_enc, hidden_ar)  # not ours: ignored
    return {"weights": {k: v for k, v in w.items() if not k.startswith("cpcCriterion")},
            "config": {"hiddenEncoder": hidden_enc, "hiddenGar": hidden_ar, "arMode": mode, "nLevelsGRU": 1,
                       "normMode": "layerNorm", "nPredicts": 12, "negativeSamplingExt": 128}}


@pytest.mark.parametrize("mode,h_enc,h_ar", [("LSTM", 256, 256), ("GRU", 64, 48)])
def test_import_cpc_audio(tmp_path, mode, h_enc, h_ar):
    ckpt = _cpc_audio_checkpoint(h_enc, h_ar, mode)
    path = tmp_path / "cpc.pt"
    torch.save(ckpt, path)
    m = import_cpc_audio(path)
    assert m.config.hidden_encoder == h_enc and m.config.hidden_ar == h_ar and m.config.ar_mode == mode
    for k, v in ckpt["weights"].items():
        assert torch.equal(m.state_dict()[k], v)
    c, z = m(torch.randn(1, 8000))
    assert c.shape == (1, 50, h_ar) and z.shape == (1, 50, h_enc)
    ckpt["config"]["normMode"] = "batchNorm"
    torch.save(ckpt, path)
    with pytest.raises(ValueError, match="layerNorm"):
        import_cpc_audio(path)


def test_distill_loss_as_written():
    x = torch.tensor([[0.0, 0.0]])
    y = torch.tensor([[0.0, math.log(3.0)]])  # softmax(y) = (1/4, 3/4)
    expected = -(0.5 * math.log(0.25) + 0.5 * math.log(0.75))
    assert l_distill(x, y).item() == pytest.approx(expected, rel=1e-6)
    # not symmetric: the student's softmax weights the teacher's log-probabilities
    assert l_distill(y, x).item() == pytest.approx(math.log(2.0), rel=1e-6)
    mu, nu = torch.randn(4, 6), torch.randn(4, 32)
    t = stage1_loss(mu, mu * 2, nu, nu * 3)  # same directions: the normalised terms vanish
    assert LAMBDA == 0.025 and t["emo_norm"].item() < 1e-10 and t["id_norm"].item() < 1e-10
    t = stage1_loss(mu, -mu, nu, -nu)  # opposite directions: ||a - b||^2 = 4
    assert t["emo_norm"].item() == pytest.approx(4 * LAMBDA, rel=1e-5)
    assert t["total"].item() == pytest.approx(sum(v.item() for k, v in t.items() if k != "total"), rel=1e-6)
    tw = stage1_loss(x, y, x, y, distill="teacher-weighted")  # the arguments of eq. 3 swapped
    assert tw["emo_distill"].item() == pytest.approx(l_distill(y, x).item(), rel=1e-6)
    # id_target="embedding": S_id's term is the full-weight cosine distance to ν*, no softmax term
    te = stage1_loss(mu, -mu, nu, -nu, id_target="embedding")
    assert te["id_norm"].item() == pytest.approx(4.0, rel=1e-5) and te["id_distill"].item() == 0.0
    assert te["emo_norm"].item() == pytest.approx(t["emo_norm"].item(), rel=1e-6)  # emotion unchanged
    with pytest.raises(ValueError):
        stage1_loss(mu, mu, nu, nu, id_target="logits")


def test_students_read_c_T_the_mean_or_its_statistics():
    s = Students(StudentsConfig(in_dim=4, id_dim=5, emo_dim=6, hidden=8)).eval()
    c = torch.arange(2 * 5 * 4, dtype=torch.float32).view(2, 5, 4)
    lengths = torch.tensor([5, 3])
    assert torch.equal(s.omega(c, lengths), torch.stack([c[0, 4], c[1, 2]]))
    mean = Students(StudentsConfig(in_dim=4, pool="mean"))
    assert torch.allclose(mean.omega(c, lengths)[1], c[1, :3].mean(0))
    nu, mu = s(c, lengths)
    assert nu.shape == (2, 5) and mu.shape == (2, 6)
    stats = Students(StudentsConfig(in_dim=4, id_dim=5, pool="stats")).eval()
    w = stats.omega(c, lengths)
    assert w.shape == (2, 8) and torch.allclose(w[1], torch.cat([c[1, :3].mean(0), c[1, :3].std(0, unbiased=False)]))
    assert stats(c, lengths)[0].shape == (2, 5) and stats(c, lengths)[1].shape == (2, 6)  # S_emo reads the same ω


def _launch(script: str, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "1",
           str(ROOT / "train" / script), *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_cpc_trainer_two_steps_and_resume(tiny_prep, tmp_path):
    out = tmp_path / "cpc"
    base = ["--data", str(tiny_prep), "--output-dir", str(out), "--batch-size", "4", "--hidden", "32",
            "--negatives", "8", "--num-workers", "0", "--checkpointing-steps", "2"]
    r = _launch("cpc.py", *base, "--max-steps", "2")
    assert r.returncode == 0, r.stderr[-2000:]
    m = json.loads((out / "metrics.json").read_text())
    assert m["steps"] == 2 and 0 <= m["cpc_accuracy_val"] <= 1 and 0 <= m["speaker_probe_top1_test"] <= 1
    r = _launch("cpc.py", *base, "--max-steps", "3", "--resume-from-checkpoint", "latest")
    assert r.returncode == 0 and "at step 2" in r.stdout + r.stderr
    assert json.loads((out / "metrics.json").read_text())["steps"] == 3
    assert CPC.from_pretrained(out).config.hidden_encoder == 32


@pytest.fixture(scope="module")
def tiny_cpc(tiny_prep, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cpc")
    torch.manual_seed(0)
    CPC(CPCConfig(hidden_encoder=32, hidden_ar=32, n_negatives=8)).save_pretrained(out)
    return out


def test_stage1_two_steps_resume_and_outputs(tiny_prep, tiny_cpc, tmp_path):
    out = tmp_path / "s1"
    teachers = tiny_prep.parent / "teachers"
    base = ["--data", str(tiny_prep), "--cpc", str(tiny_cpc), "--teachers", str(teachers), "--output-dir", str(out),
            "--batch-size", "4", "--checkpointing-steps", "2", "--num-workers", "0"]
    flags = ("--emo-input", "prosody", "--emo-speakers")
    r = _launch("stage1.py", *base, "--max-steps", "2", *flags)
    assert r.returncode == 0, r.stderr[-2000:]
    for part in ("cpc/model.safetensors", "students/model.safetensors", "gallery/gallery.json", "metrics.json",
                 "README.md", "checkpoint-2/s2v_step.json"):
        assert (out / part).exists(), part
    m = json.loads((out / "metrics.json").read_text())
    assert {"identity_top1_seen_test", "unseen_sex_agreement"} <= set(m) or {"unseen_sex_agreement"} <= set(m)
    assert m["unseen_actors"] == 2 and all(0 <= m[f"nu_{k}_unseen"] <= 1 for k in ("match_1to2", "r_at_1", "r_at_5"))
    r = _launch("stage1.py", *base, "--max-steps", "4", "--resume-from-checkpoint", "latest", *flags)
    assert r.returncode == 0 and "at step 2" in r.stdout + r.stderr
    assert json.loads((out / "metrics.json").read_text())["steps"] == 4
    from s2v.gallery import Gallery

    g = Gallery.load(out / "gallery")
    assert g.ids == ["1001", "1002", "1003"] and g.stills.shape == (3, 32, 32, 3)  # 1004/5 unseen: not in it
    sims = g.similarity(g.embeddings)
    assert np.allclose(sims.max(1), np.diag(sims))  # each actor's mean ν* is (one of) its own nearest
    assert g.voice is not None and g.voice.shape == g.embeddings.shape  # students' mean ν: the recall targets
    st = Students.from_pretrained(out / "students")
    assert st.config.emo_input == "prosody" and st.config.emo_speakers == 3
    # S_emo finds the speaker among the same voices identity recall uses
    assert torch.allclose(st.speaker_keys, torch.nn.functional.normalize(torch.from_numpy(g.voice), dim=-1), atol=1e-6)
    assert st.speaker_bases.abs().sum() > 0


def test_stage1_loss_goes_down(tiny_prep, tiny_cpc, tmp_path):
    sys.path.insert(0, str(ROOT / "train"))
    import importlib

    stage1 = importlib.import_module("stage1")
    args = stage1.parse_args(["--data", str(tiny_prep), "--cpc", str(tiny_cpc), "--teachers",
                              str(tiny_prep.parent / "teachers"), "--output-dir", str(tmp_path / "o"),
                              "--max-steps", "40", "--batch-size", "4", "--logging-steps", "1",
                              "--report-to", "tensorboard", "--checkpointing-steps", "1000"])
    stage1.main(args)
    loss = read_scalars(tmp_path / "o" / "logs", "loss/total")
    # eq. 3 as written has a floor: -max_i log softmax(y)_i, reached when the student puts all its
    # mass on the teacher's top class. The gap to that floor must shrink by more than half.
    from s2v.data import Prepared
    from s2v.targets import load_targets

    t, train = load_targets(tiny_prep), Prepared(tiny_prep).split("train")
    floor = sum(float(-torch.log_softmax(torch.from_numpy(t[k][train]), -1).max(-1).values.mean())
                for k in ("nu_star", "mu_star"))
    assert len(loss) == 40 and np.mean(loss[-8:]) - floor < 0.5 * (np.mean(loss[:8]) - floor), (floor, loss)


def test_emotion_student_reads_the_level():
    """--emo-level: S_emo sees the input's log RMS (the CPC normalises each input, so c has no loudness)."""
    import math

    import torch

    from s2v.students import Students, StudentsConfig, audio_level

    wav = torch.zeros(2, 1000)
    wav[0, :500] = 0.1  # half the row is padding: the level ignores it
    wav[1] = 0.01
    lv = audio_level(wav, torch.tensor([500, 1000]))
    assert torch.allclose(lv[:, 0], torch.tensor([math.log(0.1), math.log(0.01)]), atol=1e-4)
    s = Students(StudentsConfig(in_dim=8, id_dim=4, emo_dim=6, hidden=16, emo_level=True)).eval()
    w = torch.randn(2, 8)
    with pytest.raises(ValueError, match="level"):
        s(w)
    nu_a, mu_a = s(w, level=torch.tensor([[-2.0], [-2.0]]))
    nu_b, mu_b = s(w, level=torch.tensor([[-5.0], [-5.0]]))
    assert torch.equal(nu_a, nu_b) and not torch.allclose(mu_a, mu_b)  # identity ignores loudness, emotion reads it


def test_prosody_statistics():
    """The loudness statistics S_emo reads with --emo-input prosody (100 frame levels per second)."""
    from s2v.students import N_PROSODY, frame_level, prosody

    t = torch.arange(200) / 100.0
    steady = torch.full((200,), -3.0)
    steady[100:] = -12.0  # the second second is silence: > 3 nepers below the loudest
    p = prosody(steady)
    assert p.shape == (N_PROSODY,)
    mean, std, q90, q10, voiced, seconds, change, mod = p.tolist()
    assert mean == pytest.approx(-3.0) and std == pytest.approx(0.0, abs=1e-6) and q90 == q10 == pytest.approx(-3.0)
    assert voiced == pytest.approx(0.5) and seconds == pytest.approx(2.0) and change == pytest.approx(0.0, abs=1e-6)
    # a 6 Hz tremolo puts the level's modulation in the 4-8 Hz band; a 1 Hz swell does not
    tremolo = prosody(-3.0 + 0.5 * torch.sin(2 * math.pi * 6 * t))
    swell = prosody(-3.0 + 0.5 * torch.sin(2 * math.pi * 1 * t))
    assert tremolo[7] > 5 * swell[7] and tremolo[6] > swell[6]
    # frame_level: the log RMS of each 160-sample hop, zero-padded past the end
    wav = torch.zeros(1, 400)
    wav[0, :160], wav[0, 160:320] = 0.1, 0.01
    lv = frame_level(wav, 4)
    assert torch.allclose(lv[0, :2], torch.tensor([math.log(0.1), math.log(0.01)]), atol=1e-4)
    assert lv[0, 3] < -10  # past the end: silence


def test_relative_prosody_ignores_gain_and_trimmed_silence():
    """--emo-input prosody-rel: the statistics do not move when the clip is louder or quieter, or when silence
    is cut off or added at its ends; they do move with how the level varies."""
    from s2v.students import N_PROSODY, frame_level, relative_prosody

    g = torch.Generator().manual_seed(0)
    t = torch.arange(16000 * 2) / 16000
    # speech-like: bursts of noise (syllables) at 4 Hz with a 6 Hz tremolo, in silence
    bursts = (torch.sin(2 * math.pi * 4 * t) > 0).float() * (1 + 0.3 * torch.sin(2 * math.pi * 6 * t))
    speech = 0.1 * bursts * torch.randn(t.numel(), generator=g)
    clip = torch.cat([torch.zeros(4000), speech, torch.zeros(8000)])

    def stats(x):
        return relative_prosody(frame_level(x[None], x.numel() // 160)[0])

    p = stats(clip)
    assert p.shape == (N_PROSODY,) and torch.isfinite(p).all()
    assert torch.allclose(stats(clip * 10 ** (10 / 20)), p, atol=1e-4)  # +10 dB
    assert torch.allclose(stats(clip * 10 ** (-10 / 20)), p, atol=1e-4)  # -10 dB
    assert torch.allclose(stats(speech), p, atol=1e-4)  # the silence at both ends cut off
    assert torch.allclose(stats(torch.cat([torch.zeros(16000), clip])), p, atol=1e-4)  # a second more of it
    onsets = p[5]  # voiced onsets per second of speech: the 4 Hz bursts
    assert 3.5 < float(onsets) < 4.6
    steady = 0.1 * torch.randn(t.numel(), generator=g)
    q = stats(steady)
    assert q[4] > p[4] and q[7] < p[7]  # more of the span voiced; less 4-8 Hz modulation than the tremolo
    s = Students(StudentsConfig(in_dim=8, id_dim=4, emo_dim=6, hidden=16, emo_input="prosody-rel"))
    assert s.config.emo_features == 2 * 8 + N_PROSODY
    e = s.emotion_input(torch.randn(1, clip.numel() // 160, 8), clip[None])
    assert torch.allclose(e[0, 16:], p, atol=1e-5)


def test_prosody_students_mask_padding_and_take_off_the_speaker():
    """--emo-input prosody --emo-speakers: the input ignores padding; μ depends on whose average is taken off,
    and by default that is the seen actor nearest the voice's ν."""
    from s2v.students import N_PROSODY

    with pytest.raises(ValueError, match="emo_level"):
        StudentsConfig(emo_input="prosody", emo_level=True)
    with pytest.raises(ValueError, match="emo_input"):
        StudentsConfig(emo_input="pitch")
    torch.manual_seed(0)
    s = Students(StudentsConfig(in_dim=8, id_dim=4, emo_dim=6, hidden=16, emo_input="prosody", emo_speakers=2,
                                emo_temperature=1e-4)).eval()
    assert s.config.emo_features == 2 * 8 + N_PROSODY
    wav = torch.randn(2, 3200) * torch.linspace(0.01, 1, 3200)
    c = torch.randn(2, 20, 8)
    e_full = s.emotion_input(c[:1, :12], wav[:1, :1920])
    e_pad = s.emotion_input(c, wav, torch.tensor([1920, 3200]))
    assert torch.allclose(e_full[0], e_pad[0], atol=1e-5)  # the padded row reads only its own 12 frames
    with pytest.raises(ValueError, match="prosody"):
        s(c)
    bases = torch.randn(2, s.config.emo_features)
    s.set_speakers(keys=torch.eye(2, 4) * 3, bases=bases)
    assert torch.allclose(s.speaker_keys.norm(dim=-1), torch.ones(2))
    w = s.omega(c)
    a = s(w, e=e_pad, speaker=torch.tensor([[1.0, 0.0], [1.0, 0.0]]))[1]
    b = s(w, e=e_pad, speaker=torch.tensor([[0.0, 1.0], [0.0, 1.0]]))[1]
    assert not torch.allclose(a, b)
    nu = s.s_id(w)
    who = torch.nn.functional.one_hot(s.speaker_weights(nu).argmax(-1), 2).float()
    assert torch.allclose(s(w, e=e_pad)[1], s(w, e=e_pad, speaker=who)[1], atol=1e-5)  # a small T: the nearest
    nu_i, mu_i = s.infer(c, wav, torch.tensor([1920, 3200]))
    assert torch.allclose(mu_i, s(c, torch.tensor([12, 20]), e=e_pad)[1], atol=1e-5)


def test_stage1_trains_on_degraded_copies(tiny_prep, tiny_cpc, tmp_path):
    """--augment: degraded copies of every clip are encoded through the transform and trained on; the
    gallery's voices still come from the clean clips."""
    sys.path.insert(0, str(ROOT / "train"))
    import importlib

    from s2v.cpc import CPC
    from s2v.data import Prepared
    from s2v.degrade import gain

    stage1 = importlib.import_module("stage1")
    data = Prepared(tiny_prep)
    ids = data.split("train")[:4]
    cpc = CPC.from_pretrained(tiny_cpc).eval()
    st = Students(StudentsConfig(in_dim=cpc.dim, id_dim=8, emo_input="prosody"))
    plain = stage1.encode_all(cpc, st, data, ids, 48000, "cpu")
    same = stage1.encode_all(cpc, st, data, ids, 48000, "cpu", transform=lambda a: a)
    quiet = stage1.encode_all(cpc, st, data, ids, 48000, "cpu", transform=lambda a: gain(a, -20))
    assert all(torch.equal(x, y) for x, y in zip(plain, same))
    assert not torch.allclose(plain[1], quiet[1], atol=1e-3)  # S_emo's input reads the level
    out = tmp_path / "aug"
    args = stage1.parse_args(["--data", str(tiny_prep), "--cpc", str(tiny_cpc), "--teachers",
                              str(tiny_prep.parent / "teachers"), "--output-dir", str(out), "--max-steps", "3",
                              "--batch-size", "4", "--checkpointing-steps", "1000", "--emo-input", "prosody",
                              "--emo-speakers", "--augment", "1", "--augment-copies", "1"])
    stage1.main(args)
    assert json.loads((out / "metrics.json").read_text())["steps"] == 3
    from s2v.gallery import Gallery

    g = Gallery.load(out / "gallery")
    assert g.voice is not None and np.isfinite(g.voice).all()


def test_linear_id_head_fits_what_voices_share():
    """fit_linear_id on known answers: when ν* is a linear function of what each actor's clips share, the head
    predicts actors it never saw (1:2 near 1) with a weak penalty; when ω says nothing of ν*, the held-out
    matching that chose the penalty stays near chance."""
    rng = np.random.default_rng(0)
    actors = np.repeat(np.arange(40), 6)
    trait = rng.normal(size=(40, 5))  # what a voice tells of its face, per actor
    mix = rng.normal(size=(5, 16))
    omega = np.c_[trait[actors], np.zeros((len(actors), 11))] + 0.1 * rng.normal(size=(len(actors), 16))
    nu_star = trait[actors] @ mix + 0.05 * rng.normal(size=(len(actors), 16))
    st = Students(StudentsConfig(in_dim=16, id_dim=16, id_head="linear"))
    fit = fit_linear_id(st, omega, nu_star, actors)
    assert fit["id_cv_match_1to2"] > 0.95 and fit["id_lambda"] <= 100
    new = rng.normal(size=(3, 5))  # three actors no fit saw
    with torch.no_grad():
        nu = st.s_id(torch.from_numpy(np.c_[new, np.zeros((3, 11))]).float()).numpy()
    truth = new @ mix
    cos = (nu / np.linalg.norm(nu, axis=1, keepdims=True)) @ (truth / np.linalg.norm(truth, axis=1, keepdims=True)).T
    assert (np.argmax(cos, 1) == np.arange(3)).all()
    noise = Students(StudentsConfig(in_dim=16, id_dim=16, id_head="linear"))
    fit = fit_linear_id(noise, rng.normal(size=omega.shape), nu_star, actors)
    assert fit["id_cv_match_1to2"] < 0.65
    with pytest.raises(ValueError):
        fit_linear_id(Students(StudentsConfig(in_dim=16, id_dim=16)), omega, nu_star, actors)


def test_stage1_linear_id_head(tiny_prep, tiny_cpc, tmp_path):
    """--id-head linear: S_id is fitted once in closed form and left alone by the loop (S_emo trains); the saved
    students load with it; the metrics say which penalty was taken."""
    sys.path.insert(0, str(ROOT / "train"))
    import importlib

    stage1 = importlib.import_module("stage1")
    out = tmp_path / "lin"
    args = stage1.parse_args(["--data", str(tiny_prep), "--cpc", str(tiny_cpc), "--teachers",
                              str(tiny_prep.parent / "teachers"), "--output-dir", str(out), "--max-steps", "3",
                              "--batch-size", "4", "--checkpointing-steps", "1000", "--pool", "mean", "--id-head",
                              "linear", "--emo-input", "prosody"])
    m = stage1.main(args)
    assert m["id_lambda"] in (1.0, 10.0, 100.0, 1000.0, 10000.0) and m["steps"] == 3
    st = Students.from_pretrained(out / "students")
    assert st.config.id_head == "linear" and isinstance(st.s_id, torch.nn.Linear)
    from s2v.cpc import CPC
    from s2v.data import Prepared
    from s2v.linear import ridge_regress
    from s2v.targets import load_targets

    data, cpc = Prepared(tiny_prep), CPC.from_pretrained(out / "cpc").eval()
    ids = data.split("train")
    omega, _ = stage1.encode_all(cpc, st, data, ids, 6 * 16000, "cpu")
    nu = st.s_id(omega).detach().numpy()
    want = ridge_regress(omega.numpy(), load_targets(tiny_prep)["nu_star"][ids], omega.numpy(), m["id_lambda"])
    assert np.allclose(nu, want, atol=1e-3)  # the fitted map itself, untouched by the three steps
