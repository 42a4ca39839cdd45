"""Recording conditions (s2v.degrade) and the real-voice benchmark's fetching and figures."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from s2v import degrade as D
from s2v.audio import SAMPLE_RATE, load_audio, write_wav

from conftest import load_benchmark

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    return load_benchmark("real_voices")


def _voice(seconds=1.5, f0=150.0):
    """A voiced, syllable-rate modulated harmonic signal with a gliding pitch and energy up to 6 kHz."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.2 * np.sin(2 * np.pi * 0.7 * t))) / SAMPLE_RATE
    x = sum(np.sin(k * phase) / k for k in range(1, 40) if f0 * k < 5000)
    return (0.3 * x / np.abs(x).max() * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t))).astype(np.float32)


def test_noise_has_the_asked_snr_and_band_limit_removes_the_top():
    w, rng = _voice(), np.random.default_rng(0)
    for snr in (5.0, 20.0):
        n = D.add_noise(w, snr, rng) - w
        assert 10 * np.log10(np.mean(w ** 2) / np.mean(n ** 2)) == pytest.approx(snr, abs=0.01)
    b = D.band_limit(w, 8000)
    f = np.fft.rfftfreq(len(w), 1 / SAMPLE_RATE)

    def top(x):
        s = np.abs(np.fft.rfft(x)) ** 2
        return s[f > 4100].sum() / s.sum()

    assert b.shape == w.shape and top(w) > 3e-3 and top(b) < top(w) / 20


def test_reverb_leaves_a_tail_and_codecs_keep_length_and_timing():
    rng = np.random.default_rng(0)
    click = np.zeros(SAMPLE_RATE, np.float32)
    click[1000] = 0.5
    wet = D.reverb(click, 0.5, rng)
    tail = slice(1000 + int(0.05 * SAMPLE_RATE), 1000 + int(0.3 * SAMPLE_RATE))
    assert np.abs(click[tail]).max() == 0 and np.sqrt(np.mean(wet[tail] ** 2)) > 1e-3
    # decays: the late tail is quieter than the early one (RT60 0.5 s: -60 dB after 0.5 s)
    early, late = wet[1100:1900], wet[1000 + 6000:1000 + 6800]
    assert np.mean(late ** 2) < np.mean(early ** 2) * 0.05
    w = _voice()
    for name in D.CODECS:
        y = D.codec(w, name)
        assert y.shape == w.shape
        lag = np.argmax([np.dot(w[2000:14000], y[2000 + k:14000 + k]) for k in range(-400, 401)]) - 400
        assert abs(lag) <= 4, (name, lag)  # the codec's delay (tens of ms) is taken out
    assert D.gain(w, 40).max() <= 1.0 and np.allclose(D.gain(w, -20), w * 0.1, atol=1e-6)
    for f in D.CONDITIONS.values():
        assert f(w, rng).shape == w.shape


def test_pitch_shift_moves_the_voice_and_keeps_its_timing():
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    env = (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t)).astype(np.float32)  # syllables at 4 Hz
    w = (0.3 * env * sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 6))).astype(np.float32)
    f = np.fft.rfftfreq(len(w), 1 / SAMPLE_RATE)

    def f0(x):  # the strongest partial below 400 Hz
        s = np.abs(np.fft.rfft(x * np.hanning(len(x))))
        return f[f < 400][np.argmax(s[f < 400])]

    for st, want in ((4, 150 * 2 ** (4 / 12)), (-4, 150 * 2 ** (-4 / 12))):
        y = D.pitch_shift(w, st)
        assert y.shape == w.shape and f0(y) == pytest.approx(want, rel=0.03)
        mid = slice(2000, -2000)  # the syllable envelope (timing) kept: |y| follows env
        e = np.convolve(np.abs(y), np.ones(400) / 400, "same")[mid]
        assert np.corrcoef(e, env[mid])[0, 1] > 0.9
    assert np.array_equal(D.pitch_shift(w, 0), w)
    rng = np.random.default_rng(0)
    shifted = [f0(D.augment(w, rng, p=0, gain_db=0, semitones=4)) for _ in range(6)]
    assert max(shifted) > 160 and min(shifted) < 140  # ±4 semitones drawn both ways
    assert all(150 * 2 ** (-4.2 / 12) <= x <= 150 * 2 ** (4.2 / 12) for x in shifted)


def test_fetch_joins_files_and_cuts_segments(tmp_path, monkeypatch):
    pkg = tmp_path / "site" / "fakevoices"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    a, b = _voice(1.0, 120), _voice(2.0, 220)
    write_wav(pkg / "a.wav", a)
    write_wav(pkg / "b.wav", b)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    manifest = {"sources": {"fv": {"kind": "python", "package": "fakevoices"}},
                "speech": [{"id": "ab", "source": "fv", "member": ["a.wav", "b.wav"]},
                           {"id": "cut", "source": "fv", "member": "b.wav", "segments": [[0.5, 1.0], [1.5, 1.75]]}],
                "no_speech": [{"id": "a", "source": "fv", "member": "a.wav"}]}
    clips = _bench().fetch(manifest, tmp_path / "cache")
    gap = int(0.15 * SAMPLE_RATE)
    ab = load_audio(clips["ab"], min_seconds=0)
    assert len(ab) == len(a) + gap + len(b)
    assert np.allclose(ab[:len(a)], a, atol=1e-4) and np.allclose(ab[-len(b):], b, atol=1e-4)
    cut = load_audio(clips["cut"], min_seconds=0)
    assert len(cut) == 8000 + gap + 4000 and np.allclose(cut[:8000], b[8000:16000], atol=1e-4)
    assert set(clips) == {"ab", "cut", "a"}


def test_the_manifest_names_sources_licences_and_sexes():
    m = json.loads((ROOT / "benchmarks" / "real_voices.json").read_text())
    for item in m["speech"] + m["no_speech"]:
        assert item["source"] in m["sources"]
    for s in m["sources"].values():
        assert s["licence"] and s["kind"] in ("python", "pip-sdist", "pip-wheel", "deb")
    sexes = {i["speaker"]: i["sex"] for i in m["speech"]}
    assert set(sexes.values()) == {"Female", "Male"} and len(sexes) >= 6


def test_mouth_motion_and_speech_level():
    bench = _bench()
    still = np.full((10, 64, 64, 3), 128, np.uint8)
    moving = still.copy()
    moving[::2, 45:55, 25:40] = 20  # the mouth opens every other frame
    brows = still.copy()
    brows[::2, 10:20] = 20  # only the upper face moves
    assert bench.mouth_motion(still) == 0 and bench.mouth_motion(brows) == 0 and bench.mouth_motion(moving) > 10
    w = _voice(2.0)
    quiet = np.concatenate([w, np.zeros(SAMPLE_RATE, np.float32)])  # pauses do not lower the level
    assert bench.speech_level(quiet) == pytest.approx(bench.speech_level(w), abs=0.5)
    assert bench.speech_level(w * 0.1) == pytest.approx(bench.speech_level(w) - 20, abs=0.1)


def test_summary_counts_what_it_says():
    bench = _bench()
    sex_of = {"1": "Male", "2": "Female"}

    def run(nearest, pred_sex, top="neutral", p=0.6, mouth=10.0, level=-20.0, actor=None, emo="neutral",
            mouth_lse_c=3.0):
        return {"no_speech": False, "nearest": nearest, "voice_top1": actor or nearest, "pred_sex": pred_sex,
                "emotion_top": top, "emotion_p": p, "mouth": mouth, "level": level, "lse_c": 3.0,
                "real_video_lse_c": 4.0, "mouth_lse_c": mouth_lse_c}

    real = [{"id": "a", "speaker": "A", "sex": "Female", "neutral": True, **run("2", "Female"), "loud_lse_c": 1.0},
            {"id": "b", "speaker": "B", "sex": "Female", "neutral": True, **run("1", "Male", top="fear", p=0.9)},
            {"id": "c", "speaker": "C", "sex": "Male", "neutral": False, **run("1", "Male", mouth=5.0)},
            {"id": "d", "speaker": "D", "sex": "Male", "neutral": True, "no_speech": True},
            {"id": "e", "speaker": "E", "sex": "Female", "neutral": True,  # unfamiliar: flat read-out, model says fear
             **run("1", "Female", top="uncertain", p=1 / 6), "uncertain": True, "raw_top": "fear", "raw_p": 0.9}]
    corpus = [{"clip": "x", "actor": "1", "sex": "Male", "emotion_label": "neutral", "loud_lse_c": 4.0,
               "runs": {"clean": run("1", "Male", level=-20, mouth=10.0), "-10 dB": run("1", "Male", level=-30, mouth=10.0),
                        "+10 dB": run("1", "Male", top="anger", level=-10, mouth=10.0),
                        "noise": run("2", "Female", actor="2", mouth_lse_c=1.5)}}]
    nosp = [{"id": "n", "what": "noise", "no_speech": True}]
    s = bench.summarise(real, corpus, nosp, sex_of)["summary"]
    r = s["real"]
    assert r["clips_with_speech"] == 4 and r["face_sex_judge"]["mean"] == pytest.approx(3 / 4)
    assert r["distinct_faces"] == 2 and r["most_common_face"] == "1"
    assert r["most_common_face_speaker_share"] == pytest.approx(3 / 4)
    assert r["neutral_ok"]["mean"] == pytest.approx(2 / 3) and r["neutral_clips"] == 3
    assert r["neutral_ok_model"]["mean"] == pytest.approx(1 / 3)  # what the students said before the check
    assert r["mouth_ratio"]["mean"] == pytest.approx((1 + 1 + 0.5 + 1) / 4)
    # generated clips: real / corpus LSE-C 1.0; lips that follow the loudness: 1.0 / 4.0 (only clip a has one)
    assert r["lse_c_ratio"] == pytest.approx(1.0) and r["loud_lse_c_ratio"] == pytest.approx(0.25)
    assert r["loud_lse_c_real"]["n"] == 1 and r["lse_c_ratio_of_loud"] == pytest.approx(4.0)
    d = s["degraded"]
    assert d["clean"]["identity_top1"]["mean"] == 1 and d["noise"]["identity_top1"]["mean"] == 0
    assert d["noise"]["sex"]["mean"] == 0 and d["noise"]["real_video_lse_c_share"] == pytest.approx(1.0)
    assert d["noise"]["mouth_lse_c_share"] == pytest.approx(0.5)  # the mouth from noisy audio, against the clean
    assert s["level"]["-10 dB"]["mean"] == 1 and s["level"]["+10 dB"]["mean"] == 0
    assert s["no_speech"] == {"n": True}


def test_familiarity_separates_a_shifted_voice_and_round_trips(tmp_path):
    from s2v.familiar import Familiarity, fit, statistics

    rng = np.random.default_rng(0)

    def clip(shift=0.0):  # (T, H) context vectors of one clip
        return rng.standard_normal((50, 8)) * (1 + 0.1 * rng.standard_normal(8)) + rng.standard_normal(8) * 0.3 + shift

    fam = fit(np.stack([statistics(clip()) for _ in range(200)]), np.stack([statistics(clip()) for _ in range(100)]))
    near = [fam.distance(clip()) for _ in range(100)]
    far = [fam.distance(clip(1.5)) for _ in range(20)]
    assert np.mean(np.array(near) <= fam.threshold) > 0.9 and min(far) > 2 * fam.threshold
    assert fam.confidence(fam.threshold) == 1 and fam.confidence(2 * fam.threshold) == 0
    assert fam.confidence(1.5 * fam.threshold) == pytest.approx(0.5)
    fam.save(tmp_path / "f")
    again = Familiarity.load(tmp_path / "f")
    c = clip(0.5)
    assert again.distance(c) == pytest.approx(fam.distance(c), rel=1e-4) and again.threshold == fam.threshold
    with pytest.raises(ValueError, match="at least 2"):
        fit(np.zeros((1, 16)), np.zeros((3, 16)))


def test_an_unfamiliar_voice_gets_an_uncertain_emotion(tiny_model, tiny_prep, speech_wav, tmp_path):
    import shutil

    import torch

    from s2v.familiar import Familiarity, fit_model, statistics
    from s2v.pipeline import Speech2Video

    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    plain = Speech2Video.from_pretrained(model, device="cpu")
    assert plain.familiarity is None
    base = plain(speech_wav)
    fam = fit_model(tiny_prep, model, progress=False)  # the corpus' own voices: familiar
    pipe = Speech2Video.from_pretrained(model, device="cpu")
    assert pipe.familiarity is not None and pipe.familiarity.threshold == pytest.approx(fam.threshold)
    with torch.no_grad():
        c = pipe.cpc(torch.from_numpy(load_audio(speech_wav))[None])[0][0].numpy()
    pipe.familiarity = Familiarity(statistics(c), np.eye(2 * c.shape[1]), 1.0)  # this very voice: distance 0
    r = pipe(speech_wav)
    assert r.unfamiliar is None and r.emotion == pytest.approx(base.emotion, abs=1e-5)
    pipe.familiarity = Familiarity(statistics(c) + 10, np.eye(2 * c.shape[1]), 1.0)  # far from any voice it knows
    r = pipe(speech_wav)
    assert r.unfamiliar and "uncertain" in r.unfamiliar and r.familiarity > 2
    assert r.voice_emotion == pytest.approx(base.emotion, abs=1e-5)  # the students' own read-out is kept
    assert list(r.emotion.values()) == pytest.approx([1 / 6] * 6, abs=1e-5)
    assert np.allclose(torch.softmax(torch.from_numpy(r.mu), -1).numpy(), 1 / 6, atol=1e-5)  # what was drawn


def test_render_lips_opens_the_jaw_with_the_loudness():
    """The corpus' mouth rule driven by any audio: without phonemes the jaw follows the loudness alone (shut in
    silence, open on the loud syllables); the clip has the corpus' frame count; the same seed, the same frames."""
    from s2v.corpus.faces import pool_identity
    from s2v.corpus.make import CORPUS_FPS, render_lips

    bench = _bench()
    w = _voice(2.0)
    w[SAMPLE_RATE // 2: SAMPLE_RATE] = 0  # half a second of silence
    actor = pool_identity(0, 0)
    frames = render_lips(actor, w, 64, seed=3)
    assert frames.shape == (2 * CORPUS_FPS, 64, 64, 3) and frames.dtype == np.uint8
    assert np.array_equal(frames, render_lips(actor, w, 64, seed=3))
    box = bench.mouth_box(frames).astype(np.float32)
    shut = render_lips(actor, np.zeros_like(w), 64, seed=3)
    opening = np.abs(box - bench.mouth_box(shut).astype(np.float32)).mean((1, 2))
    silent = slice(CORPUS_FPS // 2 + 4, CORPUS_FPS - 4)  # away from the edges (the rule smooths over frames)
    loud = np.r_[4:CORPUS_FPS // 2 - 4, CORPUS_FPS + 4:2 * CORPUS_FPS - 4]
    assert opening[silent].max() < 0.2 * opening[loud].mean() and opening[loud].mean() > 2


def test_augment_draws_conditions_and_gains():
    w, rng = _voice(), np.random.default_rng(0)
    assert np.array_equal(D.augment(w, rng, p=0, gain_db=0), w)
    outs = [D.augment(w, rng, p=1.0, gain_db=10) for _ in range(12)]
    assert all(o.shape == w.shape for o in outs)
    levels = [20 * np.log10(np.sqrt(np.mean(o ** 2))) for o in outs]
    assert np.ptp(levels) > 5  # gains differ
    assert min(np.corrcoef(w, o)[0, 1] for o in outs) < 0.9  # some conditions change the waveform


def test_augment_weights_the_draw_of_conditions():
    """`weights` (train/syncnet.py --reverb-weight): a condition weighted 3 is drawn about 3/6 of the time among
    four (about 1/4 unweighted); weight 0 never draws it."""
    w = _voice()[:1600]
    marks = {k: (lambda w, rng, i=i: np.full_like(w, float(i + 1))) for i, k in enumerate(D.CONDITIONS)}

    def share(weights, name="reverb", n=600):
        rng = np.random.default_rng(1)
        outs = [D.augment(w, rng, p=1.0, gain_db=0, conditions=marks, weights=weights)[0] for _ in range(n)]
        return np.mean(np.array(outs) == list(D.CONDITIONS).index(name) + 1)

    assert abs(share(None) - 0.25) < 0.06
    assert abs(share({"reverb": 3}) - 0.5) < 0.06
    assert share({"reverb": 0}) == 0 and abs(share({"reverb": 0}, "noise") - 1 / 3) < 0.06


def test_dereverb_clears_the_gaps_a_room_fills_and_leaves_dry_speech_alone():
    """s2v.dereverb (WPE, the sync expert's front end): syllables 0.2 s apart in s2v.degrade's room fill the
    pauses between them with their tail; dereverberated, the pauses are much quieter again (at least 5 dB
    in every room drawn), and dry speech comes out as it went in."""
    from s2v.dereverb import dereverb

    t = np.arange(3 * SAMPLE_RATE) / SAMPLE_RATE
    on = np.floor(t / 0.2) % 2 == 0
    dry = (_voice(3.0) * on).astype(np.float32)
    gaps, bursts = ~on & (t > 0.5) & (t % 0.2 > 0.05), on & (t > 0.5)

    def gap_db(x):
        return 10 * np.log10(np.mean(x[gaps] ** 2) / np.mean(x[bursts] ** 2))

    for seed in range(3):
        wet = D.reverb(dry, 0.6, np.random.default_rng(seed))
        out = dereverb(wet)
        assert out.shape == wet.shape and out.dtype == np.float32
        assert np.abs(out).max() == pytest.approx(np.abs(wet).max(), rel=1e-4)  # the input's peak level
        assert gap_db(wet) > -15 and gap_db(out) < gap_db(wet) - 5, (seed, gap_db(wet), gap_db(out))
    assert np.corrcoef(dereverb(dry), dry)[0, 1] > 0.999
    assert np.array_equal(dereverb(np.zeros(4000, np.float32)), np.zeros(4000, np.float32))
    assert len(dereverb(dry[:300])) == 300  # shorter than one STFT frame: as it is
