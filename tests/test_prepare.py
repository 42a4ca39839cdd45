"""Preparing clips: CREMA-D and VoxCeleb2 layouts, crops, shards, splits, resume, bad clips, datasets."""
from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
import torch

from s2v.audio import SAMPLE_RATE, ffmpeg_exe, frame_to_sample
from s2v.corpus.__main__ import main as corpus_main
from s2v.corpus.crop import NoFaceError, crop_clip, detect_boxes, smooth_boxes
from s2v.corpus.prepare import prepare
from s2v.data import ClipDataset, FrameDataset, Prepared


@pytest.fixture(scope="module")
def broken_corpus(tiny_corpus, tmp_path_factory):
    """The tiny corpus plus a corrupt flv and an empty wav."""
    root = tmp_path_factory.mktemp("broken")
    shutil.copytree(tiny_corpus, root, dirs_exist_ok=True)
    flvs = sorted((root / "VideoFlash").glob("*.flv"))
    data = flvs[0].read_bytes()
    flvs[0].write_bytes(data[:200] + bytes(len(data) - 200))  # header kept, the rest zeros
    (root / "AudioWAV" / (flvs[1].stem + ".wav")).write_bytes(b"")
    return root, flvs[0].stem, flvs[1].stem


@pytest.fixture(scope="module")
def prepared(broken_corpus, tmp_path_factory):
    root, _, _ = broken_corpus
    out = tmp_path_factory.mktemp("prep")
    report = prepare("crema-d", root, out, size=32, workers=2, clips_per_shard=4, progress=False)
    return out, report


def test_bad_clips_are_skipped_and_counted(prepared, broken_corpus):
    out, report = prepared
    _, corrupt, empty = broken_corpus
    reasons = {s["id"]: s["reason"] for s in report["skipped_clips"]}
    assert reasons == {corrupt: "unreadable video", empty: "empty audio"}
    assert report["clips_ok"] == 30 - 2
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["reasons"] == {"unreadable video": 1, "empty audio": 1}


def test_shards_index_and_splits(prepared):
    out, _ = prepared
    data = Prepared(out)
    assert len(list(out.glob("shard-*.frames.npy"))) == 8  # 30 clips, 4 per shard
    assert data.index["crop"] == "center"  # the synthetic corpus is face-centred
    splits = {c["split"] for c in data.clips}
    unseen = {c["actor"] for c in data.clips if c["split"] == "unseen"}
    assert unseen == {"1004", "1005"}  # from actors.json
    assert splits <= {"train", "val", "test", "unseen"} and "train" in splits
    for i, c in enumerate(data.clips):
        fr, au = data.frames(i), data.audio(i)
        assert fr.shape == (c["n_frames"], 32, 32, 3) and fr.dtype == np.uint8
        assert au.size == frame_to_sample(c["n_frames"], c["fps"]) and au.dtype == np.float32
        assert c["fps"] == 30 and c["emotion"] in ("ANG", "NEU", "SAD")
    assert data.still("1001").shape == (32, 32, 3)


def test_seen_split_is_70_15_15():
    from s2v.corpus.prepare import _assign_splits

    clips = [{"actor": a, "id": f"{a}_{k}"} for a in ("1", "2") for k in range(40)]
    _assign_splits(clips, unseen={"2"}, seed=0)
    seen = [c["split"] for c in clips if c["actor"] == "1"]
    assert (seen.count("train"), seen.count("val"), seen.count("test")) == (28, 6, 6)
    assert all(c["split"] == "unseen" for c in clips if c["actor"] == "2")
    again = [{"actor": "1", "id": f"1_{k}"} for k in range(40)]
    _assign_splits(again, set(), seed=0)
    assert [c["split"] for c in again] == seen  # seeded


def test_resume_skips_finished_shards(prepared, broken_corpus):
    out, _ = prepared
    root, _, _ = broken_corpus
    stamp = (out / "shard-00001.frames.npy").stat().st_mtime_ns
    (out / "shard-00002.json").unlink()  # as if killed during shard 2
    report = prepare("crema-d", root, out, size=32, workers=1, clips_per_shard=4, progress=False)
    assert report["shards_done_now"] == 1 and report["index"]
    assert (out / "shard-00001.frames.npy").stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="other settings"):
        prepare("crema-d", root, out, size=48, workers=1, clips_per_shard=4, progress=False)


def test_split_work_across_processes(tiny_corpus, tmp_path):
    args = ["prepare", "--dataset", "crema-d", "--root", str(tiny_corpus), "--out", str(tmp_path),
            "--size", "32", "--clips-per-shard", "3", "--workers", "1", "--holdout-actors", "1001"]
    assert corpus_main(args + ["--shard", "0/2"]) == 0
    assert not (tmp_path / "index.json").exists()  # shards 1 and 3 are the other process's
    assert corpus_main(args + ["--shard", "1/2"]) == 0
    data = Prepared(tmp_path)
    assert len(data.clips) == 30 and {c["actor"] for c in data.clips if c["split"] == "unseen"} == {"1001", "1004", "1005"}


def test_shard_auto_reads_the_launcher_rank(monkeypatch):
    from s2v.corpus.prepare import _parse_shard

    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert _parse_shard("auto") == (2, 4) and _parse_shard("1/3") == (1, 3) and _parse_shard(None) == (0, 1)
    with pytest.raises(ValueError, match="I/N"):
        _parse_shard("x")
    with pytest.raises(ValueError):
        _parse_shard("3/3")


def test_voxceleb2_layout(tiny_corpus, tmp_path):
    """mp4 at 25 fps with the audio inside, <split>/mp4/<id>/<video>/<n>.mp4; test ids are unseen."""
    flvs = sorted((tiny_corpus / "VideoFlash").glob("*.flv"))[:4]
    for k, flv in enumerate(flvs):
        split, ident = ("dev", "id00012") if k < 3 else ("test", "id00999")
        dst = tmp_path / "vox" / split / "mp4" / ident / f"vid{k % 2}" / f"{k:05d}.mp4"
        dst.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-i", str(flv), "-r", "25", "-c:v", "libx264",
                        "-c:a", "aac", str(dst)], check=True)
    out = tmp_path / "prep"
    report = prepare("voxceleb2", tmp_path / "vox", out, size=32, crop="center", workers=1, progress=False)
    assert report["clips_ok"] == 4
    data = Prepared(out)
    assert {c["fps"] for c in data.clips} == {25}
    assert {c["actor"]: c["split"] == "unseen" for c in data.clips} == {"id00012": False, "id00999": True}
    for i, c in enumerate(data.clips):
        assert data.audio(i).size == c["n_frames"] * SAMPLE_RATE // 25
        assert c["emotion"] == ""
    assert data.labels(0)["emotion"] == -1
    assert "first frame" in data.index["actors"]["id00012"]["still"]


def _moving_astronaut(T=12, H=480, W=560, side=320):
    from skimage.data import astronaut

    import cv2

    face = cv2.resize(astronaut(), (side, side), interpolation=cv2.INTER_AREA)
    frames = np.full((T, H, W, 3), 40, np.uint8)
    offsets = []
    for t in range(T):
        ox, oy = 10 + 8 * t, 60 + int(12 * np.sin(t / 3))
        frames[t, oy:oy + side, ox:ox + side] = face
        offsets.append((ox, oy))
    return frames, np.array(offsets), side


def test_face_detector_follows_a_real_face():
    frames, offsets, side = _moving_astronaut()
    raw = detect_boxes(frames)
    assert raw[:, 3].mean() > 0.3  # the cascade finds the face in a good share of frames
    boxes = smooth_boxes(raw)
    # the astronaut's face sits at a fixed place in her photo: the box must move with the photo
    # (frames where the detector missed keep the last good box, so allow a few frames of lag)
    rel = boxes[:, :2] - offsets
    assert np.all(np.abs(rel - np.median(rel, 0)) < 0.1 * side)
    crops = crop_clip(frames, 32, "detect")
    assert crops.shape == (12, 32, 32, 3)
    # the crops show the same face at the same place while the photo moves across the frame
    crops = crops.astype(float)
    same = [np.corrcoef(c.ravel(), crops[0].ravel())[0, 1] for c in crops]
    centre = crop_clip(frames, 32, "center").astype(float)  # a fixed crop loses the moving face
    fixed = [np.corrcoef(c.ravel(), centre[0].ravel())[0, 1] for c in centre]
    assert min(same) > 0.8 and min(fixed) < 0.6
    with pytest.raises(NoFaceError):
        crop_clip(np.full((3, 100, 100, 3), 128, np.uint8), 32, "detect")


def test_detector_fills_misses_with_last_box():
    boxes = np.array([[0, 0, 0, 0], [10, 20, 30, 1], [0, 0, 0, 0], [0, 0, 0, 0], [16, 20, 30, 1]], float)
    out = smooth_boxes(boxes, sigma=0.01)
    assert np.allclose(out[:, 0], [10, 10, 10, 10, 16])


def test_datasets_with_workers(prepared):
    out, _ = prepared
    clips = ClipDataset(out, "train", max_frames=20)
    item = clips[0]
    start, stop = item["start"], item["start"] + item["frames"].shape[0]
    assert stop - start <= 20 and item["audio"].numel() == frame_to_sample(stop, 30) - frame_to_sample(start, 30)
    frames = FrameDataset(out, ("train", "val", "test", "unseen"), context=0.1)
    assert len(frames) == sum(c["n_frames"] for c in frames.data.clips)
    loader = torch.utils.data.DataLoader(frames, batch_size=16, shuffle=True, num_workers=2)
    seen = 0
    for batch in loader:
        assert batch["frame"].shape[1:] == (32, 32, 3) and batch["audio"].shape[1] == 3200
        seen += batch["frame"].shape[0]
    assert seen == len(frames)
    # the audio window is centred on its frame: frame t of clip i, window from the clip's audio
    item = frames[5]
    audio = frames.data.audio(item["clip"])
    centre = (2 * item["t"] + 1) * SAMPLE_RATE // 60
    lo = centre - 1600
    ref = np.zeros(3200, np.float32)
    ref[max(0, -lo):] = audio[max(lo, 0):centre + 1600]
    assert np.array_equal(item["audio"].numpy(), ref)
