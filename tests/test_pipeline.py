"""Speech2Video and `python -m s2v generate` on a small (untrained) model folder and real speech."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from s2v.audio import AudioError, ffmpeg_exe, load_audio, num_frames
from s2v.pipeline import Speech2Video

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model_dir(tiny_model) -> Path:
    return tiny_model


def test_pipeline_on_real_speech(model_dir, speech_wav, tmp_path):
    pipe = Speech2Video.from_pretrained(model_dir, device="cpu")
    r = pipe(speech_wav)
    wav = load_audio(speech_wav)
    assert r.frames.shape == (num_frames(wav.size, 30), 32, 32, 3) and r.frames.dtype == np.uint8 and r.fps == 30
    assert set(r.emotion) == {"anger", "disgust", "fear", "happy", "neutral", "sad"}
    assert abs(sum(r.emotion.values()) - 1) < 1e-5
    sims = [s for _, s in r.identity]
    assert sorted(a for a, _ in r.identity) == ["1001", "1002", "1003"] and sims == sorted(sims, reverse=True)
    out = r.write_mp4(tmp_path / "clip.mp4", upscale=64)
    info = subprocess.run([ffmpeg_exe(), "-i", str(out)], capture_output=True, text=True).stderr
    assert "Video: h264" in info and "Audio: aac" in info and "64x64" in info
    assert abs(load_audio(out).size - wav.size) < 0.1 * 16000
    # a (rate, array) pair at another rate gives the same number of frames
    from s2v.audio import resample

    r2 = pipe((48000, resample(wav, 16000, 48000)))
    assert len(r2.frames) == len(r.frames)
    # emotion blend: at weight 1 the generator's μ is the chosen emotion; identity swap: the actor's mean ν*
    r3 = pipe(speech_wav, emotion={"happy": 1.0}, emotion_weight=1.0)
    assert torch.softmax(torch.from_numpy(r3.mu), -1)[3] > 0.99 and r3.voice_emotion == r.emotion
    # the read-out shows what was drawn: at weight 0.7, happy holds at least 0.7 of μ; the voice's own is kept
    r5 = pipe(speech_wav, emotion={"happy": 1.0}, emotion_weight=0.7)
    drawn = torch.softmax(torch.from_numpy(r5.mu), -1).numpy()
    assert r5.emotion["happy"] >= 0.7 and np.allclose(list(r5.emotion.values()), drawn, atol=1e-4)
    assert r5.voice_emotion == r.emotion and r.voice_emotion == r.emotion
    r4 = pipe(speech_wav, actor="1001")
    assert np.allclose(r4.nu, pipe.gallery.embeddings[0])
    # by default ν is recalled onto the seen actors; recall=None feeds the voice's ν as the paper does
    raw = Speech2Video.from_pretrained(model_dir, device="cpu", recall=None)(speech_wav)
    assert np.allclose(r.nu, pipe.gallery.recall(raw.nu[None], pipe.recall)[0], atol=1e-5)
    assert not np.allclose(raw.nu, r.nu) and raw.identity == r.identity
    with pytest.raises(ValueError, match="unknown actor"):
        pipe(speech_wav, actor="9999")


def test_pipeline_bad_input(model_dir, speech_wav, tmp_path):
    from s2v.audio import NoSpeechError, load_audio

    pipe = Speech2Video.from_pretrained(model_dir, device="cpu")
    empty = tmp_path / "e.wav"
    empty.write_bytes(b"")
    with pytest.raises(AudioError):
        pipe(empty)
    with pytest.raises(AudioError):
        pipe((16000, np.zeros(16000, np.float32)))  # silent
    speech = np.tile(load_audio(speech_wav), 3)
    r = pipe((16000, speech), max_seconds=1.0)
    assert len(r.frames) == 30 and r.notices and "cut" in r.notices[0]
    # sound without a voice: white noise, and a chord pulsing twice a second, get "no speech found"
    t = np.arange(16000 * 3) / 16000
    noise = (np.random.default_rng(0).standard_normal(t.size) * 0.1).astype(np.float32)
    chord = (sum(0.1 * np.sin(2 * np.pi * f * t) for f in (261.6, 329.6, 392.0)) * (0.5 + 0.5 * np.sin(4 * np.pi * t)))
    for sound in (noise, chord.astype(np.float32)):
        with pytest.raises(NoSpeechError, match="no speech found"):
            pipe((16000, sound))
    pipe.vad = False  # the check can be turned off: then any sound gets a face
    assert len(pipe((16000, noise), max_seconds=1.0).frames) == 30


def test_vad_finds_the_speech_in_a_clip(speech_wav):
    """Speech from the corpus, padded with 1 s of silence on each side, holds about as much speech as the
    clip's voiced part; the same length of noise at the same level holds none."""
    from s2v.audio import load_audio
    from s2v.vad import speech_seconds

    speech = load_audio(speech_wav)
    padded = np.concatenate([np.zeros(16000, np.float32), speech, np.zeros(16000, np.float32)])
    found = speech_seconds(padded)
    assert 0.5 * len(speech) / 16000 <= found <= len(speech) / 16000 + 0.2
    noise = (np.random.default_rng(1).standard_normal(padded.size) * speech.std()).astype(np.float32)
    assert speech_seconds(noise) < 0.3
    # importing silero_vad sets torch to one thread; the VAD puts the count back (the generator needs both cores)
    code = ("import numpy as np, torch; torch.set_num_threads(2); from s2v.vad import speech_seconds; "
            "speech_seconds(np.zeros(16000, np.float32)); print(torch.get_num_threads())")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.stdout.strip() == "2", r.stderr[-2000:]


def test_cli_generate(model_dir, speech_wav, tmp_path):
    out = tmp_path / "o.mp4"
    r = subprocess.run([sys.executable, "-m", "s2v", "generate", str(speech_wav), "-o", str(out), "--model",
                        str(model_dir), "--emotion", "happy:0.5", "--upscale", "64"], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert out.exists() and '"fps": 30' in r.stdout
    bad = tmp_path / "bad.mp3"
    bad.write_bytes(b"not audio at all" * 50)
    r = subprocess.run([sys.executable, "-m", "s2v", "generate", str(bad), "-o", str(tmp_path / "x.mp4"), "--model",
                        str(model_dir)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "error: could not read bad.mp3" in r.stderr and "Traceback" not in r.stderr


def test_gallery_recall():
    from s2v.gallery import Gallery

    emb = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32) * 5
    g = Gallery(["a", "b", "c"], emb, np.zeros((3, 4, 4, 3), np.uint8), {k: {} for k in "abc"})
    nu = np.array([[0.9, 0.5, 0.0], [0.1, 0.0, 2.0]], np.float32)
    assert np.allclose(g.recall(nu, 0.01), emb[[0, 2]], atol=1e-3)  # nearest seen actor
    assert np.allclose(g.recall(nu, 1e6), emb.mean(0), atol=1e-3)  # hot: the mean of all
    mid = g.recall(nu[:1], 0.2)[0]
    assert mid[0] > mid[1] > mid[2]  # in between: weighted by similarity


def test_hub_id_falls_back_to_the_bundled_model_when_offline(model_dir, monkeypatch, tmp_path):
    """A Hub id is tried first; with the Hub unreachable the bundled folder loads, with a warning that says so."""
    import s2v.hub

    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache: nothing to fall back on there
    monkeypatch.setattr(s2v.hub, "BUNDLED", model_dir)
    with pytest.warns(UserWarning, match="could not load someone/s2v-model from the Hugging Face Hub"):
        pipe = Speech2Video.from_pretrained("someone/s2v-model", device="cpu")
    assert "bundled" in pipe.source and pipe.generator is not None
    monkeypatch.setattr(s2v.hub, "BUNDLED", tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="missing too"), pytest.warns(UserWarning):
        Speech2Video.from_pretrained("someone/s2v-model", device="cpu")
    with pytest.raises(FileNotFoundError, match="no model folder"):
        Speech2Video.from_pretrained(tmp_path / "nothing-here", device="cpu")


def test_gallery_recall_onto_voice_means(tmp_path):
    """With the students' mean ν per actor (`voice`), recall weighs and returns those, and they survive save/load."""
    from s2v.gallery import Gallery

    emb = np.eye(3, dtype=np.float32) * 5
    voice = np.array([[1, 1, 0], [0, 1, 1], [1, 0, 1]], np.float32)
    g = Gallery(["a", "b", "c"], emb, np.zeros((3, 4, 4, 3), np.uint8), {k: {} for k in "abc"}, voice)
    assert np.allclose(g.recall(np.array([[0.1, 1.0, 0.9]], np.float32), 0.01), voice[1], atol=1e-3)
    g.save(tmp_path / "g")
    assert np.allclose(Gallery.load(tmp_path / "g").voice, voice)


def test_a_word_lost_in_a_long_sound_counts_as_no_speech(model_dir, speech_wav):
    """Under 2 s of voice filling under a fifth of the clip (music with a few voice-like notes) is refused;
    the same voice with a short pause around it is not."""
    from s2v.audio import NoSpeechError
    from s2v.vad import no_speech_reason

    word = load_audio(speech_wav)[:int(1.2 * 16000)]
    pad = lambda s: np.concatenate([np.zeros(int(s * 16000), np.float32), word, np.zeros(int(s * 16000), np.float32)])
    assert no_speech_reason(pad(0.5)) is None
    assert "only" in no_speech_reason(pad(5.0))
    pipe = Speech2Video.from_pretrained(model_dir, device="cpu")
    with pytest.raises(NoSpeechError, match="only .* s of the .* s sound like a voice"):
        pipe((16000, pad(5.0)))
    assert len(pipe((16000, pad(0.5))).frames) > 0


def test_pauses_are_gated_to_silence_for_the_generator_only(model_dir, speech_wav, monkeypatch):
    """A pause the VAD finds is faded to digital silence in what the generator hears (s2v.vad.gate_pauses):
    speech and its padding are kept to the sample, the middle of the pause is zero, the edges fade; the
    students (emotion, identity) still read the clip as it is."""
    from s2v.vad import PAD, gate_pauses, speech_spans

    speech = load_audio(speech_wav)
    rng = np.random.default_rng(0)
    hiss = (rng.standard_normal(16000) * 10 ** (-40 / 20)).astype(np.float32)
    x = np.concatenate([speech, hiss, speech])
    spans = speech_spans(x)
    assert len(spans) >= 2
    g = gate_pauses(x, spans)
    keep = np.zeros(x.size, bool)
    for s, e in spans:
        keep[max(0, s - int(PAD * 16000)):e + int(PAD * 16000)] = True
    assert np.array_equal(g[keep], x[keep])  # speech and its padding untouched
    mid = speech.size + 8000
    assert not keep[mid] and np.all(g[mid - 800:mid + 800] == 0)  # the middle of the pause is silent
    assert np.all(np.abs(g) <= np.abs(x) + 1e-7)  # only ever quieter
    assert gate_pauses(x, [(0, x.size)]) is x  # nothing outside speech: the input itself
    import s2v.pipeline as pl

    heard = []
    real_generate = pl.generate_clip
    monkeypatch.setattr(pl, "generate_clip", lambda gen, c, *a: heard.append(c.clone()) or real_generate(gen, c, *a))
    pipe = Speech2Video.from_pretrained(model_dir, device="cpu")
    on = pipe(x)
    pipe.gate_pauses = False
    off = pipe(x)
    assert on.emotion == off.emotion and on.identity == off.identity and np.array_equal(on.nu, off.nu)
    c_on, c_off = heard
    with torch.no_grad():
        assert torch.allclose(c_on, pipe.cpc(torch.from_numpy(g)[None])[0][0], atol=1e-6)  # it heard the gated clip
        assert torch.allclose(c_off, pipe.cpc(torch.from_numpy(x)[None])[0][0], atol=1e-6)  # gate off: the clip
    assert not torch.allclose(c_on, c_off)
