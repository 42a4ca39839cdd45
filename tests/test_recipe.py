"""The recipe (train/recipe.py) resumes where it stopped; the bundle (python -m s2v.bundle) loads and stays small."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _recipe(tmp, *extra, env=None):
    return subprocess.run([sys.executable, "train/recipe.py", "--tiny", "--data", str(tmp / "data"), "--runs",
                           str(tmp / "runs"), "--bundle", str(tmp / "bundle"), "--assets", str(tmp / "assets"),
                           *extra], cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)


def test_recipe_gives_trainers_every_core(tmp_path):
    """accelerate launch would run a CPU trainer on one thread; the recipe passes the core count
    (or OMP_NUM_THREADS when the user set it) to every trainer it launches."""
    base = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    for env, want in [({"OMP_NUM_THREADS": "3"}, "3"), ({}, str(os.cpu_count()))]:
        dry = _recipe(tmp_path, "--dry-run", env={**base, **env})
        launches = [line for line in dry.stdout.splitlines() if "accelerate.commands.launch" in line]
        assert len(launches) == 9
        assert all(f"--num_cpu_threads_per_process {want} " in line for line in launches)


def test_recipe_runs_steps_and_skips_finished_ones(tmp_path):
    dry = _recipe(tmp_path, "--dry-run")
    assert dry.returncode == 0
    order = [line.split("]")[0][1:] for line in dry.stdout.splitlines()]
    assert order == ["corpus", "prepare", "faces", "teachers", "targets", "cpc", "stage1", "stage1-aug", "syncnet", "sync-judge",
                     "stage2", "stage2-sync", "judge-faces", "judge", "attributes", "assemble", "familiarity", "speaker", "evaluate", "assets"]
    assert "--sync-judge" in dry.stdout and "[stage2-sync]" in dry.stdout  # the bundle is fine-tuned with the loss
    plain = _recipe(tmp_path, "--dry-run", "--sync-loss", "0")
    assert "stage2-sync" not in plain.stdout and "--stage2 " + str(tmp_path / "runs" / "stage2") + " " in plain.stdout
    sync = _recipe(tmp_path, "--dry-run", "--sync-loss", "1", "--sync-pull", "0.05")
    order = [line.split("]")[0][1:] for line in sync.stdout.splitlines()]
    assert order[order.index("stage2") + 1] == "stage2-sync"
    line = next(x for x in sync.stdout.splitlines() if x.startswith("[stage2-sync]"))
    assert "--lambda-sync-expert 1.0" in line and "--sync-pull 0.05" in line and "--no-d-sync" in line
    assert line.split("--lambda-lower ")[-1].startswith("20.0")  # the last --lambda-lower is the one argparse keeps
    assert "--init-generator" in line
    assert "--augment-pitch 3" in line and "--c-norm mean" in line and "--augment 0.5" in line  # real voices
    clean = _recipe(tmp_path, "--dry-run", "--sync-clean-audio").stdout.splitlines()
    assert not any("--c-norm" in x or "--augment" in x for x in clean if x.startswith("[stage2"))
    aug = _recipe(tmp_path, "--dry-run", "--sync-augment", "0.5").stdout.splitlines()
    sync_lines = [x for x in aug if x.startswith(("[syncnet]", "[sync-judge]"))]
    assert len(sync_lines) == 2 and all("--augment 0.5" in x for x in sync_lines)
    assert not any("--dereverb" in x for x in aug)
    derev = _recipe(tmp_path, "--dry-run", "--sync-augment", "0.5", "--sync-dereverb").stdout.splitlines()
    sync_lines = [x for x in derev if x.startswith(("[syncnet]", "[sync-judge]"))]
    assert len(sync_lines) == 2 and all("--augment 0.5" in x and "--dereverb" in x for x in sync_lines)
    assert not any("--augment" in x for x in dry.stdout.splitlines() if x.startswith(("[syncnet]", "[sync-judge]")))
    # --sync-rooms: each expert fine-tuned from its own weights on degraded audio through the front end
    assert "-rooms]" not in dry.stdout
    rooms = _recipe(tmp_path, "--dry-run", "--sync-rooms").stdout.splitlines()
    order = [line.split("]")[0][1:] for line in rooms]
    assert order.index("sync-judge") < order.index("syncnet-rooms") < order.index("sync-judge-rooms") < order.index(
        "stage2")
    for name, init in (("syncnet-rooms", "syncnet"), ("sync-judge-rooms", "sync-judge")):
        line = next(x for x in rooms if x.startswith(f"[{name}]"))
        assert f"--init-expert {tmp_path / 'runs' / init} " in line and "--augment 0.5 --dereverb" in line
        assert ("--width 0.375" in line) == (init == "sync-judge")  # the judge's own layout, or --init-expert fails
    aug1 = next(x for x in dry.stdout.splitlines() if x.startswith("[stage1-aug]"))
    assert "--augment 0.5" in aug1 and "--identity-from" in dry.stdout
    assert "--stage2 " + str(tmp_path / "runs" / "stage2-sync") in sync.stdout  # the bundle is the fine-tuned one
    assert "--identity-judge" in dry.stdout and "--nu-source student" in dry.stdout and "--traits 1" in dry.stdout
    many = _recipe(tmp_path, "--dry-run", "--seen", "300", "--unseen", "40", "--clips-per-actor", "8", "--traits", "2",
                   "--nu-source", "mix")
    assert "--traits 2" in many.stdout and "--nu-source mix" in many.stdout  # (--tiny shrinks the counts)
    s1 = [x for x in dry.stdout.splitlines() if x.startswith(("[stage1]", "[stage1-aug]"))]
    assert len(s1) == 2 and all("--pool mean" in x and "--id-head" not in x for x in s1)
    lin = [x for x in _recipe(tmp_path, "--dry-run", "--id-head", "linear").stdout.splitlines()
           if x.startswith(("[stage1]", "[stage1-aug]"))]
    assert len(lin) == 2 and all("--pool stats --id-head linear" in x for x in lin)
    assert not any(x.startswith("[accent]") for x in dry.stdout.splitlines())  # no accent step unless asked
    acc = _recipe(tmp_path, "--dry-run", "--id-head", "linear", "--accent").stdout.splitlines()
    order = [x.split("]")[0][1:] for x in acc if x.startswith("[")]
    assert order.index("cpc") < order.index("accent") < order.index("stage1")
    assert "--cpc " + str(tmp_path / "runs" / "cpc") in next(x for x in acc if x.startswith("[accent]"))
    assert all("--accent " + str(tmp_path / "runs" / "accent") in x for x in acc if x.startswith(("[stage1]", "[stage1-aug]")))
    assert "--resume-from-checkpoint latest" in dry.stdout
    # --face-pool N: a step of N stills (another seed than the teachers' and judges' pools) that both stage-2 runs
    # decode; not without ν from the teacher's space
    assert not any(x.startswith("[face-stills]") or "--face-pool" in x for x in dry.stdout.splitlines())
    fp = _recipe(tmp_path, "--dry-run", "--nu-source", "mix", "--traits", "3", "--face-pool", "500").stdout.splitlines()
    stills = next(x for x in fp if x.startswith("[face-stills]"))
    assert "--stills --traits 3 --identities 6" in stills and "--seed 2" in stills  # (--tiny: 6)
    assert all("--face-pool " + str(tmp_path / "data" / "face-stills") in x
               for x in fp if x.startswith(("[stage2]", "[stage2-sync]")))
    assert _recipe(tmp_path, "--dry-run", "--face-pool", "500").returncode == 2  # --nu-source student
    # --profile gpu: 128 px, stage 2 in bf16 with a GPU batch; the CPU profile keeps the bundle's settings
    gpu = _recipe(tmp_path, "--dry-run", "--profile", "gpu", "--skip", "speaker,assets").stdout.splitlines()
    s2 = next(x for x in gpu if x.startswith("[stage2]"))
    assert "--mixed-precision bf16" in s2  # (--tiny shrinks the batch)
    assert "--size 128" in next(x for x in gpu if x.startswith("[prepare]"))
    assert not any(x.startswith(("[speaker]", "[assets]")) for x in gpu)
    cpu2 = next(x for x in dry.stdout.splitlines() if x.startswith("[stage2]"))
    assert "--mixed-precision" not in cpu2
    assert "--size 64" in next(x for x in dry.stdout.splitlines() if x.startswith("[prepare]"))
    assert _recipe(tmp_path, "--dry-run", "--skip", "nonsense").returncode == 2
    r = _recipe(tmp_path, "--until", "prepare")
    assert r.returncode == 0, r.stderr
    state = json.loads((tmp_path / "runs" / "recipe.json").read_text())
    assert set(state) == {"corpus", "prepare"} and all(s["done"] and s["seconds"] > 0 for s in state.values())
    assert (tmp_path / "data" / "prep64" / "index.json").exists()
    again = _recipe(tmp_path, "--until", "prepare")
    assert again.returncode == 0 and again.stdout.count("skipped") == 2
    # a step whose output went missing is not done, whatever recipe.json says
    (tmp_path / "data" / "prep64" / "report.json").unlink()
    assert "[prepare] done in" in _recipe(tmp_path, "--until", "prepare").stdout
    bad = _recipe(tmp_path, "--only", "nonsense")
    assert bad.returncode == 2 and "unknown step" in bad.stderr


def _stage2_run(tiny_model, stage1, run):
    """A finished-looking stage-2 run folder: the tiny generator and a stage2.json naming `stage1`."""
    shutil.copytree(tiny_model / "generator", run / "generator")
    (run / "stage2.json").write_text(json.dumps({"stage1": str(stage1), "settings": {}, "metrics": {}}))
    return run


def test_bundle_loads_in_float16_and_matches(tiny_model, tiny_prep, tmp_path, speech_wav):
    from safetensors import safe_open

    from s2v.bundle import bundle
    from s2v.pipeline import Speech2Video

    run = tmp_path / "stage2-run"
    shutil.copytree(tiny_model / "generator", run / "generator")
    (run / "stage2.json").write_text(json.dumps({"stage1": str(tiny_model / "stage1"), "settings": {"context": 0},
                                                 "metrics": {"steps": 0}}))
    out = tmp_path / "default"
    index = bundle(run, tiny_prep.parent / "teachers", None, out)
    assert {"generator", "stage1/cpc", "stage1/students", "stage1/gallery", "teachers/identity",
            "teachers/emotion"} <= set(index["bytes"])
    with safe_open(str(out / "generator" / "model.safetensors"), "pt") as f:
        dtypes = {str(f.get_tensor(k).dtype) for k in f.keys()}
    assert "torch.float16" in dtypes and "torch.float32" not in dtypes
    for part in ("generator", "stage1/students", "teachers/identity"):
        card = (out / part / "README.md").read_text()
        assert all(h in card for h in ("## Training data", "## Settings", "## Metrics", "## Limitations")), part
    size = lambda d: sum(p.stat().st_size for p in d.rglob("*.safetensors"))  # noqa: E731
    assert size(out / "generator") < 0.6 * size(tiny_model / "generator")
    a = Speech2Video.from_pretrained(out, device="cpu")(speech_wav)
    b = Speech2Video.from_pretrained(tiny_model, device="cpu")(speech_wav)
    assert a.frames.shape == b.frames.shape
    assert np.abs(a.frames.astype(int) - b.frames.astype(int)).mean() < 1.0  # float16 storage, same model
    assert (out / "teachers" / "identity" / "config.json").exists() and not (tmp_path / "default.tmp").exists()
    # identity: a generator trained on the student's ν recalls by default; the bundle can say otherwise
    assert index["identity"] == "recall" and Speech2Video.from_pretrained(out, device="cpu").recall is not None
    index = bundle(run, None, None, out, identity="voice")
    assert index["identity"] == "voice" and Speech2Video.from_pretrained(out, device="cpu").recall is None
    assert Speech2Video.from_pretrained(out, device="cpu", recall=0.05).recall == 0.05
    # parts written after assembly (python -m s2v.speaker, s2v.familiar) are recorded in the index and card, once
    import torch

    from s2v.speaker import SpeakerEncoder
    from s2v.speaker import main as speaker_main

    torch.save({"model_state": {k: v for k, v in SpeakerEncoder().state_dict().items() if k != "keys"}},
               tmp_path / "pretrained.pt")
    total = json.loads((out / "model_index.json").read_text())["total_mb"]
    for _ in range(2):
        assert speaker_main(["--data", str(tiny_prep), "--model", str(out), "--weights", str(tmp_path / "pretrained.pt")]) == 0
    index = json.loads((out / "model_index.json").read_text())
    spk = sum(f.stat().st_size for f in (out / "stage1" / "speaker").iterdir())
    assert index["bytes"]["stage1/speaker"] == spk and index["total_mb"] == pytest.approx(total + spk / 2 ** 20, abs=0.01)
    card = (out / "README.md").read_text()
    assert card.count("- `stage1/speaker` (") == 1 and card.index("stage1/speaker") < card.index("## Stage 1 metrics")


def test_bundle_takes_the_emotion_student_from_another_stage1(tiny_model, tmp_path):
    import dataclasses

    import torch

    from s2v.bundle import bundle
    from s2v.pipeline import Speech2Video
    from s2v.students import Students

    s1 = tmp_path / "s1"
    shutil.copytree(tiny_model / "stage1", s1)
    (s1 / "stage1.json").write_text(json.dumps({"cpc": "runs/cpc"}))
    e1 = tmp_path / "e1"
    shutil.copytree(s1, e1)
    old = Students.from_pretrained(s1 / "students")
    torch.manual_seed(5)
    new = Students(dataclasses.replace(old.config, emo_level=True))
    new.save_pretrained(e1 / "students")
    (e1 / "metrics.json").write_text(json.dumps({"emotion_accuracy_seen_test": 0.5}))
    run = _stage2_run(tiny_model, s1, tmp_path / "run")
    index = bundle(run, None, None, tmp_path / "out", emotion_from=e1)
    assert index["stage1_metrics"]["emotion_accuracy_seen_test"] == 0.5 and index["parts"]["emotion_student"] == str(e1)
    got = Speech2Video.from_pretrained(tmp_path / "out", device="cpu").students
    assert got.config.emo_level
    for k, v in got.state_dict().items():
        ref = (new if k.startswith("s_emo.") else old).state_dict()[k]
        assert torch.allclose(v, ref.half().float(), atol=1e-3), k
    # a speaker-normalised prosody student: its keys become this S_id's voices
    from s2v.gallery import Gallery

    gal = Gallery.load(s1 / "gallery")
    gal.voice = np.random.default_rng(1).normal(size=gal.embeddings.shape).astype(np.float32)
    gal.save(s1 / "gallery")
    e2 = tmp_path / "e2"
    shutil.copytree(s1, e2)
    pros = Students(dataclasses.replace(old.config, emo_input="prosody", emo_speakers=len(gal.ids)))
    pros.set_speakers(keys=torch.randn(len(gal.ids), old.config.id_dim), bases=torch.randn(len(gal.ids), pros.config.emo_features))
    pros.save_pretrained(e2 / "students")
    bundle(run, None, None, tmp_path / "out3", emotion_from=e2)
    pipe = Speech2Video.from_pretrained(tmp_path / "out3", device="cpu")
    got = pipe.students
    assert got.config.emo_input == "prosody" and not got.config.emo_level
    assert torch.allclose(got.speaker_keys, torch.nn.functional.normalize(torch.from_numpy(gal.voice), dim=-1), atol=1e-3)
    assert torch.allclose(got.speaker_bases, pros.speaker_bases.half().float(), atol=1e-2)
    assert torch.allclose(got.s_id[0].weight, old.s_id[0].weight.half().float(), atol=1e-3)
    pipe.vad = False  # noise as input: this checks the students' plumbing, not the speech check
    assert pipe(np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32)).frames.ndim == 4
    (e1 / "stage1.json").write_text(json.dumps({"cpc": "runs/other-cpc"}))
    with pytest.raises(ValueError, match="another CPC"):
        bundle(run, None, None, tmp_path / "out2", emotion_from=e1)


def test_swap_emotion_into_an_assembled_model(tiny_model, tmp_path):
    """`python -m s2v.bundle --model M --emotion-from RUN`: S_emo (and its input's form) from the run, S_id, the
    gallery and the generator kept, the run recorded; a run on another CPC is refused, as is a folder that was
    never assembled."""
    import dataclasses

    import torch

    from s2v.bundle import bundle, main
    from s2v.cpc import CPC
    from s2v.pipeline import Speech2Video
    from s2v.students import Students

    s1 = tmp_path / "s1"
    shutil.copytree(tiny_model / "stage1", s1)
    (s1 / "stage1.json").write_text(json.dumps({"cpc": "runs/cpc"}))
    model = tmp_path / "model"
    bundle(_stage2_run(tiny_model, s1, tmp_path / "run"), None, None, model)
    e1 = tmp_path / "e1"
    shutil.copytree(s1, e1)
    old = Students.from_pretrained(s1 / "students")
    torch.manual_seed(7)
    new = Students(dataclasses.replace(old.config, emo_input="prosody-pitch"))
    new.save_pretrained(e1 / "students")
    (e1 / "metrics.json").write_text(json.dumps({"emotion_accuracy_seen_test": 0.7}))
    assert main(["--model", str(model), "--emotion-from", str(e1), "--out", str(tmp_path / "swapped")]) == 0
    index = json.loads((tmp_path / "swapped" / "model_index.json").read_text())
    assert index["parts"]["emotion_student"] == str(e1) and index["stage1_metrics"]["emotion_accuracy_seen_test"] == 0.7
    students_bytes = sum(f.stat().st_size for f in (tmp_path / "swapped" / "stage1" / "students").iterdir())
    assert index["bytes"]["stage1/students"] == students_bytes
    assert f"- `stage1/students` ({students_bytes / 2 ** 20:.1f} MB)" in (tmp_path / "swapped" / "README.md").read_text()
    got = Speech2Video.from_pretrained(tmp_path / "swapped", device="cpu").students
    assert got.config.emo_input == "prosody-pitch"
    for k, v in got.state_dict().items():
        ref = (new if k.startswith(("s_emo.", "emo_norm.")) else old).state_dict()[k]
        assert torch.allclose(v.float(), ref.half().float(), atol=1e-3), k
    assert (tmp_path / "swapped" / "generator").exists() and "emotion_student" not in json.loads(
        (model / "model_index.json").read_text())["parts"]  # the source folder untouched
    assert "swapped in afterwards" in (tmp_path / "swapped" / "stage1" / "students" / "README.md").read_text()
    assert "seen-test emotion accuracy 0.7" in (tmp_path / "swapped" / "README.md").read_text()
    assert main(["--model", str(tmp_path / "swapped"), "--emotion-from", str(e1)]) == 0  # again, in place
    assert (tmp_path / "swapped" / "stage1" / "students" / "README.md").read_text().count("swapped in afterwards") == 1
    torch.manual_seed(8)
    CPC(CPC.from_pretrained(e1 / "cpc").config).save_pretrained(e1 / "cpc")  # other weights
    assert main(["--model", str(model), "--emotion-from", str(e1), "--out", str(tmp_path / "x")]) == 2
    assert main(["--model", str(s1), "--emotion-from", str(e1)]) == 2  # not an assembled folder
    with pytest.raises(SystemExit):
        main(["--model", str(model)])  # nothing to swap in


def test_swap_generator_into_an_assembled_model(tiny_model, tmp_path):
    """`python -m s2v.bundle --model M --generator-from RUN`: the run's generator (cast to the model's dtype),
    every other part kept, the run and its settings recorded; a run on another CPC or with another generator
    layout is refused."""
    import torch

    from s2v.bundle import bundle, main
    from s2v.cpc import CPC
    from s2v.generator import Generator
    from s2v.pipeline import Speech2Video

    model = tmp_path / "model"
    bundle(_stage2_run(tiny_model, tiny_model / "stage1", tmp_path / "run"), None, None, model)
    run = tmp_path / "tuned"
    g = Generator.from_pretrained(tiny_model / "generator")
    torch.manual_seed(3)
    tuned = Generator(g.config)
    tuned.save_pretrained(run / "generator")
    (run / "stage2.json").write_text(json.dumps({"stage1": str(tiny_model / "stage1"), "metrics": {},
                                                 "settings": {"augment": 0.5, "augment_copies": 2, "c_norm": "mean",
                                                              "max_steps": 9}}))
    assert main(["--model", str(model), "--generator-from", str(run), "--out", str(tmp_path / "swapped")]) == 0
    index = json.loads((tmp_path / "swapped" / "model_index.json").read_text())
    assert index["parts"]["generator"] == str(run) and index["stage2_settings"]["augment"] == 0.5
    card = (tmp_path / "swapped" / "README.md").read_text()
    assert "`--augment 0.5`" in card and "`--c-norm mean`" in card and card.count("- `generator` ") == 1
    pipe = Speech2Video.from_pretrained(tmp_path / "swapped", device="cpu")
    for k, v in pipe.generator.state_dict().items():
        assert torch.allclose(v.float(), tuned.state_dict()[k].half().float(), atol=1e-3), k
    before = Speech2Video.from_pretrained(model, device="cpu")
    for part in ("students", "cpc"):
        a, b = getattr(pipe, part).state_dict(), getattr(before, part).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), part
    assert json.loads((model / "model_index.json").read_text())["parts"]["generator"] == str(tmp_path / "run")
    # refused: another layout; a run whose stage 1 has another CPC
    import dataclasses

    Generator(dataclasses.replace(g.config, base=g.config.base * 2)).save_pretrained(run / "generator")
    assert main(["--model", str(model), "--generator-from", str(run), "--out", str(tmp_path / "x")]) == 2
    tuned.save_pretrained(run / "generator")
    s1 = tmp_path / "s1"
    shutil.copytree(tiny_model / "stage1", s1)
    torch.manual_seed(8)
    CPC(CPC.from_pretrained(s1 / "cpc").config).save_pretrained(s1 / "cpc")
    (run / "stage2.json").write_text(json.dumps({"stage1": str(s1), "settings": {}, "metrics": {}}))
    assert main(["--model", str(model), "--generator-from", str(run), "--out", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()
    with pytest.raises(SystemExit):
        main(["--stage2", str(run), "--generator-from", str(run)])  # needs --model


def test_emotion_swap_keeps_dtypes_when_a_counter_comes_first(tmp_path):
    """A float32 students part whose first tensor is BatchNorm's int64 counter: the swapped S_emo stays float."""
    import dataclasses

    import torch
    from safetensors.torch import load_file

    from s2v.bundle import _swap_emotion_student
    from s2v.gallery import Gallery
    from s2v.students import Students, StudentsConfig

    cfg = StudentsConfig(in_dim=16, id_dim=8, hidden=16, emo_input="prosody", emo_speakers=2)
    torch.manual_seed(0)
    a, b = Students(cfg), Students(dataclasses.replace(cfg))
    for s in (a, b):
        s.set_speakers(keys=torch.randn(2, 8), bases=torch.randn(2, cfg.emo_features))
    a.save_pretrained(tmp_path / "a" / "students")
    b.save_pretrained(tmp_path / "b" / "students")
    assert next(iter(load_file(str(tmp_path / "a" / "students" / "model.safetensors")).values())).dtype == torch.int64
    g = Gallery(["1", "2"], np.ones((2, 8), np.float32), np.zeros((2, 4, 4, 3), np.uint8), {"1": {}, "2": {}},
                voice=np.random.default_rng(0).normal(size=(2, 8)).astype(np.float32))
    for d in ("a", "b"):
        g.save(tmp_path / d / "gallery")
    _swap_emotion_student(tmp_path / "a" / "students", tmp_path / "b" / "students", tmp_path / "a" / "students",
                          tmp_path / "a" / "gallery")
    got = Students.from_pretrained(tmp_path / "a" / "students")
    for k, v in got.state_dict().items():
        ref = (a if k.startswith("s_id.") else b).state_dict()[k]
        if k != "speaker_keys":
            assert v.dtype == ref.dtype and torch.allclose(v.float(), ref.float()), k


def test_bundle_takes_the_identity_student_from_another_run(tiny_model, tmp_path):
    """--identity-from: S_id and the gallery from one stage-1 run, S_emo from the run stage 2 was trained on."""
    import torch

    from s2v.bundle import bundle
    from s2v.gallery import Gallery
    from s2v.students import Students

    s1, aug = tmp_path / "s1", tmp_path / "aug"
    shutil.copytree(tiny_model / "stage1", s1)
    (s1 / "stage1.json").write_text(json.dumps({"cpc": "runs/cpc"}))
    shutil.copytree(s1, aug)
    base = Students.from_pretrained(s1 / "students")
    torch.manual_seed(7)
    other = Students(base.config)
    other.save_pretrained(aug / "students")
    g = Gallery.load(aug / "gallery")
    g.voice = np.random.default_rng(2).normal(size=g.embeddings.shape).astype(np.float32)
    g.save(aug / "gallery")
    (aug / "metrics.json").write_text(json.dumps({"identity_top1_seen_test": 0.77}))
    run = _stage2_run(tiny_model, s1, tmp_path / "run")
    index = bundle(run, None, None, tmp_path / "out", identity_from=aug)
    assert index["parts"]["identity_student"] == str(aug) and index["stage1_metrics"]["identity_top1_seen_test"] == 0.77
    got = Students.from_pretrained(tmp_path / "out" / "stage1" / "students")
    for k, v in got.state_dict().items():
        ref = (other if k.startswith("s_id.") else base).state_dict()[k]
        assert torch.allclose(v.float(), ref.float().half().float(), atol=1e-3), k
    assert np.allclose(Gallery.load(tmp_path / "out" / "stage1" / "gallery").voice, g.voice)
    (aug / "stage1.json").write_text(json.dumps({"cpc": "runs/other-cpc"}))
    with pytest.raises(ValueError, match="another CPC"):
        bundle(run, None, None, tmp_path / "out2", identity_from=aug)
