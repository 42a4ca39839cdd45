"""The synthetic corpus: CREMA-D layout, rates, lengths, determinism, and lips that follow speech."""
from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile as sf

from s2v.audio import SAMPLE_RATE, load_audio
from s2v.corpus.__main__ import main as corpus_main
from s2v.corpus.actors import SENTENCES, Actor, make_actors
from s2v.corpus.make import ClipSpec, synth_speech
from s2v.corpus.motion import frame_rms, viseme
from s2v.video import probe_video, read_video


def test_layout(tiny_corpus):
    wavs = sorted((tiny_corpus / "AudioWAV").glob("*.wav"))
    flvs = sorted((tiny_corpus / "VideoFlash").glob("*.flv"))
    assert len(wavs) == len(flvs) == 5 * 2 * 3
    assert [w.stem for w in wavs] == [f.stem for f in flvs]
    for w in wavs:
        actor, sentence, emotion, level = w.stem.split("_")
        assert actor in ("1001", "1002", "1003", "1004", "1005") and sentence in ("IEO", "TIE") and emotion in ("ANG", "NEU", "SAD")
        assert level in (("LO", "MD", "HI") if sentence == "IEO" and emotion != "NEU" else ("XX",))
    meta = json.loads((tiny_corpus / "actors.json").read_text())
    assert [a["split"] for a in meta["actors"]] == ["seen"] * 3 + ["unseen"] * 2
    for a in meta["actors"]:
        assert {"id", "sex", "age", "age_group", "voice", "face"} <= set(a)
        Actor.from_json(a)  # round-trips
        assert (tiny_corpus / "Stills" / f"{a['id']}.png").exists()
    rows = list(csv.DictReader(open(tiny_corpus / "VideoDemographics.csv")))
    assert [r["ActorID"] for r in rows] == ["1001", "1002", "1003", "1004", "1005"] and {"Age", "Sex"} <= set(rows[0])
    assert meta["sentences"] == {"IEO": "It's eleven o'clock.", "TIE": "That is exactly what happened."}


def test_rates_and_lengths(tiny_corpus):
    for wav in sorted((tiny_corpus / "AudioWAV").glob("*.wav")):
        info = sf.info(wav)
        assert info.samplerate == SAMPLE_RATE and info.channels == 1 and info.subtype == "PCM_16"
        flv = tiny_corpus / "VideoFlash" / (wav.stem + ".flv")
        meta = probe_video(flv)
        assert meta["fps"] == 30 and meta["size"] == (64, 64)
        frames, fps = read_video(flv)
        # exactly as long as the audio within one frame
        assert abs(len(frames) / fps - info.frames / SAMPLE_RATE) <= 1 / 30 + 1e-9
        assert frames.dtype == np.uint8 and frames.shape[1:] == (64, 64, 3)


def test_codec_is_h264_in_flv(tiny_corpus):
    import subprocess

    from s2v.audio import ffmpeg_exe

    flv = sorted((tiny_corpus / "VideoFlash").glob("*.flv"))[0]
    info = subprocess.run([ffmpeg_exe(), "-i", str(flv)], capture_output=True, text=True).stderr
    assert "Input #0, flv" in info and "Video: h264" in info and "Audio: aac" in info


def test_deterministic(tiny_corpus, tmp_path):
    """The same seed gives byte-identical audio and the same frames."""
    from s2v.corpus.make import make_corpus

    make_corpus(tmp_path, seen=3, unseen=2, sentences=2, emotions=("ANG", "NEU", "SAD"), seed=0, workers=1,
                size=64, progress=False)
    for wav in sorted((tiny_corpus / "AudioWAV").glob("*.wav")):
        again = tmp_path / "AudioWAV" / wav.name
        assert hashlib.sha1(wav.read_bytes()).digest() == hashlib.sha1(again.read_bytes()).digest()
        a, _ = read_video(tiny_corpus / "VideoFlash" / (wav.stem + ".flv"))
        b, _ = read_video(tmp_path / "VideoFlash" / (wav.stem + ".flv"))
        assert np.array_equal(a, b)
    assert (tiny_corpus / "actors.json").read_text() == (tmp_path / "actors.json").read_text()


def test_other_seed_differs():
    a, b = make_actors(2, 0, seed=0), make_actors(2, 0, seed=1)
    assert a[0].voice != b[0].voice and a[0].face != b[0].face


def test_lower_face_moves_with_speech_energy(tiny_corpus):
    """Per frame, the lower face's change from the closed-mouth still follows the audio's RMS."""
    corrs = []
    for flv in sorted((tiny_corpus / "VideoFlash").glob("*.flv")):
        frames, fps = read_video(flv)
        audio = load_audio(tiny_corpus / "AudioWAV" / (flv.stem + ".wav"))
        rms = frame_rms(audio, int(fps), len(frames))
        lower = frames[:, 38:56, 20:44].astype(np.float32)  # mouth and chin of a 64 px face
        upper = frames[:, 14:30, 14:50].astype(np.float32)  # eyes and brows: no speech in them
        still = cv2.imread(str(tiny_corpus / "Stills" / f"{flv.stem.split('_')[0]}.png"))[..., ::-1]
        move_low = np.abs(lower - still[38:56, 20:44]).mean(axis=(1, 2, 3))
        move_up = np.abs(upper - still[14:30, 14:50]).mean(axis=(1, 2, 3))
        corrs.append((np.corrcoef(rms, move_low)[0, 1], np.corrcoef(rms, move_up)[0, 1]))
    low, up = np.array(corrs).mean(0)
    assert low > 0.5, f"lower face vs RMS correlation {low:.2f}"
    assert low > up + 0.2, f"the upper face moves with speech as much as the lower ({up:.2f} vs {low:.2f})"


def test_mouth_closed_in_silence_and_open_on_vowels():
    actor = make_actors(1, 0, seed=3)[0]
    spec = ClipSpec(actor, "TAI", "NEU", "XX", 3)
    audio, phonemes = synth_speech(spec)
    from s2v.corpus.motion import mouth_track

    n = int(len(audio) / SAMPLE_RATE * 30)
    mouths, names = mouth_track(phonemes, audio, 30, n)
    opening = np.array([m.open for m in mouths])
    assert opening[:3].max() < 0.05 and opening[-3:].max() < 0.05  # leading and trailing silence
    assert opening.max() > 0.4
    assert {"A", "E", "I"} & set(names) and "sil" in names
    assert viseme("'a") == "A" and viseme("m") == "PBM" and viseme("f") == "FV" and viseme("_:") == "sil"
    assert phonemes == sorted(phonemes, key=lambda p: p[1])


def test_emotion_in_the_voice():
    """Angry speech is louder and sad speech slower than neutral speech of the same actor."""
    actor = make_actors(1, 0, seed=5)[0]
    get = lambda e: synth_speech(ClipSpec(actor, "TIE", e, "XX", 5))[0]
    neu, ang, sad = get("NEU"), get("ANG"), get("SAD")
    loud = lambda x: np.sqrt(np.mean(x[np.abs(x) > 0.01] ** 2))
    assert loud(ang) > 1.2 * loud(neu)
    assert len(sad) > 1.1 * len(neu)


def test_vocal_effort_brightens_loud_emotions_and_darkens_quiet_ones():
    """A gain cannot tell anger from neutral speech, the spectrum can: louder emotions carry relatively more
    energy above 2 kHz, quieter ones less (EFFORT_TILT dB per dB of the emotion's volume), the same for every
    gain; the shelf itself is exact and leaves low frequencies alone."""
    from s2v.corpus.make import effort_shelf

    actor = make_actors(1, 0, seed=5)[0]
    get = lambda e: synth_speech(ClipSpec(actor, "TIE", e, "HI" if e != "NEU" else "XX", 5))[0]

    def tilt(x):  # dB of energy above 2 kHz over below 500 Hz
        p, f = np.abs(np.fft.rfft(x)) ** 2, np.fft.rfftfreq(x.size, 1 / 16000)
        return 10 * np.log10(p[f >= 2000].sum() / p[f < 500].sum())

    neu, ang, sad = (tilt(get(e)) for e in ("NEU", "ANG", "SAD"))
    assert ang > neu + 2 and sad < neu - 2
    assert tilt(0.1 * get("ANG")) == pytest.approx(ang, abs=1e-3)  # a microphone's gain leaves it
    x = np.random.default_rng(0).normal(size=16000).astype(np.float32)
    y = effort_shelf(x, 6.0)
    f, gx, gy = np.fft.rfftfreq(x.size, 1 / 16000), np.abs(np.fft.rfft(x)), np.abs(np.fft.rfft(y))
    assert np.allclose(gy[f < 500], gx[f < 500], rtol=1e-4) and np.allclose(gy[f >= 2000], 10 ** (6 / 20) * gx[f >= 2000], rtol=1e-4)
    assert effort_shelf(x, 0.0) is x


def test_level_spread_records_each_clip_at_a_level_of_its_own():
    """--level-spread: a clip is the same speech at a gain drawn within ± the spread, a different one per clip."""
    actor = make_actors(1, 0, seed=5)[0]
    gains = []
    for sentence in ("TIE", "DFA", "IOM", "ITH"):
        plain = synth_speech(ClipSpec(actor, sentence, "NEU", "XX", 5))[0]
        spread = synth_speech(ClipSpec(actor, sentence, "NEU", "XX", 5, level_spread=6.0))[0]
        g = spread[np.abs(plain) > 1e-3] / plain[np.abs(plain) > 1e-3]
        assert np.allclose(g, g[0], rtol=1e-4)  # one gain for the whole clip: the speech itself unchanged
        gains.append(20 * np.log10(g[0]))
    assert all(abs(d) <= 6.0 + 1e-3 for d in gains) and np.std(gains) > 0.5


def test_a_corpus_made_without_vocal_effort_is_not_resumed(tmp_path, capsys):
    args = ["make", "--out", str(tmp_path), "--seen", "1", "--unseen", "0", "--sentences", "1",
            "--emotions", "NEU", "--size", "48", "--workers", "1"]
    assert corpus_main(args) == 0
    meta = json.loads((tmp_path / "actors.json").read_text())
    tilt = meta.pop("effort_tilt")  # as corpora made before vocal effort were
    assert tilt > 0 and meta["level_spread"] == 0
    (tmp_path / "actors.json").write_text(json.dumps(meta))
    assert corpus_main(args) == 2
    assert "effort_tilt" in capsys.readouterr().err
    meta["effort_tilt"] = tilt
    (tmp_path / "actors.json").write_text(json.dumps(meta))
    assert corpus_main(args + ["--level-spread", "6"]) == 2  # nor one made at another level spread
    assert "level_spread" in capsys.readouterr().err


def test_voices_differ_between_actors():
    """Two actors saying the same sentence have different pitch (the voice carries identity)."""
    a, b = make_actors(2, 0, seed=0)
    assert a.sex != b.sex
    pa = a.voice.variant.pitch_base_hz
    pb = b.voice.variant.pitch_base_hz
    assert (pa < pb) == (a.sex == "Male")


def test_faces_pool_and_sheet(tmp_path, tiny_corpus):
    assert corpus_main(["faces", "--out", str(tmp_path / "faces"), "--identities", "3", "--per-identity", "7",
                        "--size", "48", "--workers", "1"]) == 0
    rows = list(csv.DictReader(open(tmp_path / "faces" / "labels.csv")))
    assert len(rows) == 21 and {r["emotion"] for r in rows} == {"ANG", "DIS", "FEA", "HAP", "NEU", "SAD"}
    assert {"identity", "emotion", "sex", "age_group", "viseme"} <= set(rows[0])
    ids = {int(r["identity"]) for r in rows}
    corpus_ids = {a["id"] for a in json.loads((tiny_corpus / "actors.json").read_text())["actors"]}
    assert len(ids) == 3 and not ids & corpus_ids
    img = cv2.imread(str(tmp_path / "faces" / rows[0]["file"]))
    assert img.shape == (48, 48, 3)
    assert corpus_main(["sheet", "--corpus", str(tiny_corpus), "--out", str(tmp_path / "sheet.png")]) == 0
    sheet = cv2.imread(str(tmp_path / "sheet.png"))
    assert sheet.shape[0] > 2 * 64 and sheet.std() > 10


def test_make_resumes_and_rejects_bad_options(tmp_path, capsys):
    args = ["make", "--out", str(tmp_path), "--seen", "1", "--unseen", "0", "--sentences", "1",
            "--emotions", "NEU", "--size", "48", "--workers", "1"]
    assert corpus_main(args) == 0
    wav = next((tmp_path / "AudioWAV").glob("*.wav"))
    mtime = wav.stat().st_mtime_ns
    assert corpus_main(args) == 0
    assert wav.stat().st_mtime_ns == mtime  # finished clips are kept, not redone
    with pytest.raises(SystemExit):
        corpus_main(["make", "--out", str(tmp_path), "--emotions", "XYZ"])
    assert corpus_main(["make", "--out", str(tmp_path), "--sentences", "13"]) == 2
    assert "sentences" in capsys.readouterr().err
    assert len(SENTENCES) == 12


def test_probe_runs_on_the_tiny_corpus(tiny_corpus, tiny_prep, capsys):
    assert corpus_main(["probe", "--corpus", str(tiny_corpus), "--judge", str(tiny_prep.parent / "teachers")]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["clips"] == 30
    for key in ("speaker_top1_seen_test", "emotion_seen_test", "sex_unseen", "embedding_match_1to2_unseen"):
        assert 0.0 <= out[key] <= 1.0
    for key in ("r2_age_unseen", "r2_build_unseen", "r2_jaw_unseen", "r2_face_embedding_unseen"):
        assert out[key] <= 1.0  # R² of held-out actors: at most 1, and below 0 when worse than the mean
    assert out["embedding_candidates_unseen"] == 2
    assert 0.0 <= out["oracle_sex_match_1to2_unseen"] <= 1.0 and out["features"] == "log-mel statistics"
    # the same probes on the bundled speaker encoder's embeddings
    speaker = Path(__file__).resolve().parents[1] / "checkpoints" / "default" / "stage1" / "speaker"
    assert corpus_main(["probe", "--corpus", str(tiny_corpus), "--speaker", str(speaker)]) == 0
    spk = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert spk["features"] == "speaker encoder" and spk["clips"] == 30 and 0.0 <= spk["sex_unseen"] <= 1.0
    # and on the bundled CPC's statistics; both at once is refused
    cpc = speaker.parent / "cpc"
    assert corpus_main(["probe", "--corpus", str(tiny_corpus), "--cpc", str(cpc)]) == 0
    c = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert c["features"] == "CPC statistics" and c["clips"] == 30 and 0.0 <= c["accent_unseen"] <= 1.0
    assert corpus_main(["probe", "--corpus", str(tiny_corpus), "--cpc", str(cpc), "--speaker", str(speaker)]) == 2


def test_trait_oracle_on_known_answers():
    """The probe's trait oracle: the seen actors' mean embedding for the unseen actor's sex (and age group)."""
    from s2v.corpus.probe import trait_oracle

    actors = {"s1": {"split": "seen", "sex": "Female", "age_group": "young"},
              "s2": {"split": "seen", "sex": "Male", "age_group": "young"},
              "u1": {"split": "unseen", "sex": "Female", "age_group": "young"},
              "u2": {"split": "unseen", "sex": "Male", "age_group": "old"}}
    ids = ["s1", "s2", "u1", "u2"]
    # women's faces along one axis, men's along the other: knowing the sex matches every unseen pair
    emb = np.array([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [0.1, 0.9]])
    out = trait_oracle(emb, ids, actors)
    assert out["oracle_sex_match_1to2_unseen"] == 1.0
    # no seen man is "old": that voice gets the mean of all seen faces, a tie with both stills
    assert out["oracle_sex_age_group_match_1to2_unseen"] == 0.75
    # faces that do not follow sex: the sex oracle is no better than chance
    swapped = np.array([[1.0, 0.0], [0.0, 1.0], [0.1, 0.9], [0.9, 0.1]])
    assert trait_oracle(swapped, ids, actors)["oracle_sex_match_1to2_unseen"] == 0.0


def test_build_links_voice_and_face_only_in_traits_2():
    """Traits 2: a bigger build lowers the formants and widens the face; traits 1 draws the old actors."""
    from s2v.corpus.actors import make_actors, with_build

    old, new = make_actors(6, 2, seed=0, traits=1), make_actors(6, 2, seed=0, traits=2)
    assert all(a.build == 0.0 for a in old) and any(a.build != 0.0 for a in new)
    for a, b in zip(old, new):  # everything but the build's shifts is drawn the same
        assert (a.sex, a.age, a.face.skin, a.voice.language) == (b.sex, b.age, b.face.skin, b.voice.language)
    big, small = with_build(old[0], 2.0), with_build(old[0], -2.0)
    assert big.voice.variant.formant_scale[0] < small.voice.variant.formant_scale[0]
    assert big.face.face_w > small.face.face_w and big.face.jaw >= small.face.jaw


def test_region_links_accent_and_colouring_only_in_traits_3():
    """Traits 3 draws the traits-2 actors with a region added: mostly its accent, and its colouring more often
    than chance; the rest of voice and face unchanged. In traits 2 accent and colouring are independent."""
    from s2v.corpus.actors import _SKIN, ACCENTS, REGIONS, make_actors

    two, three = make_actors(200, 0, seed=0, traits=2), make_actors(200, 0, seed=0, traits=3)
    for a, b in zip(two, three):
        assert a.region == -1 and 0 <= b.region < len(REGIONS)
        assert (a.sex, a.age, a.build, a.voice.variant, a.face.jaw, a.face.hair_style, a.face.grey) == \
               (b.sex, b.age, b.build, b.voice.variant, b.face.jaw, b.face.hair_style, b.face.grey)
    tone = lambda a: int(np.argmin(((_SKIN - np.array(a.face.skin)) ** 2).sum(1)))  # noqa: E731
    loyal = np.mean([b.voice.language == REGIONS[b.region]["accent"] for b in three])
    assert 0.8 < loyal < 1.0  # most, not all, speak their region's accent
    centre = np.mean([tone(b) == REGIONS[b.region]["skin"] for b in three])
    assert 0.35 < centre < 0.8  # the region's likeliest skin tone: often, not always (chance 1/6)
    # without regions, the accent says nothing of the skin: the accent's commonest tone is no likelier
    by_accent = {acc: [tone(a) for a in two if a.voice.language == acc] for acc in ACCENTS}
    commonest = np.mean([np.bincount(t, minlength=len(_SKIN)).max() / len(t) for t in by_accent.values() if t])
    assert commonest < 0.45


def test_trait_oracle_uses_accent_when_regions_exist():
    from s2v.corpus.probe import trait_oracle

    voice = lambda lang: {"language": lang}  # noqa: E731
    actors = {"s1": {"split": "seen", "sex": "Male", "age_group": "young", "voice": voice("en"), "region": 0},
              "s2": {"split": "seen", "sex": "Male", "age_group": "young", "voice": voice("en-029"), "region": 1},
              "u1": {"split": "unseen", "sex": "Male", "age_group": "young", "voice": voice("en"), "region": 0},
              "u2": {"split": "unseen", "sex": "Male", "age_group": "young", "voice": voice("en-029"), "region": 1}}
    ids = ["s1", "s2", "u1", "u2"]
    emb = np.array([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [0.1, 0.9]])  # faces follow the accent's region
    out = trait_oracle(emb, ids, actors)
    assert out["oracle_sex_match_1to2_unseen"] == 0.5  # same sex: a tie
    assert out["oracle_sex_accent_match_1to2_unseen"] == 1.0
    for a in actors.values():
        a["region"] = -1
    assert "oracle_sex_accent_match_1to2_unseen" not in trait_oracle(emb, ids, actors)


def test_clips_per_actor_balances_emotions():
    from s2v.corpus.actors import SENTENCES, make_actors
    from s2v.labels import EMOTIONS
    from s2v.corpus.make import clip_specs

    specs = clip_specs(make_actors(4, 0, seed=0), list(SENTENCES), list(EMOTIONS), 0, per_actor=8)
    assert len(specs) == 32 and len({s.stem for s in specs}) == 32  # no line twice
    for a in {s.actor.id for s in specs}:
        counts = [sum(s.actor.id == a and s.emotion == e for s in specs) for e in EMOTIONS]
        assert sorted(counts) == [1, 1, 1, 1, 2, 2]  # 8 clips: the six emotions take turns
