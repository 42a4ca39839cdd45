"""Stage 2: generator shapes, losses, discriminators that learn, the trainer, kill-and-resume."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from s2v.discriminators import Discriminators, DiscriminatorsConfig
from s2v.generator import Generator, GeneratorConfig, context_windows, generate_clip
from s2v.losses import l_expr, l_grad, l_lower, l_sim, l_sync_expert, lsgan_d, lsgan_g, smooth, sync_d
from s2v.modeling import freeze
from s2v.teachers import EmotionTeacher

ROOT = Path(__file__).resolve().parents[1]


def test_generator_shapes_and_identity_branch():
    for size, sizes in ((64, [8, 16, 32]), (128, [16, 32, 64])):
        g = Generator(GeneratorConfig(size=size, c_dim=16, nu_dim=10, context=2, id_channels=(12, 8, 4), base=32))
        frame, maps = g(torch.randn(3, 5, 16), torch.randn(3, 10), torch.randn(3, 6))
        assert frame.shape == (3, 3, size, size) and frame.abs().max() <= 1
        assert [m.shape[-1] for m in maps] == sizes and [m.shape[1] for m in maps] == [12, 8, 4]
    ablation = Generator(GeneratorConfig(c_dim=16, nu_dim=10, identity_branch=False, base=32))
    frame, maps = ablation(torch.randn(2, 16), torch.randn(2, 10), torch.randn(2, 6))
    assert frame.shape == (2, 3, 64, 64) and maps == []
    with pytest.raises(ValueError, match="c must be"):
        ablation(torch.randn(2, 3, 16), torch.randn(2, 10), torch.randn(2, 6))
    # ν changes the face: the identity branch is wired in
    g = Generator(GeneratorConfig(c_dim=16, nu_dim=10, base=32, id_channels=(12, 8, 4))).eval()
    c, mu = torch.randn(1, 16), torch.randn(1, 6)
    assert not torch.allclose(g(c, torch.randn(1, 10), mu)[0], g(c, torch.randn(1, 10), mu)[0])


def test_context_windows_follow_the_video_clock():
    c = torch.arange(100.0).view(100, 1)  # 1 s of CPC frames
    w = context_windows(c, 30, 30, 1)
    assert w.shape == (30, 3, 1)
    assert w[0, :, 0].tolist() == [0, 1, 2] and w[-1, 1, 0].item() == 98  # frame 29's centre at 983 ms
    g = Generator(GeneratorConfig(c_dim=1, nu_dim=4, base=32, id_channels=(4, 4, 4), context=1))
    assert generate_clip(g.eval(), c, torch.zeros(4), torch.zeros(6), 30, 30, batch=7).shape == (30, 3, 64, 64)


def test_losses():
    a = torch.zeros(2, 3, 8, 8)
    b = a.clone()
    b[..., 4:, :] = 1.0  # differs in the lower half only
    assert l_sim(a, b).item() == 0.0 and l_sim(a, torch.ones_like(a)).item() == 1.0
    assert l_lower(a, b).item() == 1.0 and l_lower(b, b).item() == 0.0  # the lower half is its whole business
    assert l_grad(a, a).item() == 0.0 and l_grad(a, b).item() > 0
    assert torch.allclose(smooth(torch.ones(1, 3, 9, 9)), torch.ones(1, 3, 9, 9), atol=1e-6)
    ones, zeros = torch.ones(4, 1), torch.zeros(4, 1)
    assert lsgan_d(ones, zeros).item() == 0.0 and lsgan_g(ones).item() == 0.0 and lsgan_g(zeros).item() == 0.5
    assert sync_d(ones, zeros, zeros).item() == 0.0 and sync_d(zeros, ones, ones).item() == 2.0


def test_expression_loss_compares_teacher_features_and_trains_only_the_generator():
    torch.manual_seed(0)
    teacher = freeze(EmotionTeacher())
    real = torch.rand(4, 3, 64, 64) * 2 - 1
    assert l_expr(teacher, real, real).item() < 1e-5
    fake = (real + 0.8 * torch.randn_like(real)).clamp(-1, 1).requires_grad_(True)
    loss = l_expr(teacher, fake, real)
    assert 0 < loss.item() <= 2
    loss.backward()
    assert fake.grad.abs().sum() > 0 and all(p.grad is None for p in teacher.parameters())
    # a step along the gradient brings the teacher's view of the fake closer to the real frame's
    with torch.no_grad():
        assert l_expr(teacher, fake - 0.05 * fake.grad / fake.grad.abs().max(), real) < loss
    # region "upper": same value (the teacher sees the whole face), gradient only on rows 0 .. H/2
    upper = fake.detach().clone().requires_grad_(True)
    loss_upper = l_expr(teacher, upper, real, "upper")
    assert torch.allclose(loss_upper, loss)
    loss_upper.backward()
    assert upper.grad[..., :32, :].abs().sum() > 0 and upper.grad[..., 32:, :].abs().sum() == 0
    assert torch.allclose(upper.grad[..., :32, :], fake.grad[..., :32, :])
    with pytest.raises(ValueError, match="region"):
        l_expr(teacher, fake, real, "lower")


def test_each_discriminator_learns_to_separate_real_from_fake():
    torch.manual_seed(0)
    D = Discriminators(DiscriminatorsConfig(c_dim=8, window=1, id_channels=(6, 4, 2), width=16))
    opt = torch.optim.RMSprop(D.parameters(), lr=1e-3)
    real_frames = torch.rand(8, 3, 64, 64) * 0.5 + 0.5  # bright
    fake_frames = torch.rand(8, 3, 64, 64) * 0.5 - 1.0  # dark
    real_maps = [torch.randn(8, c, s, s) + 1 for c, s in ((6, 8), (4, 16), (2, 32))]
    fake_maps = [torch.randn(8, c, s, s) - 1 for c, s in ((6, 8), (4, 16), (2, 32))]
    for _ in range(30):
        loss = lsgan_d(D("fr", real_frames)[0], D("fr", fake_frames)[0]) \
            + lsgan_d(D("id", real_maps)[0], D("id", fake_maps)[0])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        assert D("fr", real_frames)[0].mean() > D("fr", fake_frames)[0].mean() + 0.3
        assert D("id", real_maps)[0].mean() > D("id", fake_maps)[0].mean() + 0.3

    def sync_batch(n=16):
        """The mouth (lower half) brightness follows the sign of the audio feature."""
        sign = torch.randint(0, 2, (n,)).float() * 2 - 1
        frames = torch.zeros(n, 3, 64, 64)
        frames[..., 32:, :] = sign.view(n, 1, 1, 1) * 0.8
        return sign.view(n, 1, 1).expand(n, 1, 8).contiguous(), frames

    for _ in range(150):  # pairs in and out of sync: an interaction to learn, so more steps
        c, frames = sync_batch()
        loss = sync_d(D("sync", c, frames)[0], D("sync", -c, frames)[0], D("sync", c, torch.zeros_like(frames))[0])
        opt.zero_grad()
        loss.backward()
        opt.step()
    c, frames = sync_batch(64)
    with torch.no_grad():
        assert D("sync", c, frames)[0].mean() > D("sync", -c, frames)[0].mean() + 0.3


def test_discriminator_losses_in_one_call_equal_one_call_per_input():
    """ADVERSARIES' d_loss stacks real and fake into one call of each discriminator: the same loss and gradients
    as calling it once per input (eval mode, so spectral norm's power iteration does not move between calls)."""
    from s2v.discriminators import ADVERSARIES

    torch.manual_seed(0)
    D = Discriminators(DiscriminatorsConfig(c_dim=8, window=3, id_channels=(6, 4, 2), width=8))
    b = 5
    s = {"real": torch.rand(b, 3, 32, 32) * 2 - 1, "fake": torch.rand(b, 3, 32, 32) * 2 - 1,
         "c": torch.randn(b, 3, 8), "c_off": torch.randn(b, 3, 8),
         "real_maps": [torch.randn(b, c, sz, sz) for c, sz in ((6, 4), (4, 8), (2, 16))],
         "maps": [torch.randn(b, c, sz, sz) for c, sz in ((6, 4), (4, 8), (2, 16))]}
    separate = {"id": lambda: lsgan_d(D("id", s["real_maps"])[0], D("id", s["maps"])[0]),
                "fr": lambda: lsgan_d(D("fr", s["real"])[0], D("fr", s["fake"])[0]),
                "sync": lambda: sync_d(D("sync", s["c"], s["real"])[0], D("sync", s["c_off"], s["real"])[0],
                                       D("sync", s["c"], s["fake"])[0])}
    with torch.no_grad():  # spectral norm's power iterations settle (train mode), then stay put (eval)
        for _ in range(20):
            for fn in separate.values():
                fn()
    D.eval()
    for name, adv in ADVERSARIES.items():
        grads = []
        for loss_fn in (lambda: adv.d_loss(D, s), separate[name]):
            D.zero_grad()
            loss = loss_fn()
            loss.backward()
            grads.append((loss.detach(), [p.grad.clone() for p in getattr(D, name).parameters() if p.grad is not None]))
        (l1, g1), (l2, g2) = grads
        assert torch.allclose(l1, l2, atol=1e-6), name
        assert len(g1) == len(g2) > 0 and all(torch.allclose(x, y, rtol=1e-4, atol=1e-6) for x, y in zip(g1, g2)), name


@pytest.fixture(scope="module")
def tiny_stage1(tiny_prep, tmp_path_factory) -> Path:
    """A saved (untrained) stage 1 for the tiny data: CPC, students, gallery."""
    from s2v.cpc import CPC, CPCConfig
    from s2v.students import Students, StudentsConfig
    from s2v.targets import load_targets

    out = tmp_path_factory.mktemp("stage1")
    torch.manual_seed(0)
    CPC(CPCConfig(hidden_encoder=16, hidden_ar=16, n_negatives=4)).save_pretrained(out / "cpc")
    t = load_targets(tiny_prep)
    Students(StudentsConfig(in_dim=16, id_dim=t["nu_star"].shape[1], hidden=16)).save_pretrained(out / "students")
    return out


def _cmd(tiny_prep, stage1, out, *extra):
    return [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "1",
            str(ROOT / "train" / "stage2.py"), "--data", str(tiny_prep), "--stage1", str(stage1), "--teachers",
            str(tiny_prep.parent / "teachers"), "--output-dir", str(out), "--batch-size", "4", "--num-workers", "0",
            "--base", "32", "--d-width", "8", "--sample-steps", "2", *extra]


def test_stage2_two_steps(tiny_prep, tiny_stage1, tmp_path):
    out = tmp_path / "s2"
    r = subprocess.run(_cmd(tiny_prep, tiny_stage1, out, "--max-steps", "2", "--context", "1", "--mu-source", "teacher",
                            "--lambda-expr", "1", "--expr-region", "upper", "--batches", "device"), cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "batches drawn on cpu" in r.stdout + r.stderr  # the GPU's feeding path, run on the CPU
    g = Generator.from_pretrained(out / "generator")
    assert g.config.size == 32 and g.config.context == 1
    meta = json.loads((out / "stage2.json").read_text())
    assert meta["stage1"] == str(tiny_stage1.resolve()) and len(meta["revision"]) == 16
    assert Generator.read_meta(out / "generator")["stage1"]["revision"] == meta["revision"]
    import cv2

    grid = cv2.imread(str(out / "samples" / "step-000002.png"))
    assert grid.shape[0] == 3 * 2 * 32 and grid.shape[1] == 6 * 32  # a clip per seen actor (GT + generated), 6 frames
    assert meta["settings"]["mu_source"] == "teacher" and meta["settings"]["expr_region"] == "upper"
    assert meta["metrics"]["final"]["expr"] > 0  # the expression loss took part
    assert meta["metrics"]["speed"]["frames_per_s"] > 0 and meta["metrics"]["speed"]["steps_timed"] == 1
    # --mu-source teacher: the frames come with the teacher's μ* of their clip, not the student's μ
    from s2v.data import Frames, Prepared
    from s2v.features import AudioFeatures
    from s2v.targets import load_targets

    data, feats, t = Prepared(tiny_prep), AudioFeatures.load(out / "features"), load_targets(tiny_prep)
    for source, want in (("teacher", t["mu_star"]), ("student", feats.mu)):
        ds = Frames(data, feats, t, "train", 1, 3, source)
        i, _ = ds.index.locate(0)
        assert np.allclose(ds[0]["mu"].numpy(), want[i])
    # --nu-source: the teacher's ν* of the clip, the student's ν, or either at random (mix)
    for source, want in (("teacher", t["nu_star"]), ("student", feats.nu)):
        ds = Frames(data, feats, t, "train", 1, 3, nu_source=source)
        i, _ = ds.index.locate(0)
        assert np.allclose(ds[0]["nu"].numpy(), want[i])
    ds = Frames(data, feats, t, "train", 1, 3, nu_source="mix")
    i, _ = ds.index.locate(0)
    np.random.seed(0)
    got = {bool(np.allclose(ds[0]["nu"].numpy(), t["nu_star"][i])) for _ in range(20)}
    assert got == {True, False}
    _device_frames_match_frames(data, feats, t)


def _device_frames_match_frames(data, feats, t):
    """DeviceFrames (the GPU trainer's batches) gives what Frames gives for the same frames: frame, c window,
    ν, μ, maps; its off-sync window is one of the clip's windows >= offsync_min frames away."""
    from s2v.data import DeviceFrames, Frames

    for context, source in ((1, "student"), (0, "teacher")):
        ds = Frames(data, feats, t, "train", context, 3, "teacher", source)
        dev = DeviceFrames(ds, "cpu")
        assert len(dev) == len(ds)
        k = torch.arange(len(ds))
        b = dev.gather(k)
        for key in ("frame", "c", "nu", "mu"):
            want = torch.stack([ds[int(x)][key] for x in k])
            assert b[key].shape == want.shape and torch.allclose(b[key], want), key
        assert all(torch.equal(b["maps"][m], torch.stack([ds[int(x)]["maps"][m] for x in k])) for m in range(3))
        for x in range(len(ds)):
            i, tt = ds.index.locate(x)
            n, fps = data.clips[i]["n_frames"], data.clips[i]["fps"]
            far = [u for u in range(n) if abs(u - tt) >= 3]
            assert far, "the tiny corpus' clips are long enough for off-sync frames"
            assert any(np.allclose(b["c_off"][x].numpy(), feats.window(i, u, fps, context)) for u in far)
    # drawn batches cover the split and the off-sync frames spread over the allowed ones
    torch.manual_seed(0)
    b = dev.next(4 * len(ds))
    assert b["frame"].shape == (4 * len(ds), 3, data.size, data.size) and b["frame"].min() >= -1


def test_expert_sync_loss_prefers_lips_that_follow_the_audio():
    """An expert whose lip embedding is the mouth's brightness per frame and whose audio embedding is the
    loudness per frame's MFCC steps: windows whose mouth opens with the sound score a lower loss than the
    same windows shifted; the gradient reaches the frames and steps on them lower the loss."""
    from s2v.syncnet import SyncNet, SyncNetConfig

    class Envelope(SyncNet):
        def embed_video(self, x):  # (B, 3, 5, S, S) 0-255 -> (B, 5): mean brightness of each frame
            return x.mean((1, 3, 4)) / 255

        def embed_audio(self, x):  # (B, 1, 13, 20) -> (B, 5): is c0 high in each frame's 4 steps
            return (x[:, 0, 0, :20].reshape(len(x), 5, 4).mean(-1) > 0).float()

    expert = Envelope(SyncNetConfig(image_size=64, width=0.125, embed_dim=8, region="lower", bgr=False)).eval()
    g = torch.Generator().manual_seed(0)
    loud = (torch.rand(4, 8, 5, generator=g) > 0.5).float()  # (B, K, 5): candidates' loudness per frame
    loud[:, 0] = torch.tensor([1.0, 0, 1, 0, 1])  # the in-sync window: distinct from every shifted one
    loud[:, 1:, 0] = 0
    audio = (loud.repeat_interleave(4, -1) * 2 - 1)[:, :, None, None].expand(4, 8, 1, 13, 20).clone()

    def lips(pattern):  # (B, 5) in {0, 1} -> (B, 5, 3, 32, 32) in [-1, 1]: the mouth open (bright) or not
        return (pattern[:, :, None, None, None] * 2 - 1).expand(-1, -1, 3, 32, 32).clone()

    in_sync, shifted = l_sync_expert(expert, lips(loud[:, 0]), audio), l_sync_expert(expert, lips(loud[:, 1]), audio)
    assert in_sync < shifted
    from s2v.losses import sync_distances

    d = sync_distances(expert, lips(loud[:, 0]), audio)
    assert d.shape == (4, 8) and bool((d.argmin(1) == 0).all())  # the in-sync window is the nearest
    pulled = l_sync_expert(expert, lips(loud[:, 0]), audio, pull=0.5)
    assert torch.isclose(pulled, in_sync + 0.5 * d[:, 0].mean())
    x = torch.zeros(4, 5, 3, 32, 32, requires_grad=True)
    opt = torch.optim.SGD([x], lr=50.0)
    first = l_sync_expert(expert, x, audio)
    for _ in range(20):
        opt.zero_grad()
        l_sync_expert(expert, x, audio).backward()
        opt.step()
    assert x.grad is not None and l_sync_expert(expert, x, audio) < first
    assert x.detach()[:, [0, 2, 4], :, 16:].mean() > x.detach()[:, [1, 3], :, 16:].mean()  # mouth open on the loud frames


def test_stage2_with_the_expert_sync_loss_and_without_d_sync(tiny_prep, tiny_stage1, tmp_path):
    """--lambda-sync-expert trains through a frozen expert (its weights unchanged), --no-d-sync leaves D_sync
    out; windows of 5 frames come with K audio windows, index 0 in sync. --augment: c from degraded copies too."""
    from s2v.syncnet import SyncNet, SyncNetConfig

    torch.manual_seed(0)
    SyncNet(SyncNetConfig(image_size=64, width=0.125, embed_dim=16, region="lower")).save_pretrained(tmp_path / "expert")
    before = SyncNet.from_pretrained(tmp_path / "expert").state_dict()
    out = tmp_path / "s2"
    r = subprocess.run(_cmd(tiny_prep, tiny_stage1, out, "--max-steps", "2", "--context", "1", "--no-d-sync",
                            "--logging-steps", "1",
                            "--lambda-sync-expert", "1", "--sync-expert", str(tmp_path / "expert"), "--sync-batch", "2",
                            "--sync-candidates", "3", "--sync-pull", "0.1", "--augment", "1", "--augment-copies", "2"),
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    final = json.loads((out / "stage2.json").read_text())["metrics"]["final"]
    logged = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in logged] == [1, 2] and all(x["g/sync_expert"] > 0 and x["g/sync_pull"] > 0 for x in logged)
    assert final["sync_expert"] > 0 and "adv_sync" not in final and "sync" not in final and "adv_fr" in final
    after = SyncNet.from_pretrained(tmp_path / "expert").state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    from s2v.data import Prepared, SyncWindows
    from s2v.features import AudioFeatures
    from s2v.targets import load_targets

    ds = SyncWindows(Prepared(tiny_prep), AudioFeatures.load(out / "features"), load_targets(tiny_prep), "train", 1,
                     candidates=3)
    item = ds[0]
    assert item["c"].shape == (5, 3, 16) and item["mfcc"].shape == (3, 1, 13, 20)
    # --augment: two degraded copies' c beside the clean c, ν and μ the clean audio's; an item's c is from any
    from s2v.data import Frames
    from s2v.features import AugmentedFeatures

    aug = AugmentedFeatures.load(out / "features", 2)
    clean, copies = aug.clean, aug.copies
    assert len(copies) == 2 and all(np.array_equal(f.offsets, clean.offsets) for f in copies)
    assert all(np.abs(np.asarray(f.c, np.float32) - np.asarray(clean.c, np.float32)).mean() > 1e-3 for f in copies)
    assert not np.allclose(np.asarray(copies[0].c, np.float32), np.asarray(copies[1].c, np.float32))
    assert np.array_equal(aug.nu, clean.nu) and np.array_equal(aug.mu, clean.mu)
    frames = Frames(Prepared(tiny_prep), aug, load_targets(tiny_prep), "train", 1, 3)
    i, t = frames.index.locate(0)
    fps = frames.data.clips[i]["fps"]
    np.random.seed(0)
    seen = set()
    for _ in range(30):
        c = frames[0]["c"].numpy()
        seen |= {k for k, f in enumerate([clean, *copies]) if np.allclose(c, f.window(i, t, fps, 1))}
    assert seen == {0, 1, 2}
    # --c-norm, switched on for a fine-tuning: the generator keeps the training clips' c statistics and reads
    # every clip's c normalised; a generator made so cannot be fine-tuned without it
    r = subprocess.run(_cmd(tiny_prep, tiny_stage1, tmp_path / "n", "--max-steps", "1", "--context", "1",
                            "--init-generator", str(out), "--c-norm", "mean"), cwd=ROOT, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    g = Generator.from_pretrained(tmp_path / "n" / "generator")
    mean, std = AudioFeatures.load(tmp_path / "n" / "features").stats(Prepared(tiny_prep).split("train"))
    assert g.config.c_norm == "mean" and np.allclose(g.c_mean.numpy(), mean, atol=1e-3) and np.allclose(g.c_std.numpy(), std, atol=1e-3)
    r = subprocess.run(_cmd(tiny_prep, tiny_stage1, tmp_path / "x", "--init-generator", str(tmp_path / "n")),
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode != 0 and "give --c-norm mean" in r.stderr
    r = subprocess.run(_cmd(tiny_prep, tiny_stage1, tmp_path / "x", "--lambda-sync-expert", "1"), cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode != 0 and "--sync-expert" in r.stderr
    r = subprocess.run(_cmd(tiny_prep, tiny_stage1, tmp_path / "x", "--augment", "0.5", "--batches", "device"),
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode != 0 and "--batches device" in r.stderr


def test_stage2_face_pool_decodes_stills_that_need_no_voice(tiny_prep, tiny_stage1, tmp_path):
    """--face-pool: a pool of stills (`faces --stills --traits 3`: the corpus' still of actors drawn as the corpus
    draws them) with their teachers' ν*, μ*; stage 2 decodes them beside the batch and the sync windows (the
    slices of one generator call) under an upper-half L1; it needs ν from the teacher's space."""
    from s2v.corpus.actors import REGIONS
    from s2v.corpus.faces import make_faces, pool_identity
    from s2v.corpus.make import still
    from s2v.syncnet import SyncNet, SyncNetConfig
    from s2v.targets import images, pool_targets
    from s2v.teachers import load_teachers

    pool = tmp_path / "pool"
    make_faces(pool, identities=5, size=32, seed=2, workers=1, progress=False, traits=3, stills=True)
    labels = (pool / "labels.csv").read_text().splitlines()
    assert len(labels) == 1 + 5 and len(list((pool / "images").glob("*.png"))) == 5
    actor = pool_identity(0, 2, traits=3)
    assert 0 <= actor.region < len(REGIONS) and f",{actor.region}" in labels[1]
    pt = pool_targets(pool, tiny_prep.parent / "teachers", 32)
    assert pt["images"].shape == (5, 32, 32, 3) and pt["mu_star"].shape == (5, 6)
    assert np.abs(pt["images"][0].astype(int) - still(actor, 32).astype(int)).max() <= 1  # (png round trip)
    t_id, _ = load_teachers(tiny_prep.parent / "teachers")
    with torch.no_grad():
        assert np.allclose(pt["nu_star"], t_id.embed(images(pt["images"], "cpu")).numpy(), atol=1e-5)
    assert not np.allclose(pt["nu_star"][0], pt["nu_star"][1])  # each identity its own ν*
    torch.manual_seed(0)
    SyncNet(SyncNetConfig(image_size=64, width=0.125, embed_dim=16, region="lower")).save_pretrained(tmp_path / "expert")
    out = tmp_path / "s2"
    r = subprocess.run(_cmd(tiny_prep, tiny_stage1, out, "--max-steps", "2", "--context", "1", "--nu-source", "mix",
                            "--face-pool", str(pool), "--pool-batch", "3", "--logging-steps", "1", "--no-d-sync",
                            "--lambda-sync-expert", "1", "--sync-expert", str(tmp_path / "expert"), "--sync-batch", "2",
                            "--sync-candidates", "3"), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "face pool: 5 stills" in r.stdout + r.stderr
    logged = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert all(x["g/pool"] > 0 and x["g/sync_expert"] > 0 for x in logged)
    r = subprocess.run(_cmd(tiny_prep, tiny_stage1, tmp_path / "x", "--face-pool", str(pool)), cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode != 0 and "--nu-source teacher or mix" in r.stderr


def test_generator_nu_norm_puts_teacher_and_student_in_one_space():
    """With nu_norm the generator ignores a shift and a scale of ν (what the student's softmax-matched
    logits differ from the teacher's ν* by); without it (the paper's form) it does not."""
    from s2v.generator import Generator, GeneratorConfig

    torch.manual_seed(0)
    c, mu, nu = torch.randn(2, 1, 16), torch.randn(2, 6), torch.rand(2, 32)
    for norm in (True, False):
        g = Generator(GeneratorConfig(size=32, c_dim=16, nu_dim=32, base=32, nu_norm=norm)).eval()
        same = torch.allclose(g(c, nu, mu)[0], g(c, 3 * nu - 1.5, mu)[0], atol=1e-5)
        assert same == norm


def test_generator_c_norm_reads_how_c_moves_within_the_clip(tmp_path):
    """c_norm "mean": a clip's c shifted as a whole (dimension by dimension) gives the same frames, and every clip
    reaches the generator with the training voices' mean; "standard": also scaled as a whole, with their SD too;
    without it (the paper) neither."""
    from s2v.generator import Generator, GeneratorConfig, clip_normalise, generate_clip

    torch.manual_seed(0)
    c, mu, nu = torch.randn(40, 16), torch.randn(6), torch.rand(32)
    shift, scale = torch.randn(16), 1 + torch.rand(16)
    mean, std = torch.randn(16), torch.rand(16) + 0.5
    x = clip_normalise(c * scale + shift, mean, std)
    assert torch.allclose(x.mean(0), mean, atol=1e-4) and torch.allclose(x.std(0, unbiased=False), std, atol=1e-4)
    y = clip_normalise(c + shift, mean)
    assert torch.allclose(y.mean(0), mean, atol=1e-4) and torch.allclose(y - y.mean(0), c - c.mean(0), atol=1e-5)
    for norm, same_under in ((None, ()), ("mean", ("shift",)), ("standard", ("shift", "scale"))):
        g = Generator(GeneratorConfig(size=32, c_dim=16, nu_dim=32, base=32, context=1, c_norm=norm)).eval()
        with torch.no_grad():
            g.audio[0].weight.mul_(20)  # an untrained generator hardly reads c
        if norm:
            g.set_c_stats(mean, std)
        for name, moved in (("shift", c + shift), ("scale", c * scale)):
            assert torch.allclose(g.heard(c), g.heard(moved), atol=1e-4) == (name in same_under)
            diff = (generate_clip(g, c, nu, mu, 10, 30) - generate_clip(g, moved, nu, mu, 10, 30)).abs().max()
            assert (diff < 1e-5) == (name in same_under), (norm, name, diff)
    with pytest.raises(ValueError, match="c_norm"):
        GeneratorConfig(c_norm="clip")
    Generator(GeneratorConfig(size=32, c_dim=16, nu_dim=32, base=32)).save_pretrained(tmp_path / "plain")
    assert not hasattr(Generator.from_pretrained(tmp_path / "plain"), "c_mean")
    g = Generator(GeneratorConfig(size=32, c_dim=16, nu_dim=32, base=32, c_norm="mean"))
    g.set_c_stats(mean, std)
    g.save_pretrained(tmp_path / "norm")
    back = Generator.from_pretrained(tmp_path / "norm")
    assert back.config.c_norm == "mean" and torch.allclose(back.c_mean, mean) and torch.allclose(back.c_std, std)


def test_stage2_survives_sigkill_and_resumes(tiny_prep, tiny_stage1, tmp_path):
    """Killed with SIGKILL mid-run, it resumes from the last complete checkpoint at the saved step,
    with the optimizer states; a half-written checkpoint never counts as the latest."""
    from s2v.training import latest_checkpoint

    out = tmp_path / "s2"
    args = _cmd(tiny_prep, tiny_stage1, out, "--max-steps", "400", "--checkpointing-steps", "3",
                "--sample-steps", "1000")
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and latest_checkpoint(out) is None:
        time.sleep(0.5)
    time.sleep(2.0)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    # a crash in the middle of writing one leaves only a temporary folder behind
    (out / ".tmp-checkpoint-999").mkdir()
    last = latest_checkpoint(out)
    assert last is not None and last.name != ".tmp-checkpoint-999"
    saved = json.loads((last / "s2v_step.json").read_text())["step"]
    assert saved % 3 == 0 and saved > 0
    opt_files = sorted(p.name for p in last.iterdir() if p.name.startswith("optimizer"))
    assert len(opt_files) == 4  # G, D_ID, D_fr, D_sync
    r = subprocess.run(_cmd(tiny_prep, tiny_stage1, out, "--max-steps", str(saved + 2), "--checkpointing-steps", "3",
                            "--resume-from-checkpoint", "latest"), cwd=ROOT, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"at step {saved}" in r.stdout + r.stderr
    assert json.loads((out / "stage2.json").read_text())["metrics"]["steps"] == saved + 2
    # a finished run resumed again (as a rerun of the recipe does) has nothing left to do: it exits cleanly
    r = subprocess.run(_cmd(tiny_prep, tiny_stage1, out, "--max-steps", str(saved + 2), "--checkpointing-steps", "3",
                            "--resume-from-checkpoint", "latest"), cwd=ROOT, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads((out / "stage2.json").read_text())["metrics"]["steps"] == saved + 2


def test_caches_are_stamped_and_rebuilt_when_their_makers_change(tiny_prep, tiny_model, tmp_path, capsys):
    """The stage-1 feature cache and the teacher targets record the weights that made them: the same makers
    reuse them; other ones rebuild the features (said once) and make ensure_targets' check fail loudly."""
    import shutil

    from s2v.features import STAGE1_PARTS, AudioFeatures
    from s2v.modeling import fingerprint
    from s2v.students import Students
    from s2v.targets import stale_targets

    a, b = tiny_model / "stage1", tmp_path / "stage1b"
    shutil.copytree(a, b)
    st = Students.from_pretrained(b / "students")
    with torch.no_grad():
        for p in st.parameters():
            p.add_(0.1)
    st.save_pretrained(b / "students")
    out = tmp_path / "features"
    f1 = AudioFeatures.build(tiny_prep, a, out, progress=False)
    stamp = (out / "c.npy").stat().st_mtime_ns
    AudioFeatures.build(tiny_prep, a, out, progress=False)
    assert (out / "c.npy").stat().st_mtime_ns == stamp  # same stage 1: reused
    f2 = AudioFeatures.build(tiny_prep, b, out, progress=False)
    assert "rebuilding" in capsys.readouterr().err
    assert json.loads((out / "features.json").read_text())["stage1_revision"] == fingerprint(b, STAGE1_PARTS)
    assert not np.allclose(f1.nu, f2.nu)
    # targets: made by the fixture's teachers; a changed teacher makes them stale, with the reason
    teachers = tiny_prep.parent / "teachers"
    assert stale_targets(tiny_prep, teachers) is None
    other = tmp_path / "teachers"
    shutil.copytree(teachers, other)
    (other / "identity" / "model.safetensors").write_bytes((other / "identity" / "model.safetensors").read_bytes()
                                                           + b" ")
    assert "made by teachers" in stale_targets(tiny_prep, other)


def test_stage2_in_two_processes_stays_in_step_and_resumes(tiny_prep, tiny_stage1, tmp_path):
    """Two processes on the CPU (`accelerate launch --multi_gpu --num_processes 2` with no GPU visible: gloo):
    after training the two ranks hold the same parameters (G and D), one process writes checkpoints and pushes (an offline Hub is warned about once, not twice),
    each rank's RNG state is saved, and a 2-process run killed with SIGKILL resumes at its saved step."""
    from s2v.training import latest_checkpoint

    def cmd(out, *extra):
        c = _cmd(tiny_prep, tiny_stage1, out, "--sample-steps", "1000", "--push-to-hub", "--hub-model-id",
                 "nobody/s2v-two-ranks", *extra)
        i = c.index("--cpu")  # accelerate's --cpu runs one process whatever --num_processes says: torchrun it
        return c[:i] + ["--multi_gpu", "--num_processes", "2", "--num_cpu_threads_per_process", "1"] + c[i + 3:]

    # no GPU visible: each process falls back to the CPU and torch.distributed's gloo backend
    env = {**os.environ, "S2V_RANK_DIGESTS": "1", "HF_HUB_OFFLINE": "1", "HF_TOKEN": "", "CUDA_VISIBLE_DEVICES": "",
           "ACCELERATE_USE_CPU": "true"}
    out = tmp_path / "two"
    r = subprocess.run(cmd(out, "--max-steps", "4", "--checkpointing-steps", "2"), cwd=ROOT, capture_output=True,
                       text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    ranks = [json.loads((out / "rank-digests" / f"rank{k}.json").read_text()) for k in (0, 1)]
    assert ranks[0]["step"] == ranks[1]["step"] == 4 and len(ranks[0]["models"]) == 2  # G, D
    assert ranks[0]["models"] == ranks[1]["models"]
    assert r.stderr.count("Hub push to nobody/s2v-two-ranks failed") == 1
    last = latest_checkpoint(out)
    assert last.name == "checkpoint-4" and {"random_states_0.pkl", "random_states_1.pkl"} <= {p.name for p in last.iterdir()}
    assert (out / "generator" / "model.safetensors").exists() and not list(out.glob(".tmp-checkpoint-*"))
    # killed mid-run, both processes at once, then resumed with two processes
    out = tmp_path / "killed"
    proc = subprocess.Popen(cmd(out, "--max-steps", "400", "--checkpointing-steps", "2"), cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and latest_checkpoint(out) is None:
        time.sleep(0.5)
    time.sleep(1.0)
    import psutil

    tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]  # torchrun's workers too
    for p in tree:
        p.kill()
    psutil.wait_procs(tree, timeout=60)
    saved = json.loads((latest_checkpoint(out) / "s2v_step.json").read_text())["step"]
    assert saved < 400
    r = subprocess.run(cmd(out, "--max-steps", str(saved + 2), "--checkpointing-steps", "2",
                           "--resume-from-checkpoint", "latest"), cwd=ROOT, capture_output=True, text=True, timeout=600,
                       env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"at step {saved}" in r.stdout + r.stderr
    ranks = [json.loads((out / "rank-digests" / f"rank{k}.json").read_text()) for k in (0, 1)]
    assert ranks[0]["step"] == ranks[1]["step"] == saved + 2 and ranks[0]["models"] == ranks[1]["models"]
