"""The speaker encoder (s2v.speaker): gain-free embeddings, Resemblyzer's checkpoint format, recall in the
pipeline, and the bundled encoder on voices no model saw."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from s2v.speaker import SpeakerConfig, SpeakerEncoder

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "checkpoints" / "default" / "stage1" / "speaker"


def _encoder(seed: int = 0) -> SpeakerEncoder:
    torch.manual_seed(seed)
    return SpeakerEncoder(SpeakerConfig()).eval()


def test_embeddings_are_unit_gain_free_and_cover_the_clip(speech_wav):
    from s2v.audio import load_audio

    enc = SpeakerEncoder.from_pretrained(BUNDLED).eval()  # the shipped weights (float16 stored, float32 run)
    c = enc.config
    assert enc.linear.weight.dtype == torch.float32 and c.ids and enc.keys.shape[0] == len(c.conditions) * len(c.ids)
    wav = load_audio(speech_wav)
    e = enc.embed(wav)
    assert e.shape == (256,) and e.dtype == np.float32 and abs(np.linalg.norm(e) - 1) < 1e-5
    assert np.allclose(enc.embed(wav * 0.05), e, atol=1e-5) and np.allclose(enc.embed(wav * 3), e, atol=1e-5)
    assert not np.allclose(enc.embed(wav[: wav.size // 2]), e, atol=1e-3)  # it reads the audio, not a constant
    assert enc.partials(100) == [0]  # shorter than a window: one, zero-padded
    starts = enc.partials(1000)  # windows of 160 every 77 frames, the last one at least 3/4 audio
    assert starts[0] == 0 and np.all(np.diff(starts) == 77) and starts[-1] + 160 >= 1000
    assert enc.partials(260) == [0, 77]  # a last window under 3/4 audio is left out: 260 - 154 < 120
    with pytest.raises(ValueError, match="silent"):
        enc.embed(np.zeros(16000, np.float32))


def test_resemblyzer_checkpoint_is_read_and_a_wrong_one_refused(tmp_path, speech_wav):
    from s2v.audio import load_audio

    enc = _encoder(1)
    state = {k: v for k, v in enc.state_dict().items() if k != "keys"}
    torch.save({"step": 1, "model_state": {**state, "similarity_weight": torch.ones(1),
                                           "similarity_bias": torch.zeros(1)}, "optimizer_state": {}},
               tmp_path / "pretrained.pt")
    got = SpeakerEncoder.from_resemblyzer(tmp_path / "pretrained.pt").eval()
    wav = load_audio(speech_wav)
    assert np.allclose(got.embed(wav), enc.embed(wav), atol=1e-6)
    torch.save({"model_state": {"linear.weight": torch.zeros(256, 256)}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a Resemblyzer"):
        SpeakerEncoder.from_resemblyzer(tmp_path / "other.pt")


def test_pipeline_recalls_the_actor_whose_key_the_voice_matches(tiny_model, tiny_prep, tmp_path, speech_wav):
    """With stage1/speaker/ in the model folder the seen actors are weighed by the encoder's cosine to their keys:
    a voice whose embedding is one actor's key gets that actor's face (its mean student ν), and the chart's
    similarities are the encoder's."""
    from s2v.audio import load_audio
    from s2v.pipeline import Speech2Video
    from s2v.speaker import main as speaker_main

    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    enc = _encoder(2)
    state = {k: v for k, v in enc.state_dict().items() if k != "keys"}
    torch.save({"model_state": state}, tmp_path / "pretrained.pt")
    assert speaker_main(["--data", str(tiny_prep), "--model", str(model), "--weights", str(tmp_path / "pretrained.pt"),
                         "--dtype", "float32"]) == 0
    pipe = Speech2Video.from_pretrained(model, device="cpu")
    assert pipe.speaker is not None and list(pipe.speaker.config.ids) == pipe.gallery.ids
    # keys written from the corpus: the unit mean of the actor's training clips, as recorded and through each
    # recording condition; an actor's similarity is its best key's
    cfg = pipe.speaker.config
    assert cfg.conditions == ("clean", "reverb", "noise", "phone", "opus")
    keys = pipe.speaker.keys.numpy()
    a = len(pipe.gallery.ids)
    assert keys.shape == (5 * a, 256) and np.allclose(np.linalg.norm(keys, axis=1), 1, atol=1e-5)
    e0 = pipe.speaker.embed(load_audio(speech_wav))
    assert np.allclose(pipe.speaker.similarity(e0), (keys @ e0).reshape(5, a).max(0), atol=1e-5)
    with pytest.raises(ValueError, match="conditions"):
        pipe.speaker.set_keys(pipe.gallery.ids, keys.reshape(5, a, 256), ("clean", "phone"))
    with pytest.raises(ValueError, match="unknown recording conditions"):
        speaker_main(["--data", str(tiny_prep), "--model", str(model), "--weights", str(tmp_path / "pretrained.pt"),
                      "--conditions", "clean,underwater"])

    e = pipe.speaker.embed(load_audio(speech_wav))
    rng = np.random.default_rng(0)
    for k, target in enumerate(pipe.gallery.ids):  # make the voice match each actor in turn
        others = rng.standard_normal((len(pipe.gallery.ids), 256)).astype(np.float32)
        others -= np.outer(others @ e, e)  # orthogonal to the voice
        new = others / np.linalg.norm(others, axis=1, keepdims=True)
        new[k] = e
        pipe.speaker = pipe.speaker.set_keys(pipe.gallery.ids, new).eval()
        r = pipe(speech_wav)
        assert r.identity[0][0] == target and r.identity[0][1] == pytest.approx(1.0, abs=1e-4)
        ref = pipe.gallery.embeddings if pipe.gallery.voice is None else pipe.gallery.voice
        assert np.allclose(r.nu, ref[k], atol=1e-4)
    # recall off: the chart still comes from the encoder, ν is the voice's own
    raw = Speech2Video.from_pretrained(model, device="cpu", recall=None)(speech_wav)
    assert not np.allclose(raw.nu, r.nu, atol=1e-3)
    # keys for other actors than the gallery's: refused with what to do
    pipe.speaker.set_keys(["9", "8", "7"], new[:3]).save_pretrained(model / "stage1" / "speaker")
    with pytest.raises(ValueError, match="python -m s2v.speaker"):
        Speech2Video.from_pretrained(model, device="cpu")


def test_bundled_encoder_tells_apart_voices_no_model_saw(tiny_corpus):
    """The bundled (real-speech) encoder on the tiny corpus's actors, drawn afresh: keys from one sentence,
    each clip of the other sentence recalled to its own actor, also at -10 and +10 dB and through a phone line."""
    from s2v.audio import load_audio
    from s2v.degrade import CONDITIONS, gain

    enc = SpeakerEncoder.from_pretrained(BUNDLED).eval()
    clips = sorted((tiny_corpus / "AudioWAV").glob("*.wav"))
    actors = sorted({p.name.split("_")[0] for p in clips})
    sentences = sorted({p.name.split("_")[1] for p in clips})
    assert len(actors) >= 4 and len(sentences) == 2
    emb = {p.name: enc.embed(load_audio(p)) for p in clips}
    keys = np.stack([np.mean([emb[p.name] for p in clips if p.name.startswith(f"{a}_{sentences[0]}")], 0)
                     for a in actors])
    enc = enc.set_keys(actors, keys / np.linalg.norm(keys, axis=1, keepdims=True)).eval()
    rng = np.random.default_rng(0)
    hits = []
    for p in clips:
        if p.name.split("_")[1] != sentences[1]:
            continue
        wav = load_audio(p)
        truth = actors.index(p.name.split("_")[0])
        for version in (wav, gain(wav, -10), gain(wav, 10), CONDITIONS["phone"](wav, rng)):
            hits.append(int(np.argmax(enc.similarity(enc.embed(version)))) == truth)
    assert np.mean(hits) >= 0.9, hits
