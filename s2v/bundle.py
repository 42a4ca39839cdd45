"""`python -m s2v.bundle`: assemble one model folder the pipeline, the app and the evaluation load.

    python -m s2v.bundle --stage2 runs/stage2 --teachers runs/teachers --syncnet runs/syncnet \
        --out checkpoints/default
    python -m s2v.bundle --model checkpoints/default --emotion-from runs/stage1-pitch   # swap S_emo only
    python -m s2v.bundle --model checkpoints/default --generator-from runs/stage2-aug  # swap the generator only

Layout of the folder (each part: config.json + model.safetensors + README.md, a model card):
    generator/            F(c, ν, μ) (stage 2)
    stage1/cpc/           the CPC audio encoder
    stage1/students/      S_id, S_emo
    stage1/gallery/       the seen actors: ids, stills, sex, age group, mean ν*
    stage1/familiarity/   added after assembling by `python -m s2v.familiar` (the recipe's next step)
    teachers/identity/    T_id, teachers/emotion/ T_emo (for the evaluation; the app does not need them)
    syncnet/              the sync expert (for the evaluation)
    model_index.json      where each part came from, its metrics, the settings; README.md: the card
Weights are stored as float16 (`--dtype float32` to keep them) to keep the bundle small; they load
back into float32 modules.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch

from .modeling import CARD, CONFIG, WEIGHTS


def _copy_part(src: Path, dst: Path, dtype: torch.dtype, card: str | None = None) -> int:
    """Copy a saved part, casting floating weights to `dtype`; returns its size in bytes."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    if not (src / CONFIG).exists() or not (src / WEIGHTS).exists():
        raise FileNotFoundError(f"{src} is not a saved model part (no {CONFIG} + {WEIGHTS})")
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src / CONFIG, dst / CONFIG)
    with safe_open(str(src / WEIGHTS), "pt") as f:
        meta = f.metadata() or {}
        state = {k: f.get_tensor(k) for k in f.keys()}
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    save_file(state, str(dst / WEIGHTS), metadata=meta)
    text = card if card is not None else ((src / CARD).read_text() if (src / CARD).exists() else "")
    (dst / CARD).write_text(text)
    return (dst / WEIGHTS).stat().st_size


def _rel(p) -> str:
    """A path as given, or relative to the working directory when inside it (cards should not name one machine)."""
    p = Path(p)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)


def _read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def _card(title: str, what: str, data: str, settings: dict, metrics: dict, limits: str) -> str:
    keep = {k: v for k, v in settings.items() if k not in ("push_to_hub", "hub_model_id", "report_to",
                                                            "resume_from_checkpoint", "output_dir")}
    return (f"# {title}\n\n{what}\n\n## Training data\n\n{data}\n\n## Settings\n\n```\n{json.dumps(keep, indent=1)}\n```\n\n"
            f"## Metrics\n\n```\n{json.dumps(metrics, indent=1)}\n```\n\n## Limitations\n\n{limits}\n")


SYNTH = ("The synthetic CREMA-D-layout corpus of s2v (`python -m s2v.corpus make`): eSpeak NG voices with "
         "per-actor timbre and acted prosody, drawn faces lip-synced to the phonemes; 24 seen actors x 12 "
         "sentences x 6 emotions for training, 6 actors held out as unseen.")
LIMITS = ("Trained on synthetic speech and drawn faces only: on real voices it draws the nearest synthetic face it "
          "knows. Not a model of any real person.")


def _swap_emotion_student(students_dir: Path, emotion_dir: Path, dst: Path, gallery_dir: Path) -> None:
    """Write into `dst` (a copied students part) everything of S_emo from `emotion_dir` (weights, input
    statistics, speakers' average inputs, its config keys), keeping S_id. Allowed because eq. 2's identity
    and emotion terms are separate and the CPC is frozen: S_emo can be improved without touching the ν
    that stage 2 was trained on. Both must read the same CPC (checked by the caller). With --emo-speakers,
    S_emo finds the speaker among this S_id's voices (`gallery_dir`), so its keys come from there."""
    from safetensors.numpy import load_file as load_np
    from safetensors.torch import load_file, save_file

    a, b = json.loads((students_dir / CONFIG).read_text()), json.loads((emotion_dir / CONFIG).read_text())
    for key in ("in_dim", "id_dim", "emo_dim", "hidden", "pool"):
        if a.get(key) != b.get(key):
            raise ValueError(f"the emotion student differs in {key}: {a.get(key)} vs {b.get(key)}")
    state = load_file(str(dst / WEIGHTS))
    emo = load_file(str(emotion_dir / WEIGHTS))
    dtype = next(v.dtype for v in state.values() if v.is_floating_point())  # not a counter's int64
    state = {k: v for k, v in state.items() if k.startswith("s_id.")}
    state.update({k: v.to(dtype) if v.is_floating_point() else v for k, v in emo.items() if not k.startswith("s_id.")})
    if "speaker_keys" in state:
        g = json.loads((gallery_dir / "gallery.json").read_text())
        e = json.loads((emotion_dir.parent / "gallery" / "gallery.json").read_text())
        voice = load_np(str(gallery_dir / "gallery.safetensors")).get("voice")
        if g["ids"] != e["ids"] or voice is None:
            raise ValueError("the emotion student's speakers are not this stage 1's gallery (or it has no voices)")
        keys = torch.nn.functional.normalize(torch.from_numpy(voice).float(), dim=-1)
        state["speaker_keys"] = keys.to(dtype)
    save_file(state, str(dst / WEIGHTS), metadata={"model_type": a.get("model_type", "")})
    for key in ("emo_level", "emo_input", "emo_speakers", "emo_temperature"):
        if key in b:
            a[key] = b[key]
        else:
            a.pop(key, None)
    (dst / CONFIG).write_text(json.dumps(a, indent=1))


def bundle(stage2: str | Path, teachers: str | Path | None, syncnet: str | Path | None, out: str | Path,
           dtype: str = "float16", emotion_from: str | Path | None = None, identity: str | None = None,
           identity_from: str | Path | None = None) -> dict:
    """Assemble the model folder. `identity`: how the pipeline uses a voice's ν by default, "recall" (onto the
    seen actors) or "voice" (decoded as is); None: by how the generator was trained (`pipeline.default_identity`).
    `emotion_from` / `identity_from`: another stage-1 run on the same CPC that gives S_emo / S_id (with its
    gallery's voices, where recall maps a voice); the other student comes from the run stage 2 was trained on."""
    stage2, out = Path(stage2), Path(out)
    s2 = _read(stage2 / "stage2.json")
    if not s2:
        raise FileNotFoundError(f"{stage2}/stage2.json not found: is {stage2} a finished train/stage2.py run?")
    stage1 = Path(s2["stage1"])
    s1 = _read(stage1 / "stage1.json")
    dt = getattr(torch, dtype)
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    sizes = {}
    s1_metrics = _read(stage1 / "metrics.json")
    sizes["generator"] = _copy_part(stage2 / "generator", tmp / "generator", dt, _card(
        "s2v generator (stage 2)", "F(c_t, ν, μ): the frame generator with its identity branch (paper section 2.2), "
        "trained adversarially against D_ID, D_frame and D_sync with the upper-face L1 and gradient losses.",
        SYNTH, s2.get("settings", {}), s2.get("metrics", {}), LIMITS))
    cpc_meta = _read(Path(s1.get("cpc", "")) / "metrics.json") if s1.get("cpc") else {}
    sizes["stage1/cpc"] = _copy_part(stage1 / "cpc", tmp / "stage1" / "cpc", dt, _card(
        "s2v CPC audio encoder", "CPC_audio layout (g_enc five strided convolutions, g_ar LSTM), self-supervised "
        "by InfoNCE 12 steps ahead; c_t feeds both the students and the generator.", SYNTH + " Seen actors' "
        "training clips only.", {"source": s1.get("cpc")}, cpc_meta, LIMITS))
    what = "S_id and S_emo distil the face teachers' ν and μ from the voice (paper eq. 1-3, λ = 0.025)."
    e1 = Path(emotion_from) if emotion_from else None
    if e1:  # S_emo from another stage-1 run on the same CPC (see _swap_emotion_student)
        e1_meta = _read(e1 / "stage1.json")
        if Path(e1_meta.get("cpc", "")).resolve() != Path(s1.get("cpc", "")).resolve():
            raise ValueError(f"{e1} was trained on another CPC than {stage1}")
        s1_metrics = {**s1_metrics, "emotion_accuracy_seen_test":
                      _read(e1 / "metrics.json").get("emotion_accuracy_seen_test"), "emotion_from": _rel(e1)}
        what += (f"\n\nS_emo comes from `{e1}` (same CPC; settings {json.dumps(e1_meta.get('settings', {}))}); "
                 "S_id from the run stage 2 was trained on.")
    idf = Path(identity_from) if identity_from else None
    if idf:  # S_id and the gallery's voices from another stage-1 run on the same CPC (e.g. trained with --augment)
        idf_meta = _read(idf / "stage1.json")
        if Path(idf_meta.get("cpc", "")).resolve() != Path(s1.get("cpc", "")).resolve():
            raise ValueError(f"{idf} was trained on another CPC than {stage1}")
        m = _read(idf / "metrics.json")
        s1_metrics = {**s1_metrics, **{k: m.get(k) for k in ("identity_top1_seen_test", "unseen_sex_agreement",
                                                              "unseen_age_group_agreement")}, "identity_from": _rel(idf)}
        what += (f"\n\nS_id and the gallery's voices come from `{idf}` (same CPC; settings "
                 f"{json.dumps(idf_meta.get('settings', {}))}).")
    ids = idf or stage1  # where S_id and the gallery come from
    sizes["stage1/students"] = _copy_part(ids / "students", tmp / "stage1" / "students", dt, _card(
        "s2v identity and emotion students (stage 1)", what, SYNTH, s1.get("settings", {}), s1_metrics, LIMITS))
    if e1 or idf:
        _swap_emotion_student(ids / "students", (e1 or stage1) / "students", tmp / "stage1" / "students",
                              ids / "gallery")
    shutil.copytree(ids / "gallery", tmp / "stage1" / "gallery")
    sizes["stage1/gallery"] = sum(f.stat().st_size for f in (tmp / "stage1" / "gallery").iterdir())
    parts = {"generator": _rel(stage2), "stage1": _rel(stage1)}
    if e1:
        parts["emotion_student"] = _rel(e1)
    if idf:
        parts["identity_student"] = _rel(idf)
    if teachers:
        teachers = Path(teachers)
        t_metrics = _read(teachers / "metrics.json")
        for name in ("identity", "emotion"):
            sizes[f"teachers/{name}"] = _copy_part(teachers / name, tmp / "teachers" / name, dt, _card(
                f"s2v {name} teacher", "T_id (VGG-Face layout, fc7 = ν*)" if name == "identity" else
                "T_emo (SE-ResNet layout, CREMA-D's six classes = μ*)",
                "The synthetic face pool of s2v (`python -m s2v.corpus faces`): drawn identities x six expressions.",
                {}, t_metrics, LIMITS))
        parts["teachers"] = _rel(teachers)
    if syncnet:
        syncnet = Path(syncnet)
        sizes["syncnet"] = _copy_part(syncnet, tmp / "syncnet", dt, _card(
            "s2v sync expert", "SyncNet layout (netcnnaud/netfcaud/netcnnlip/netfclip) on the lower half of the "
            "face: LSE-C/LSE-D for the evaluation.", SYNTH, {}, _read(syncnet / "metrics.json"), LIMITS))
        parts["syncnet"] = _rel(syncnet)
    if identity is None:
        from .pipeline import default_identity

        identity = default_identity(bool(json.loads((stage2 / "generator" / CONFIG).read_text()).get("nu_norm")))
    if identity not in ("recall", "voice"):
        raise ValueError(f"--identity must be recall or voice, got {identity!r}")
    index = {"format": "s2v-bundle", "version": 1, "dtype": dtype, "identity": identity, "parts": parts,
             "stage1_metrics": s1_metrics, "stage2_settings": s2.get("settings", {}),
             "bytes": sizes, "total_mb": round(sum(sizes.values()) / 2 ** 20, 2)}
    (tmp / "model_index.json").write_text(json.dumps(index, indent=1))
    (tmp / CARD).write_text(
        "# s2v default model\n\nSpeech in, talking face out (Speech2Video, cross-modal distillation). Load it with "
        "`Speech2Video.from_pretrained(\"checkpoints/default\")`, `python -m s2v generate`, or `python app.py`.\n\n"
        f"## Training data\n\n{SYNTH}\n\n## Parts\n\n" + "\n".join(f"- `{k}` ({v / 2 ** 20:.1f} MB)"
                                                                 for k, v in sizes.items())
        + f"\n\n## Stage 1 metrics\n\n```\n{json.dumps(s1_metrics, indent=1)}\n```\n\n"
        "The full evaluation (python -m s2v.evaluate) is in the project README.\n\n"
        f"## Limitations\n\n{LIMITS}\n")
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return index


def _same_weights(a: Path, b: Path) -> bool:
    """Whether two saved parts hold the same weights (compared at the first's dtype: a bundle stores float16)."""
    from safetensors.torch import load_file

    mine, theirs = load_file(str(a / WEIGHTS)), load_file(str(b / WEIGHTS))
    return mine.keys() == theirs.keys() and all(torch.equal(v.to(mine[k].dtype), mine[k]) for k, v in theirs.items()
                                                if v.is_floating_point())


GENERATOR_KEYS = ("size", "c_dim", "context", "nu_dim", "mu_dim", "id_channels", "base", "identity_branch", "nu_norm")


def swap_generator(model_dir: str | Path, stage2: str | Path, out: str | Path | None = None) -> dict:
    """An assembled model folder with the generator of the stage-2 run `stage2` (e.g. a fine-tuning of its own
    generator with other losses or data), every other part kept: into `out` (a copy), or in place. The run must
    have read c_t from this model's CPC (checked weight by weight) and built the same generator (its config's
    `GENERATOR_KEYS`). Records the run and its settings in model_index.json and the card. Returns the index."""
    src, run = Path(model_dir), Path(stage2)
    out = Path(out) if out else src
    index = _read(src / "model_index.json")
    if not index:
        raise FileNotFoundError(f"{src}/model_index.json not found: is {src} an assembled model folder?")
    s2 = _read(run / "stage2.json")
    if not s2 or not (run / "generator" / WEIGHTS).exists():
        raise FileNotFoundError(f"{run} is not a finished train/stage2.py run (stage2.json and generator/ expected)")
    theirs = Path(s2.get("stage1", "")) / "cpc"
    if not (theirs / WEIGHTS).exists():
        raise FileNotFoundError(f"{theirs}, the CPC {run} was trained on, is not here: cannot check it is {src}'s")
    if not _same_weights(src / "stage1" / "cpc", theirs):
        raise ValueError(f"{run} was trained on c_t of another CPC than {src}'s")
    a, b = (json.loads((d / "generator" / CONFIG).read_text()) for d in (src, run))
    differ = [k for k in GENERATOR_KEYS if a.get(k) != b.get(k)]
    if differ:
        raise ValueError(f"{run}'s generator differs from {src}'s in {', '.join(differ)}")
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(src, tmp)
    shutil.rmtree(tmp / "generator")
    dt = getattr(torch, index.get("dtype", "float16"))
    settings = s2.get("settings", {})
    _copy_part(run / "generator", tmp / "generator", dt, _card(
        "s2v generator (stage 2)", "F(c_t, ν, μ): the frame generator with its identity branch (paper section 2.2), "
        f"swapped into this model from `{_rel(run)}`.", SYNTH, settings, s2.get("metrics", {}), LIMITS))
    index["parts"]["generator"] = _rel(run)
    index["stage2_settings"] = settings
    (tmp / "model_index.json").write_text(json.dumps(index, indent=1))
    how = ", ".join(f"`--{k.replace('_', '-')} {settings[k]}`" for k in ("augment", "augment_copies", "augment_pitch",
                                                                         "c_norm", "init_generator", "max_steps")
                    if settings.get(k))
    add_part(tmp, "generator", f"the generator from `{_rel(run)}`" + (f" ({how})" if how else ""))
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return _read(out / "model_index.json")


def swap_emotion(model_dir: str | Path, emotion_from: str | Path, out: str | Path | None = None) -> dict:
    """An assembled model folder with S_emo from the stage-1 run `emotion_from` (trained on this model's own
    CPC, checked weight by weight), S_id, the gallery and every other part kept: into `out` (a copy), or in
    place when `out` is None. Records the run in model_index.json and the students' card. Returns the index."""
    src, e1 = Path(model_dir), Path(emotion_from)
    out = Path(out) if out else src
    index = _read(src / "model_index.json")
    if not index:
        raise FileNotFoundError(f"{src}/model_index.json not found: is {src} an assembled model folder?")
    if not (e1 / "students" / WEIGHTS).exists() or not (e1 / "cpc" / WEIGHTS).exists():
        raise FileNotFoundError(f"{e1} is not a finished train/stage1.py run (students/ and cpc/ expected)")
    if not _same_weights(src / "stage1" / "cpc", e1 / "cpc"):
        raise ValueError(f"{e1} was trained on another CPC than {src}")
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(src, tmp)
    _swap_emotion_student(src / "stage1" / "students", e1 / "students", tmp / "stage1" / "students",
                          src / "stage1" / "gallery")
    settings = _read(e1 / "stage1.json").get("settings", {})
    index["parts"]["emotion_student"] = _rel(e1)
    accuracy = _read(e1 / "metrics.json").get("emotion_accuracy_seen_test")
    index["stage1_metrics"] = {**index.get("stage1_metrics", {}), "emotion_from": _rel(e1),
                               "emotion_accuracy_seen_test": accuracy}
    card = tmp / "stage1" / "students" / CARD
    if card.exists():  # one such paragraph, the latest swap's
        text = card.read_text().split("\n\nS_emo swapped in afterwards from ")[0]
        card.write_text(text.rstrip() + f"\n\nS_emo swapped in afterwards from `{_rel(e1)}` (same CPC; "
                        f"settings {json.dumps(settings)}); S_id kept.\n")
    (tmp / "model_index.json").write_text(json.dumps(index, indent=1))
    emo = settings.get("emo_input")
    trained = ", ".join([*([f"`--emo-input {emo}`"] if emo else []),
                         *([f"trained on `{settings['data']}`"] if settings.get("data") else []),
                         *([f"seen-test emotion accuracy {accuracy}"] if accuracy is not None else [])])
    add_part(tmp, "stage1/students", f"S_id kept; S_emo{f' ({trained})' if trained else ''} swapped in from "
                                     f"`{_rel(e1)}`; see its card")  # its size follows S_emo's input
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return _read(out / "model_index.json")


def add_part(model_dir: str | Path, part: str, description: str) -> None:
    """Record a part written into an assembled model folder after `bundle` (e.g. `stage1/speaker` by
    `python -m s2v.speaker`): its size in model_index.json (and the total) and its line in the card's Parts.
    Folders without a model_index.json (a training run, a test model) are left alone."""
    d = Path(model_dir)
    index_path = d / "model_index.json"
    if not index_path.exists():
        return
    index = json.loads(index_path.read_text())
    size = sum(f.stat().st_size for f in (d / part).rglob("*") if f.is_file())
    index.setdefault("bytes", {})[part] = size
    index["total_mb"] = round(sum(index["bytes"].values()) / 2 ** 20, 2)
    index_path.write_text(json.dumps(index, indent=1))
    card = d / CARD
    if card.exists():
        line = f"- `{part}` ({size / 2 ** 20:.1f} MB): {description}"
        lines = [x for x in card.read_text().splitlines() if not x.startswith(f"- `{part}` ")]
        parts = [i for i, x in enumerate(lines) if x.startswith("- `")]
        at = parts[-1] + 1 if parts else len(lines)
        card.write_text("\n".join(lines[:at] + [line] + lines[at:]) + "\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m s2v.bundle", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stage2", default=None, help="a finished train/stage2.py run (its stage2.json names stage 1)")
    p.add_argument("--model", default=None,
                   help="instead of --stage2: an assembled model folder whose S_emo (--emotion-from) or generator "
                        "(--generator-from) to replace (in place, or into --out when given)")
    p.add_argument("--teachers", default=None, help="train/teachers.py output (needed by the evaluation)")
    p.add_argument("--syncnet", default=None, help="train/syncnet.py output (needed for LSE-C/D)")
    p.add_argument("--out", default=None, help="the model folder to write (default: checkpoints/default, or --model)")
    p.add_argument("--dtype", default="float16", choices=("float16", "bfloat16", "float32"))
    p.add_argument("--emotion-from", default=None,
                   help="a stage-1 run on the same CPC whose emotion student replaces the one stage 2 was trained with")
    p.add_argument("--generator-from", default=None,
                   help="with --model: a stage-2 run on the same CPC whose generator replaces the model's (e.g. its own "
                        "generator fine-tuned with train/stage2.py --init-generator --augment)")
    p.add_argument("--identity-from", default=None,
                   help="a stage-1 run on the same CPC whose S_id and gallery voices to use (e.g. trained with "
                        "--augment: voices through a phone, a room or a codec still find their speaker)")
    p.add_argument("--identity", default=None, choices=("recall", "voice"),
                   help="how the pipeline uses a voice's ν by default: recall (onto the seen actors) or voice (decoded "
                        "as is); default: voice for a generator trained on ν* (--nu-source teacher|mix), else recall")
    a = p.parse_args(argv)
    if (a.stage2 is None) == (a.model is None):
        p.error("give --stage2 (assemble a model) or --model with --emotion-from (swap its S_emo)")
    if a.model and not (a.emotion_from or a.generator_from):
        p.error("--model needs --emotion-from or --generator-from")
    if a.generator_from and not a.model:
        p.error("--generator-from needs --model (an assembled model folder)")
    try:
        if a.model:
            a.out = a.out or a.model
            index = swap_generator(a.model, a.generator_from, a.out) if a.generator_from else None
            if a.emotion_from:
                index = swap_emotion(a.out if a.generator_from else a.model, a.emotion_from, a.out)
        else:
            a.out = a.out or "checkpoints/default"
            index = bundle(a.stage2, a.teachers, a.syncnet, a.out, a.dtype, a.emotion_from, a.identity,
                           a.identity_from)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"out": a.out, "total_mb": index["total_mb"], "bytes": index["bytes"]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
