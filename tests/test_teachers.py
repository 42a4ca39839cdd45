"""Face teachers: shapes, freezing, the public-weight imports, training, and the cached targets."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from s2v.labels import EMOTIONS
from s2v.teachers import (EmotionTeacher, IdentityConfig, IdentityTeacher, import_senet_ferplus, import_vgg_face,
                          load_teachers)

ROOT = Path(__file__).resolve().parents[1]


def test_narrow_teachers_shapes():
    t = IdentityTeacher(IdentityConfig(num_classes=7))
    x = torch.rand(3, 3, 64, 64)
    assert t(x).shape == (3, 7) and t.embed(x).shape == (3, t.config.embed_dim)
    maps = t.features(x)
    assert [m.shape[-1] for m in maps] == list(t.config.feature_sizes) == [8, 16, 32]
    assert [m.shape[1] for m in maps] == list(t.config.feature_channels)
    e = EmotionTeacher().eval()
    assert e(x).shape == (3, 6) and torch.equal(e.crema_logits(x), e(x))
    with pytest.raises(ValueError, match="expected"):
        t(torch.rand(3, 64, 64))
    # other input sizes are resized to the network's own
    assert t.embed(torch.rand(1, 3, 100, 100)).shape == (1, t.config.embed_dim)


def _vgg_face_state() -> dict:
    """A state dict with vgg_face_dag.pth's exact keys and shapes (random values)."""
    state, c_in = {}, 3
    for b, n, c in ((1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512)):
        for i in range(1, n + 1):
            state[f"conv{b}_{i}.weight"] = torch.randn(c, c_in, 3, 3) * 0.01
            state[f"conv{b}_{i}.bias"] = torch.zeros(c)
            c_in = c
    for name, shape in (("fc6", (4096, 25088)), ("fc7", (4096, 4096)), ("fc8", (2622, 4096))):
        state[f"{name}.weight"] = torch.randn(*shape) * 0.001
        state[f"{name}.bias"] = torch.zeros(shape[0])
    return state


def test_import_vgg_face(tmp_path):
    path = tmp_path / "vgg_face_dag.pth"
    torch.save(_vgg_face_state(), path)
    t = import_vgg_face(path)
    x = torch.rand(1, 3, 112, 112)  # resized to 224 inside
    assert t(x).shape == (1, 2622) and t.embed(x).shape == (1, 4096)
    assert [m.shape[-1] for m in t.features(x)] == [28, 56, 112]
    # normalisation: 0-255 RGB minus the VGGFace mean, std 1
    mean = torch.tensor([129.186279296875, 104.76238250732422, 93.59396362304688]).view(1, 3, 1, 1)
    img = torch.rand(1, 3, 224, 224)
    assert torch.allclose(t._prep(img), img * 255 - mean, atol=1e-4)
    bad = _vgg_face_state()
    bad["fc8.weight"] = torch.zeros(10, 4096)
    torch.save(bad, path)
    with pytest.raises(ValueError, match="wrong shapes"):
        import_vgg_face(path)


def _senet_dag_state() -> dict:
    """senet50_ferplus_dag.pth's keys and shapes: Caffe-named SE-ResNet-50, 8 classes."""
    state = {}

    def conv(name, c_out, c_in, k, bias):
        state[f"{name}.weight"] = torch.randn(c_out, c_in, k, k) * 0.01
        if bias:
            state[f"{name}.bias"] = torch.zeros(c_out)

    def bn(name, c):
        state.update({f"{name}.weight": torch.ones(c), f"{name}.bias": torch.zeros(c),
                      f"{name}.running_mean": torch.zeros(c), f"{name}.running_var": torch.ones(c)})

    conv("conv1_7x7_s2", 64, 3, 7, False)
    bn("conv1_7x7_s2_bn", 64)
    c_in = 64
    for s, (w, n) in zip((2, 3, 4, 5), ((64, 3), (128, 4), (256, 6), (512, 3))):
        for b in range(1, n + 1):
            p = f"conv{s}_{b}"
            conv(f"{p}_1x1_reduce", w, c_in, 1, False), bn(f"{p}_1x1_reduce_bn", w)
            conv(f"{p}_3x3", w, w, 3, False), bn(f"{p}_3x3_bn", w)
            conv(f"{p}_1x1_increase", 4 * w, w, 1, False), bn(f"{p}_1x1_increase_bn", 4 * w)
            conv(f"{p}_1x1_down", 4 * w // 16, 4 * w, 1, True)
            conv(f"{p}_1x1_up", 4 * w, 4 * w // 16, 1, True)
            if b == 1:
                conv(f"{p}_1x1_proj", 4 * w, c_in, 1, False), bn(f"{p}_1x1_proj_bn", 4 * w)
            c_in = 4 * w
    conv("classifier", 8, 2048, 1, True)
    return state


def test_import_senet_ferplus(tmp_path):
    state = _senet_dag_state()
    state["classifier.weight"].zero_()
    state["classifier.bias"] = torch.arange(8, dtype=torch.float32)  # logit i = FER+ class i
    path = tmp_path / "senet50_ferplus_dag.pth"
    torch.save(state, path)
    t = import_senet_ferplus(path).eval()
    x = torch.rand(2, 3, 224, 224)
    assert t(x).shape == (2, 8)
    # FER+ order neutral, happiness, surprise, sadness, anger, disgust, fear, contempt -> ANG DIS FEA HAP NEU SAD
    assert t.crema_logits(x)[0].tolist() == [4.0, 5.0, 6.0, 1.0, 0.0, 3.0]
    # grey faces replicated to three channels, then the FER+ mean
    p = t._prep(x)
    mean = torch.tensor([131.0912, 103.8827, 91.4953]).view(1, 3, 1, 1)
    g = p + mean
    assert torch.allclose(g[:, 0], g[:, 1], atol=1e-3) and torch.allclose(g[:, 1], g[:, 2], atol=1e-3)


def test_teachers_train_resume_and_targets(tmp_path, tiny_corpus):
    from s2v.corpus.faces import make_faces
    from s2v.corpus.prepare import prepare
    from s2v.targets import load_targets, write_targets

    pool = tmp_path / "faces"
    make_faces(pool, identities=6, per_identity=8, size=32, workers=1, progress=False)
    out = tmp_path / "teachers"
    base = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "1",
            str(ROOT / "train" / "teachers.py"), "--data", str(pool), "--output-dir", str(out),
            "--holdout-identities", "2", "--image-size", "32", "--batch-size", "8", "--num-workers", "0",
            "--width", "0.5", "--checkpointing-steps", "2"]
    subprocess.run(base + ["--max-steps", "2"], check=True, cwd=ROOT, capture_output=True)
    assert (out / "checkpoint-2" / "s2v_step.json").exists() and (out / "identity" / "model.safetensors").exists()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 2 and 0 <= metrics["verification_accuracy_heldout"] <= 1
    # resume: continues at the saved step
    r = subprocess.run(base + ["--max-steps", "4", "--resume-from-checkpoint", "latest"], check=True, cwd=ROOT,
                       capture_output=True, text=True)
    assert "at step 2" in r.stdout + r.stderr
    assert json.loads((out / "metrics.json").read_text())["steps"] == 4
    t_id, t_emo = load_teachers(out)
    assert not any(p.requires_grad for p in t_id.parameters()) and not t_emo.training

    prep = tmp_path / "prep"
    prepare("crema-d", tiny_corpus, prep, size=32, workers=1, progress=False)
    write_targets(prep, out, k=4, progress=False, device="cpu")
    tg = load_targets(prep)
    from s2v.data import Prepared

    data = Prepared(prep)
    n, a = len(data.clips), len(data.actors)
    assert tg["nu_star"].shape == (n, t_id.config.embed_dim) and tg["mu_star"].shape == (n, 6)
    assert tg["still_map0"].shape[0] == a and tg["still_map2"].shape[-1] == 16  # 32 px input -> 4, 8, 16
    # mu* is the mean of T_emo over the K recorded frames; nu* is T_id of the first frame
    frames = np.asarray(data.frames(3))
    pick = [int(v) for v in str(tg["emo_frames"][3]).split(",")]
    x = torch.from_numpy(frames[pick]).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        assert np.allclose(t_emo.crema_logits(x).mean(0).numpy(), tg["mu_star"][3], atol=1e-4)
        assert np.allclose(t_id.embed(x[:0].new_tensor(frames[:1]).permute(0, 3, 1, 2) / 255).numpy()[0],
                           tg["nu_star"][3], atol=1e-4)
    assert len(pick) == 4 and len(EMOTIONS) == 6


def test_teachers_learn(tmp_path):
    """A few dozen steps on a small pool: the identity loss goes down (emotion needs far longer)."""
    sys.path.insert(0, str(ROOT / "train"))
    import importlib

    mod = importlib.import_module("teachers")
    from s2v.corpus.faces import make_faces

    pool = tmp_path / "faces"
    make_faces(pool, identities=6, per_identity=12, size=32, workers=1, progress=False)
    args = mod.parse_args(["--data", str(pool), "--output-dir", str(tmp_path / "o"), "--max-steps", "40",
                           "--holdout-identities", "2", "--image-size", "32", "--batch-size", "16",
                           "--num-workers", "0", "--width", "0.5", "--logging-steps", "1",
                           "--checkpointing-steps", "1000", "--learning-rate", "3e-3", "--report-to", "tensorboard"])
    mod.main(args)
    from conftest import read_scalars

    ident = read_scalars(tmp_path / "o" / "logs", "loss/identity")
    emo = read_scalars(tmp_path / "o" / "logs", "loss/emotion")
    assert len(ident) == 40 and np.all(np.isfinite(emo))
    assert np.mean(ident[-8:]) < 0.8 * np.mean(ident[:8]), f"identity loss did not go down: {ident}"


def test_hub_unreachable_warns_once_and_keeps_training(tmp_path):
    """--push-to-hub with no reachable Hub: one warning, training finishes, every file stays local."""
    import os

    from s2v.corpus.faces import make_faces

    pool = tmp_path / "faces"
    make_faces(pool, identities=4, per_identity=6, size=32, workers=1, progress=False)
    out = tmp_path / "run"
    env = {**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9", "HF_TOKEN": "hf_dummy", "PYTHONWARNINGS": "default"}
    r = subprocess.run([sys.executable, str(ROOT / "train" / "teachers.py"), "--data", str(pool), "--output-dir",
                        str(out), "--max-steps", "3", "--checkpointing-steps", "1", "--holdout-identities", "1",
                        "--image-size", "32", "--batch-size", "8", "--num-workers", "0", "--width", "0.5",
                        "--push-to-hub", "--hub-model-id", "someone/s2v-test"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stderr.count("Hub push to someone/s2v-test failed") == 1
    assert (out / "identity" / "model.safetensors").exists() and (out / "metrics.json").exists()
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-3"]  # limit 2


def test_teachers_too_small_a_pool_stops_with_a_message(tmp_path):
    """A pool smaller than one batch stops with a message, never a hang; the hold-out default scales with the
    pool (a tenth, at least one identity), so a 6-identity pool trains without --holdout-identities."""
    from s2v.corpus.faces import make_faces

    pool = tmp_path / "faces"
    make_faces(pool, identities=6, per_identity=2, size=32, workers=1, progress=False)
    base = [sys.executable, str(ROOT / "train" / "teachers.py"), "--data", str(pool), "--image-size", "32",
            "--num-workers", "0", "--width", "0.5", "--max-steps", "2"]
    r = subprocess.run(base + ["--output-dir", str(tmp_path / "big"), "--batch-size", "64"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "fewer than one batch of 64" in r.stderr
    r = subprocess.run(base + ["--output-dir", str(tmp_path / "ok"), "--batch-size", "4"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads((tmp_path / "ok" / "metrics.json").read_text())["heldout_identities"] == 1
