"""Evaluation: the metrics against known values, the sync protocol, the SyncNet import, a tiny run."""
import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from s2v.data import Prepared
from s2v.labels import AGE_GROUPS
from s2v.evaluate import psnr, ssim
from s2v.syncnet import (SyncNet, SyncNetConfig, import_syncnet_v2, mfcc, mfcc_start, offset_distances,
                         sync_scores)

from conftest import load_benchmark  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def test_ssim_and_psnr_known_values():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    assert ssim(a, a) == pytest.approx(1.0)
    assert psnr(a, a) == math.inf
    b = np.clip(a.astype(int) + 10, 0, 255).astype(np.uint8)
    flat = np.full((32, 32, 3), 100, np.uint8)
    assert psnr(flat, flat + 10) == pytest.approx(20 * math.log10(255 / 10))
    noisy = np.clip(a + rng.normal(0, 40, a.shape), 0, 255).astype(np.uint8)
    assert ssim(a, b) > ssim(a, noisy)  # a brightness shift keeps structure, noise does not
    assert psnr(a, b) > psnr(a, noisy)
    with pytest.raises(ValueError):
        ssim(a, a[:2])


def test_mfcc_frames_and_windows():
    audio = np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32)
    m = mfcc(audio)
    assert m.shape == (13, 1 + math.ceil((16000 - 400) / 160))
    assert np.isfinite(mfcc(np.zeros(800, np.float32))).all()  # silence: log of eps, not -inf
    assert [mfcc_start(f, 25) for f in range(3)] == [0, 4, 8]  # syncnet_python's 4 steps per frame
    assert [mfcc_start(f, 30) for f in (0, 3, 6)] == [0, 10, 20]


def test_offset_distances_find_a_shift():
    """Lip embeddings equal to the audio embeddings `shift` windows later: the protocol finds it."""
    g = torch.Generator().manual_seed(0)
    audio = torch.randn(60, 16, generator=g)
    for shift in (-4, 0, 3):
        video = torch.stack([audio[min(max(t + shift, 0), 59)] for t in range(60)])
        d = offset_distances(video, audio, vshift=15)
        k = int(torch.argmin(d))
        assert k - 15 == shift
        assert d[k] < d.median()


def test_sync_scores_on_a_clip_and_shifted():
    """The full protocol (frames + audio -> LSE-C, LSE-D, offset) with a net whose lip embedding is the
    mouth's brightness over the window and whose audio embedding is the energy over its MFCC window: a
    clip whose mouth follows the audio envelope is in sync, and shifting the video moves the offset."""

    fps, n = 25, 60
    rng = np.random.default_rng(1)
    loud = rng.random(n) > 0.5
    audio = np.concatenate([rng.normal(0, 0.3 if on else 1e-4, 640) for on in loud]).astype(np.float32)
    c0 = mfcc(audio)[0]
    thr = (c0.max() + c0.min()) / 2

    class Envelope(SyncNet):
        def embed_video(self, x):  # (B, 3, 5, S, S) -> (B, 5): is the lower half bright, per frame
            return (x[:, :, :, x.shape[-2] // 2:].mean((1, 3, 4)) > 128).float()

        def embed_audio(self, x):  # (B, 1, 13, 20) -> (B, 5): is c0 (log energy) high, per frame's 4 steps
            return (x[:, 0, 0, :20].reshape(len(x), 5, 4).mean(-1) > thr).float()

    net = Envelope(SyncNetConfig(image_size=64, width=0.125, embed_dim=8, region="face", bgr=False))
    frames = np.zeros((n, 64, 64, 3), np.uint8)
    frames[loud, 32:] = 255
    s = sync_scores(net, frames, audio, fps)
    assert s["offset"] == 0 and s["lse_c"] > 0
    from s2v.syncnet import embed_audio_clip, embed_video_clip  # precomputed sides give the same scores

    ve = embed_video_clip(net, frames)
    for kw in ({"video_embedding": ve}, {"audio_embedding": embed_audio_clip(net, audio, fps, len(ve))}):
        t = sync_scores(net, frames if "audio_embedding" in kw else None, audio, fps, **kw)
        assert (t["offset"], t["lse_c"], t["lse_d"]) == (s["offset"], s["lse_c"], s["lse_d"])
    late = np.concatenate([frames[:1].repeat(3, 0), frames[:-3]])  # the video lags the audio by 3 frames
    assert sync_scores(net, late, audio, fps)["offset"] == 3


def test_import_syncnet_v2_layout(tmp_path):
    """A state dict with syncnet_python's names and shapes (no num_batches_tracked, as the 2017 file)."""
    torch.manual_seed(0)
    ref = SyncNet()
    state = {k: v for k, v in ref.state_dict().items() if not k.endswith("num_batches_tracked")}
    published = {"netcnnaud.0.weight": (64, 1, 3, 3), "netcnnaud.18.weight": (512, 256, 5, 4),
                 "netfcaud.0.weight": (512, 512), "netfcaud.3.weight": (1024, 512),
                 "netcnnlip.0.weight": (96, 3, 5, 7, 7), "netcnnlip.18.weight": (512, 256, 1, 6, 6),
                 "netfclip.3.weight": (1024, 512), "netcnnlip.19.running_var": (512,)}
    for k, shape in published.items():
        assert tuple(state[k].shape) == shape, k
    torch.save(state, tmp_path / "syncnet_v2.model")
    net = import_syncnet_v2(tmp_path / "syncnet_v2.model")
    ref.eval()
    audio, video = torch.randn(2, 1, 13, 20), torch.rand(2, 3, 5, 224, 224) * 255
    with torch.no_grad():
        assert torch.allclose(net.embed_audio(audio), ref.embed_audio(audio), atol=1e-5)
        assert torch.allclose(net.embed_video(video), ref.embed_video(video), atol=1e-4)
    state["netcnnlip.18.weight"] = state["netcnnlip.18.weight"][:, :, :, :5]
    torch.save(state, tmp_path / "bad.model")
    with pytest.raises(ValueError, match="wrong shape"):
        import_syncnet_v2(tmp_path / "bad.model")


def test_train_syncnet_then_evaluate(tiny_prep, tiny_model, tmp_path, monkeypatch):
    """train/syncnet.py two steps under accelerate, then a tiny end-to-end `python -m s2v.evaluate`."""
    sync = tmp_path / "syncnet"
    r = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "1",
                        str(ROOT / "train" / "syncnet.py"), "--data", str(tiny_prep), "--output-dir", str(sync),
                        "--max-steps", "2", "--batch-size", "4", "--candidates", "3", "--width", "0.125",
                        "--embed-dim", "16", "--num-workers", "0", "--eval-clips", "2", "--min-shift", "1",
                        "--augment", "1", "--dereverb", "--reverb-copies", "1"],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    metrics = json.loads((sync / "metrics.json").read_text())
    assert metrics["steps"] == 2 and "gt_lse_c" in metrics
    # trained on degraded audio (every example, --augment 1): the report scores each recording condition
    assert {f"gt_lse_c_{c}" for c in ("reverb", "noise", "phone", "opus")} <= set(metrics)
    # --dereverb: the WPE front end is part of the saved expert, so every later use of it hears through it
    assert json.loads((sync / "config.json").read_text())["dereverb"] is True
    assert "dereverberated rooms" in r.stderr
    # the copies are cached in the data folder: a second run reads them back instead of running WPE again
    sys.path.insert(0, str(ROOT / "train"))
    import importlib

    import s2v.dereverb

    syncnet_train = importlib.import_module("syncnet")
    data = Prepared(tiny_prep)
    ids = list(map(int, np.load(tiny_prep / "rooms-cache" / "seed0-k1.npz")["ids"]))
    assert ids and set(ids) <= set(data.split("train"))
    made = s2v.dereverb.dereverbed_rooms([data.audio(ids[0])], [7919 * ids[0]], show=False)[0]
    monkeypatch.setattr(s2v.dereverb, "dereverbed_rooms", lambda *a, **k: pytest.fail("WPE ran again"))
    cached = syncnet_train.dereverbed_copies(data, ids, 1, 0, show=False)
    assert set(cached) == set(ids) and np.allclose(cached[ids[0]][0], made, atol=1e-6)
    # benchmarks/sync_rooms.py: each condition's share of clean LSE-C, the front end as saved and switched on
    trained = SyncNet.from_pretrained(sync)
    plain = SyncNet(dataclasses.replace(trained.config, dereverb=False))
    plain.load_state_dict(trained.state_dict())
    plain.save_pretrained(tmp_path / "plain")
    res = load_benchmark("sync_rooms").main(["--data", str(tiny_prep), "--expert", str(sync), "--expert",
                                             str(tmp_path / "plain"), "--front-end", "both", "--clips", "2"])
    got = [(Path(r["expert"]).name, r["front_end"]) for r in res["rows"]]
    assert got == [("syncnet", True), ("plain", False), ("plain", True)]  # saved with it: one row
    assert res["rows"][0]["per_clip"] == res["rows"][2]["per_clip"]  # the same weights, audio and front end
    assert torch.is_grad_enabled()  # the benchmark ran in this process and left autograd as it found it
    for row in res["rows"]:
        assert row["clips"] == 2 and row["clean"] == pytest.approx(np.mean(row["per_clip"]["clean"]), abs=2e-3)
        for c in ("reverb", "noise", "phone", "opus"):
            want = np.mean(row["per_clip"][c]) / np.mean(row["per_clip"]["clean"])
            assert row[c] == pytest.approx(want, abs=2e-3) and row[f"{c}_se"] >= 0
    # a held-out identity judge with attribute classifiers fitted on a small labelled face pool
    import shutil

    from s2v.corpus.faces import make_faces

    judge = tmp_path / "judge"
    shutil.copytree(tiny_prep.parent / "teachers" / "identity", judge / "identity")
    make_faces(tmp_path / "faces", identities=10, per_identity=2, size=32, seed=1, workers=1, progress=False)
    r = subprocess.run([sys.executable, "-m", "s2v.attributes", "--faces", str(tmp_path / "faces"), "--judge",
                        str(judge), "--device", "cpu"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert set(json.loads(r.stdout)["accuracy_heldout"]) == {"sex", "age_group"}
    out = tmp_path / "eval"
    r = subprocess.run([sys.executable, "-m", "s2v.evaluate", "--data", str(tiny_prep), "--model", str(tiny_model),
                        "--teachers", str(tiny_prep.parent / "teachers"), "--syncnet", str(sync), "--out", str(out),
                        "--limit", "2", "--baselines", "--device", "cpu",
                        "--emotion-judge", str(tiny_prep.parent / "teachers" / "emotion"),
                        "--identity-judge", str(judge), "--sync-judge", str(sync)],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads((out / "results.json").read_text())
    rows = {(x["split"], x["method"]): x for x in res["rows"]}
    assert {m for _, m in rows} == {"ground-truth", "s2v", "s2v-raw-nu", "reference", "mismatch", "mean-face",
                                    "random-seen"}
    for (split, m), x in rows.items():
        assert x["sex_heldout"] is not None and x["age_group_heldout"] is not None
        if split == "unseen":  # two unseen actors: the true one and one other
            assert x["candidates"] == 2 and x["r_at_1_chance"] == 0.5 and 0 <= x["match_1to2"] <= 1
            assert x["r_at_1"] <= x["r_at_5"] == 1.0 and x["match_1to2"] == x["r_at_1"]  # with 2, the same task
        else:
            assert 0 <= x["identity_top1_heldout"] <= 1 and x["identity_chance"] == pytest.approx(1 / 3, abs=1e-3)
        assert x["clips"] >= 1 and x["lse_d"] is not None
        # the held-out sync judge here is the expert itself, so its figures must be the same
        assert x["lse_c_heldout"] == x["lse_c"] and x["in_sync_heldout"] == x["in_sync"]
        assert (x["ssim"] is None) == (m == "ground-truth")
        if m != "ground-truth":
            assert 0 <= x["ssim"] <= 1 and x["psnr"] > 0
        # the held-out judge here is T_emo itself, so it must agree clip for clip
        assert x["emotion_agreement_heldout"] == x["emotion_agreement"] is not None
    assert "held-out judge" in (out / "results.md").read_text() and "1:2 match" in (out / "results.md").read_text()
    assert "| method |" in (out / "results.md").read_text()
    assert (out / "strip.png").stat().st_size > 0 and (out / "faces.png").stat().st_size > 0
    # the faces sheet: a row per method of the unseen split that draws a face, `reference` among them
    from PIL import Image

    from s2v.evaluate import FACE_METHODS

    drawn = [m for m in FACE_METHODS if any(x["split"] == "unseen" and x["method"] == m for x in res["rows"])]
    assert "reference" in drawn and "mean-face" in drawn
    assert Image.open(out / "faces.png").size[1] == 14 + Prepared(tiny_prep).size * len(drawn)
    _batched_scoring_matches_one_by_one(tiny_prep, tiny_model, judge, sync)


def _batched_scoring_matches_one_by_one(prep, model, judge, sync):
    """The evaluation's batched path (all methods of a clip generated in shared batches, judged in one batch,
    the audio embedded once per sync expert) gives each video what scoring it alone gives."""
    from s2v.evaluate import Judges
    from s2v.generator import generate_clip, generate_clips
    from s2v.pipeline import Speech2Video

    pipe = Speech2Video.from_pretrained(model, device="cpu")
    data = Prepared(prep)
    i = data.split("test")[0]
    clip, audio = data.clips[i], data.audio(i)
    n, fps = clip["n_frames"], clip["fps"]
    c = torch.randn(n * 4 + 8, pipe.generator.config.c_dim)
    nus = [torch.randn(pipe.generator.config.nu_dim) for _ in range(3)]
    mu = torch.softmax(torch.randn(pipe.generator.config.mu_dim), 0)
    together = generate_clips(pipe.generator, c, nus, mu, n, fps, batch=5)  # batches that straddle two videos
    for nu, got in zip(nus, together):
        assert torch.allclose(got, generate_clip(pipe.generator, c, nu, mu, n, fps), atol=1e-5)
    judges = Judges(prep.parent / "teachers", sync, pipe.gallery, "cpu", prep.parent / "teachers" / "emotion",
                    judge, sync)
    from s2v.generator import to_uint8

    # the CPU side of each clip (frames, audio, VAD spans, MFCCs) is the same read ahead in a thread (--prefetch)
    from concurrent.futures import ThreadPoolExecutor

    from s2v.evaluate import cpu_side

    ids = data.split(("test", "unseen"))[:3]
    with ThreadPoolExecutor(1) as pool:
        ahead = list(cpu_side(data, ids, True, True, pool))
    for x, y, j in zip(ahead, cpu_side(data, ids, True, True), ids):
        assert np.array_equal(x["frames"], np.asarray(data.frames(j))) and np.array_equal(x["frames"], y["frames"])
        assert x["spans"] == y["spans"] and np.allclose(x["mfcc"], y["mfcc"]) and np.array_equal(x["audio"], y["audio"])
    assert len(ahead) == 3
    videos = [np.asarray(data.frames(i))] + [to_uint8(v) for v in together]
    many = judges.score_many(videos, audio, fps)
    for v, got in zip(videos, many):
        one = judges.score(v, audio, fps)
        assert set(one) == set(got)
        for key, value in one.items():
            if isinstance(value, float):
                assert got[key] == pytest.approx(value, abs=1e-5), key
            elif isinstance(value, np.ndarray):
                assert np.allclose(got[key], value, atol=1e-5), key
            elif key == "nearest" and got[key] != value:  # a near-tie may flip with batching: both must be best
                from s2v.targets import images

                pick = np.linspace(0, len(v) - 1, min(8, len(v))).round().astype(int)
                with torch.no_grad():
                    emb = judges.t_id.embed(images(v[pick], "cpu")).mean(0).numpy()
                sim = dict(zip(judges.gallery.ids, judges.gallery.similarity(emb[None])[0]))
                assert abs(sim[got[key]] - sim[value]) < 1e-4, (key, sim)
            else:
                assert got[key] == value, key


def test_ssim_is_skimages():
    """ssim_frames (torch, any device) against skimage's structural_similarity with the paper-standard settings,
    on natural-ish frames, noise, a darkening and flat regions."""
    from skimage.metrics import structural_similarity

    from s2v.evaluate import ssim_frames

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:40, :48]
    base = np.stack([(np.sin(xx / 5 + k) * 60 + yy * 2 + 60) for k in range(3)], -1)
    a = np.clip(base[None] + rng.normal(0, 5, (4, 40, 48, 3)), 0, 255).astype(np.uint8)
    cases = [np.clip(a + rng.normal(0, 30, a.shape), 0, 255).astype(np.uint8), a // 2, np.full_like(a, 200), a]
    for b in cases:
        want = [structural_similarity(x, y, channel_axis=-1, data_range=255, gaussian_weights=True, sigma=1.5,
                                      use_sample_covariance=False) for x, y in zip(a, b)]
        assert np.allclose(ssim_frames(a, b).numpy(), want, atol=1e-6)
    assert ssim(a[0], cases[0][0]) == pytest.approx(structural_similarity(
        a[0], cases[0][0], channel_axis=-1, data_range=255, gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False), abs=1e-6)


def test_open_set_scores_known_answers():
    """Queries that are their speakers' stills score 1; the most dissimilar still scores 0; a query
    halfway between two stills ties them (half a point); chance levels follow the candidate count."""
    from s2v.openset import match_scores

    cands = np.eye(4)
    perfect = match_scores(cands, np.arange(4), cands)
    assert perfect["match_1to2"] == perfect["r_at_1"] == perfect["r_at_5"] == 1.0
    assert perfect["r_at_1_chance"] == 0.25 and perfect["r_at_5_chance"] == 1.0
    worst = match_scores(-cands[[0]] + 0.1 * cands[[1]], np.array([0]), cands)  # 0 is the farthest of all four
    assert worst["match_1to2"] == 0.0 and worst["r_at_1"] == 0.0
    tie = match_scores((cands[0] + cands[1])[None], np.array([0]), cands[:2])
    assert tie["match_1to2"] == 0.5 and tie["r_at_1"] == 1.0  # nobody strictly nearer
    with pytest.raises(ValueError):
        match_scores(cands[:1], np.array([0]), cands[:1])


def test_ridge_r2():
    from s2v.linear import ridge_r2

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 8))
    assert ridge_r2(x[:150], x[:150, 2], x[150:], x[150:, 2]) > 0.95  # a feature itself: explained
    assert ridge_r2(x[:150], rng.normal(size=150), x[150:], rng.normal(size=50)) < 0.1  # noise: not


def _pool(root, identities=40, per=4, size=16, seed=0):
    """A labelled pool where sex is which half of the image is lit (top/bottom) and age group the light's level:
    readable through every augmentation (flip, shift, light, blur)."""
    import csv

    import cv2

    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    rows = []
    for i in range(identities):
        sex, age = ("Male", "Female")[i % 2], AGE_GROUPS[(i // 2) % 3]
        for k in range(per):
            img = rng.integers(0, 40, (size, size, 3)).astype(np.float64)
            half = slice(0, size // 2) if sex == "Male" else slice(size // 2, size)
            img[half] += (90, 150, 210)[AGE_GROUPS.index(age)]
            name = f"images/{9001 + i}_{k:03d}.png"
            cv2.imwrite(str(root / name), np.clip(img, 0, 255).astype(np.uint8))
            rows.append({"file": name, "identity": 9001 + i, "sex": sex, "age_group": age})
    with open(root / "labels.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def test_attribute_judge_learns_and_round_trips(tmp_path):
    """The attribute judge learns attributes that a pool's held-out identities show; saved and loaded it gives the
    same probabilities; an older ridge folder is refused with a message; no folder is None."""
    from s2v.attributes import fit_attributes, load_attributes

    _pool(tmp_path / "pool")
    net = fit_attributes(tmp_path / "pool", epochs=15, batch=16, progress=False)
    assert net.accuracy["sex"] >= 0.9 and net.accuracy["age_group"] >= 0.6, net.accuracy
    frames = np.stack([np.full((16, 16, 3), 20, np.uint8)] * 2)
    frames[0, :8] += 150  # lit on top: Male
    frames[1, 8:] += 150
    assert list(net.predict(frames)["sex"]) == ["Male", "Female"]
    net.save_pretrained(tmp_path / "att", extra=net._meta)
    again = load_attributes(tmp_path / "att")
    p, q = net.predict_proba(frames), again.predict_proba(frames)
    assert all(np.allclose(p[k], q[k], atol=1e-6) for k in p) and again.accuracy == net.accuracy
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "attributes.json").write_text("{}")
    with pytest.raises(ValueError, match="train the attribute judge again"):
        load_attributes(tmp_path / "old")
    assert load_attributes(tmp_path / "none") is None


def test_mfcc_matches_python_speech_features():
    """The sync expert's MFCC against python_speech_features 0.6's `mfcc` (stored in tests/fixtures: a chirp
    with noise and silence, scored as syncnet_python scores int16 samples): equal to 1e-5 (float32 output)."""
    ref = np.load(ROOT / "tests" / "fixtures" / "mfcc_psf.npz")
    ours = mfcc(ref["audio"])
    assert ours.shape == ref["mfcc"].T.shape
    assert np.abs(ours - ref["mfcc"].T).max() < 1e-5


def _fit_identity(prep: Path, out: Path, seed: int, steps: int = 150) -> Path:
    """The tiny T_id trained to tell the corpus' actors apart from their frames (an untrained one gives
    every face the same embedding, cosine 1.000), saved as `out`/identity beside a copy of T_emo."""
    import shutil

    from s2v.data import Prepared
    from s2v.targets import images
    from s2v.teachers import IdentityTeacher

    data = Prepared(prep)
    actors = sorted({c["actor"] for c in data.clips})
    x = torch.cat([images(data.frames(i)[::3], "cpu") for i in range(len(data.clips))])
    y = torch.cat([torch.full((len(range(0, c["n_frames"], 3)),), actors.index(c["actor"])) for c in data.clips])
    torch.manual_seed(seed)
    t_id = IdentityTeacher.from_pretrained(prep.parent / "teachers" / "identity")
    t_id.fc8 = torch.nn.Linear(t_id.fc8.in_features, len(actors))
    opt = torch.optim.Adam(t_id.parameters(), 3e-3)
    for _ in range(steps):
        b = torch.randint(len(x), (32,))
        loss = torch.nn.functional.cross_entropy(t_id(x[b]), y[b])
        opt.zero_grad()
        loss.backward()
        opt.step()
    t_id.config = dataclasses.replace(t_id.config, num_classes=len(actors))
    t_id.eval().save_pretrained(out / "identity")
    shutil.copytree(prep.parent / "teachers" / "emotion", out / "emotion")
    return out


def _fit_tiny_generator(prep: Path, model: Path, teachers: Path, out: Path, steps: int = 300) -> Path:
    """A copy of the tiny model whose generator has learnt, by L1 on the seen actors' frames, to draw the
    face that the teacher's ν* of a still names (nu_norm: the evaluation feeds `reference` and `mismatch`
    ν* = T_id(still)), and whose gallery is `teachers`'. The audio side is the model's own CPC, so c is
    what the evaluation gives it."""
    import shutil

    from s2v.data import Prepared
    from s2v.features import AudioFeatures
    from s2v.gallery import Gallery
    from s2v.generator import Generator, context_windows
    from s2v.pipeline import Speech2Video
    from s2v.targets import compute_targets, images
    from s2v.teachers import load_teachers

    shutil.copytree(model, out)
    pipe = Speech2Video.from_pretrained(model, device="cpu")
    t_id, t_emo = load_teachers(teachers)
    data = Prepared(prep)
    shutil.rmtree(out / "stage1" / "gallery")
    Gallery.build(data, compute_targets(prep, t_id, t_emo, k=4, progress=False)).save(out / "stage1" / "gallery")
    seen = [i for i, c in enumerate(data.clips) if c["split"] == "train"]
    cw, nus, frames = [], [], []
    with torch.no_grad():
        for i in seen:
            c = data.clips[i]
            feats = AudioFeatures.compute(pipe.cpc, pipe.students, data.audio(i))[0]
            cw.append(context_windows(torch.from_numpy(feats), c["n_frames"], c["fps"], pipe.generator.config.context))
            nu = t_id.embed(images(data.still(c["actor"])[None], "cpu"))
            nus.append(nu.expand(c["n_frames"], -1))
            frames.append(images(data.frames(i), "cpu") * 2 - 1)
    cw, nus, frames = torch.cat(cw), torch.cat(nus), torch.cat(frames)
    cfg = dataclasses.replace(pipe.generator.config, nu_norm=True)
    torch.manual_seed(0)
    g = Generator(cfg)
    opt = torch.optim.Adam(g.parameters(), 2e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        b = torch.randint(len(cw), (32,), generator=gen)
        loss = (g(cw[b], nus[b], torch.zeros(32, cfg.mu_dim))[0] - frames[b]).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    shutil.rmtree(out / "generator")
    g.save_pretrained(out / "generator")
    return out


def test_reference_beats_mismatch_on_identity(tiny_prep, tiny_model, tmp_path):
    """With a generator that has learnt the seen faces, the evaluation's own-face row (`reference`) is
    recognised as its actor far more often than the other-face row (`mismatch`), by T_id and by the
    held-out judge: the identity columns measure the face drawn, not the clip it came with."""
    from s2v.evaluate import evaluate
    from s2v.syncnet import SyncNet, SyncNetConfig

    teachers = _fit_identity(tiny_prep, tmp_path / "teachers", seed=0)
    judge = _fit_identity(tiny_prep, tmp_path / "judge", seed=1)
    model = _fit_tiny_generator(tiny_prep, tiny_model, teachers, tmp_path / "model")
    sync = tmp_path / "syncnet"
    torch.manual_seed(0)
    SyncNet(SyncNetConfig(image_size=64, width=0.125, embed_dim=16, region="lower", bgr=False)).save_pretrained(sync)
    res = evaluate(tiny_prep, model, tmp_path / "eval", teachers=teachers, syncnet=sync,
                   splits=("test",), baselines=True, device="cpu", progress=False, identity_judge=judge)
    rows = {x["method"]: x for x in res["rows"]}
    for col in ("identity_top1", "identity_top1_heldout"):
        assert rows["reference"][col] >= 0.8, (col, rows["reference"][col])
        assert rows["reference"][col] >= rows["mismatch"][col] + 0.5, (col, rows["reference"][col], rows["mismatch"][col])
