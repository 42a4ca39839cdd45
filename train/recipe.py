"""The whole recipe, from nothing to the bundled model: corpus -> prepare -> faces -> teachers -> CPC ->
[accent ->] stage 1 (and stage1-aug) -> stage 2 -> sync expert -> held-out judges (emotion, identity and its sex and age classifiers) ->
assembly of checkpoints/default (+ familiarity, speaker keys) -> evaluation -> app examples.

    python train/recipe.py                      # everything, resuming where it stopped
    python train/recipe.py --dry-run            # print the commands only
    python train/recipe.py --from stage2        # redo from a step on (earlier outputs kept)
    python train/recipe.py --only evaluate
    python train/recipe.py --until stage1       # stop after a step
    python train/recipe.py --profile gpu --data data128 --runs runs128 --bundle runs128/bundle --skip speaker
                                                # 128 px with GPU settings (README "GPU")

Each step runs as its own command (the same ones the README documents, trainers under
`accelerate launch`), logs to RUNS/recipe-logs/STEP.log, and is marked done in RUNS/recipe.json
with its wall time once its output exists. A step that was interrupted reruns; the trainers
resume from their latest checkpoint (`--resume-from-checkpoint latest`), the corpus and prepare
steps keep finished clips. `--tiny` shrinks every step (2 actors, a few steps each) to check the
plumbing in minutes.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
# `accelerate launch` gives a CPU process one thread unless told (OMP_NUM_THREADS=1): the trainers
# ran 1.7x slower on this 2-core machine. Use every core, or what OMP_NUM_THREADS says.
THREADS = os.environ.get("OMP_NUM_THREADS") or str(os.cpu_count() or 1)
LAUNCH = [PY, "-m", "accelerate.commands.launch", "--num_processes", "1", "--num_cpu_threads_per_process", THREADS]


def steps(a) -> list[tuple[str, list[str], Path]]:
    """(name, command, the file whose existence marks the step done)."""
    d, r = Path(a.data), Path(a.runs)
    corpus, prep, faces, judge_faces = d / "crema-synth", d / f"prep{a.size}", d / "faces", d / "faces-judge"
    stills = d / "face-stills"  # --face-pool: faces that need no voice, for stage 2's face decoder
    tiny = a.tiny
    n = (lambda full, small: str(small if tiny else full))  # noqa: E731
    resume = ["--resume-from-checkpoint", "latest"]
    common = ["--num-workers", n(2, 0)]
    sync_small = ["--min-shift", "1", "--candidates", "3", "--eval-clips", "2"] if tiny else []
    sync_flags = sync_small + (["--augment", str(a.sync_augment)] if a.sync_augment else [])
    sync_flags = sync_flags + (["--dereverb"] if a.sync_dereverb else [])
    judge_layout = ["--seed", "1", "--width", "0.375", "--embed-dim", "128"]  # the sync judge's, not the expert's
    final = r / ("stage2-sync" if a.sync_loss else "stage2")
    gpu = a.profile == "gpu"
    g = (lambda cpu, on_gpu: str(on_gpu if gpu else cpu))  # noqa: E731
    if gpu:
        common = ["--num-workers", n(8, 0)]
    # stage 2 on a GPU: 16x the batch for 2/3 of the steps (same learning rates), bf16 autocast, batches drawn on
    # the device (train/stage2.py --batches auto); docs/training.md "On a GPU"
    s2_fast = ["--mixed-precision", "bf16"] if gpu else []
    # S_id: eq. 3's MLP on the mean of c_t (the bundle's), or one ridge map of its mean and SD (--id-head linear)
    s_id = ["--pool", "mean"] if a.id_head == "mlp" else ["--pool", "stats", "--id-head", "linear"]
    if a.accent:  # ω also holds an accent head's posteriors (its own step, on a voice pool through the CPC)
        s_id += ["--accent", str(r / "accent")]
    # stage 2's settings, shared by stage2-sync (its --init-generator must match them)
    stage2 = ["train/stage2.py", "--data", str(prep), "--stage1", str(r / "stage1"), "--teachers", str(r / "teachers"),
              "--nu-source", a.nu_source, "--context", "2", "--lambda-lower", "10", "--lambda-expr", "2",
              "--expr-region", "upper", "--batch-size", n(g(16, 256), 4), *s2_fast,
              *(["--face-pool", str(stills), "--pool-batch", n(g(8, 128), 2)] if a.face_pool else [])]
    # stage2-sync also hears degraded copies of the speech in shifted voices, and reads each clip's c_t less the
    # training voices' mean: real microphone voices (README, Real voices)
    sync_voices = [] if a.sync_clean_audio else ["--augment", "0.5", "--augment-copies", n(2, 1), "--augment-pitch",
                                                 "3", "--c-norm", "mean"]
    return [
        ("corpus", [PY, "-m", "s2v.corpus", "make", "--out", str(corpus), "--seen", n(a.seen, 3), "--unseen",
                    n(a.unseen, 2), "--sentences", n(12, 2), "--size", n(128, 64),
                    "--clips-per-actor", n(a.clips_per_actor, 3), "--traits", str(a.traits),
                    "--level-spread", str(a.level_spread)],
         corpus / "actors.json"),
        ("prepare", [PY, "-m", "s2v.corpus", "prepare", "--dataset", "crema-d", "--root", str(corpus), "--out",
                     str(prep), "--size", str(a.size)], prep / "report.json"),
        ("faces", [PY, "-m", "s2v.corpus", "faces", "--out", str(faces), "--identities", n(200, 12),
                   "--per-identity", n(24, 4), "--size", str(a.size)], faces / "labels.csv"),
        # seed 2: neither the teachers' pool (0) nor the judges' (1)
        *([("face-stills", [PY, "-m", "s2v.corpus", "faces", "--out", str(stills), "--stills", "--traits",
                            str(a.traits), "--identities", n(a.face_pool, 6), "--size", str(a.size), "--seed", "2"],
            stills / "labels.csv")] if a.face_pool else []),
        ("teachers", [*LAUNCH, "train/teachers.py", "--data", str(faces), "--output-dir", str(r / "teachers"),
                      "--max-steps", n(2500, 4), "--batch-size", n(64, 8), "--holdout-identities", n(20, 4),
                      "--image-size", str(a.size), *common, *resume], r / "teachers" / "metrics.json"),
        ("targets", [PY, "-m", "s2v.targets", "--data", str(prep), "--teachers", str(r / "teachers")],
         prep / "targets.npz"),
        ("cpc", [*LAUNCH, "train/cpc.py", "--data", str(prep), "--output-dir", str(r / "cpc"), "--max-steps",
                 n(1000, 4), "--batch-size", n(8, 4), *common, *resume], r / "cpc" / "metrics.json"),
        *([("accent", [PY, "-m", "s2v.accent", "--cpc", str(r / "cpc"), "--out", str(r / "accent"), "--voices",
                       n(1000, 10), "--clips-per-voice", n(8, 2), "--epochs", n(6, 1)], r / "accent" / "metrics.json")]
          if a.accent else []),
        ("stage1", [*LAUNCH, "train/stage1.py", "--data", str(prep), "--cpc", str(r / "cpc"), "--teachers",
                    str(r / "teachers"), "--output-dir", str(r / "stage1"), *s_id, "--distill",
                    "teacher-weighted", "--emo-input", a.emo_input, "--emo-speakers", "--max-steps", n(3000, 4),
                    "--batch-size", n(64, 4), *common, *resume],
         r / "stage1" / "metrics.json"),
        # the same students trained on degraded copies too: the bundle's S_id (voices through a phone, a room or a
        # codec still find their speaker); its S_emo stays stage1's
        ("stage1-aug", [*LAUNCH, "train/stage1.py", "--data", str(prep), "--cpc", str(r / "cpc"), "--teachers",
                        str(r / "teachers"), "--output-dir", str(r / "stage1-aug"), *s_id, "--distill",
                        "teacher-weighted", "--emo-input", a.emo_input, "--emo-speakers", "--max-steps", n(3000, 4),
                        "--batch-size", n(64, 4), "--augment", "0.5", "--augment-copies", n(2, 1), *common, *resume],
         r / "stage1-aug" / "metrics.json"),
        ("syncnet", [*LAUNCH, "train/syncnet.py", "--data", str(prep), "--output-dir", str(r / "syncnet"),
                     "--max-steps", n(1500, 4), "--batch-size", n(32, 4), "--checkpointing-steps", n(250, 2),
                     *sync_flags, *common, *resume], r / "syncnet" / "metrics.json"),
        # a second sync expert (another seed and width) that no training step sees: the evaluation's sync judge,
        # since stage2-sync trains through the first
        ("sync-judge", [*LAUNCH, "train/syncnet.py", "--data", str(prep), "--output-dir", str(r / "sync-judge"),
                        *judge_layout, "--max-steps", n(1500, 4),
                        "--batch-size", n(32, 4), "--checkpointing-steps", n(250, 2), *sync_flags, *common, *resume],
         r / "sync-judge" / "metrics.json"),
        # with --sync-rooms: each expert fine-tuned from its weights on degraded audio heard through the WPE front end
        # (docs/training.md, "A front end for rooms"); nothing trains through them
        *[(f"{x}-rooms", [*LAUNCH, "train/syncnet.py", "--data", str(prep), "--output-dir", str(r / f"{x}-rooms"),
                          "--init-expert", str(r / x), *extra, "--augment", "0.5", "--dereverb", "--reverb-copies",
                          n(2, 1), "--learning-rate", "3e-4", "--max-steps", n(1000, 4), "--batch-size", n(32, 4),
                          "--checkpointing-steps", n(250, 2), *sync_small, *common, *resume],
           r / f"{x}-rooms" / "metrics.json")
          for x, extra in (("syncnet", []), ("sync-judge", judge_layout))
          if a.sync_rooms],
        ("stage2", [*LAUNCH, *stage2, "--output-dir", str(r / "stage2"), "--max-steps", n(g(3000, 2000), 4),
                    "--checkpointing-steps", n(250, 2), "--sample-steps", n(500, 2), *common, *resume],
         r / "stage2" / "stage2.json"),
        *([("stage2-sync", [*LAUNCH, *stage2, "--output-dir", str(r / "stage2-sync"), "--init-generator",
                            str(r / "stage2"), "--no-d-sync", "--lambda-sync-expert", str(a.sync_loss),
                            "--sync-expert", str(r / "syncnet"), "--sync-pull", str(a.sync_pull),
                            "--lambda-lower", str(a.sync_lower), "--sync-batch",
                            n(g(8, 32), 2), "--max-steps", n(a.sync_steps, 2), "--checkpointing-steps", n(100, 2),
                            "--sample-steps", n(250, 2), *sync_voices, *common, *resume], r / "stage2-sync" / "stage2.json")]
          if a.sync_loss else []),
        # a second emotion network, on a face pool drawn with another seed, that no training step sees: the
        # evaluation's check on emotion, since stage 2 trains against T_emo's features (--lambda-expr)
        ("judge-faces", [PY, "-m", "s2v.corpus", "faces", "--out", str(judge_faces), "--identities", n(200, 12),
                         "--per-identity", n(24, 4), "--size", str(a.size), "--seed", "1"],
         judge_faces / "labels.csv"),
        ("judge", [*LAUNCH, "train/teachers.py", "--data", str(judge_faces), "--output-dir", str(r / "judge"),
                   "--seed", "1", "--max-steps", n(1500, 4), "--batch-size", n(64, 8), "--holdout-identities",
                   n(20, 4), "--image-size", str(a.size), *common, *resume], r / "judge" / "metrics.json"),
        # the evaluation's attribute judge (sex, age group), trained on the judge's own face pool
        ("attributes", [PY, "-m", "s2v.attributes", "--faces", str(judge_faces), "--judge", str(r / "judge"),
                        "--epochs", n(10, 2)], r / "judge" / "attributes" / "config.json"),
        ("assemble", [PY, "-m", "s2v.bundle", "--stage2", str(final), "--teachers", str(r / "teachers"),
                      "--syncnet", str(r / "syncnet"), "--identity-from", str(r / "stage1-aug"), "--out", str(a.bundle)],
         Path(a.bundle) / "model_index.json"),
        # how far a voice is from the training voices: the emotion read-out says "uncertain" beyond it
        ("familiarity", [PY, "-m", "s2v.familiar", "--data", str(prep), "--model", str(a.bundle)],
         Path(a.bundle) / "stage1" / "familiarity" / "familiarity.json"),
        # who a voice recalls, by a speaker encoder trained on real speech (Resemblyzer's GE2E, weights from its
        # PyPI wheel): real microphones, rooms and phone lines find their nearest seen actor
        ("speaker", [PY, "-m", "s2v.speaker", "--data", str(prep), "--model", str(a.bundle)],
         Path(a.bundle) / "stage1" / "speaker" / "config.json"),
        ("evaluate", [PY, "-m", "s2v.evaluate", "--data", str(prep), "--model", str(a.bundle), "--out",
                      str(r / "eval"), "--baselines", "--limit", n(100, 2), "--emotion-judge", str(r / "judge"),
                      "--identity-judge", str(r / "judge"), "--sync-judge", str(r / "sync-judge")],
         r / "eval" / "results.json"),
        ("assets", [PY, "-m", "s2v.corpus", "assets", "--data", str(prep), "--corpus", str(corpus), "--out",
                    str(a.assets)], Path(a.assets) / "voices" / "unseen"),
    ]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data", help="where the corpus, face pool and prepared shards go")
    p.add_argument("--runs", default="runs", help="where the training runs go")
    p.add_argument("--bundle", default="checkpoints/default", help="the assembled model folder")
    p.add_argument("--assets", default="assets", help="the app's example voices and stills")
    p.add_argument("--profile", default="cpu", choices=("cpu", "gpu"),
                   help="cpu: the bundled 64 px model's settings (about 3 h on 2 cores); gpu: 128 px, stage 2 with "
                        "batch 256 in bf16 for 2000 steps and its sync fine-tuning with 32 windows a step, 8 loader "
                        "workers (docs/training.md 'On a GPU')")
    p.add_argument("--size", type=int, default=None, help="face side in pixels (default: 64, or 128 with --profile gpu)")
    p.add_argument("--skip", default="", help="steps to leave out, comma-separated (e.g. speaker where its weights "
                                              "cannot be fetched: the GPU machine has no internet)")
    # the defaults make the bundled model (24 actors x 72 clips); the many-identity model of the README's
    # open-set results is --seen 300 --unseen 40 --clips-per-actor 8 --traits 3 --nu-source mix (traits 2: the first round)
    p.add_argument("--seen", type=int, default=24, help="training actors of the corpus")
    p.add_argument("--unseen", type=int, default=6, help="actors held out whole")
    p.add_argument("--clips-per-actor", type=int, default=0, help="clips each actor speaks (0: all 72)")
    p.add_argument("--traits", type=int, default=1, choices=(1, 2, 3),
                   help="what a voice shares with a face (python -m s2v.corpus make --traits)")
    p.add_argument("--level-spread", type=float, default=6.0,
                   help="each clip's recording level drawn within ± this many dB (python -m s2v.corpus make "
                        "--level-spread; 0: every actor at one level, as the corpus was made before 2026-11-23)")
    p.add_argument("--emo-input", default="prosody-pitch", choices=("prosody", "prosody-pitch"),
                   help="what S_emo reads (train/stage1.py --emo-input): prosody-pitch is gain-free (the bundle's); "
                        "prosody also reads absolute loudness, which a microphone's gain moves")
    p.add_argument("--nu-source", default="student", choices=("student", "teacher", "mix"),
                   help="ν stage 2 trains the generator on (train/stage2.py --nu-source)")
    p.add_argument("--id-head", default="mlp", choices=("mlp", "linear"),
                   help="S_id: eq. 3's MLP on the mean of c_t (the bundle's), or one linear map of its mean and SD "
                        "fitted in closed form (train/stage1.py --pool stats --id-head linear; many identities)")
    p.add_argument("--accent", action="store_true",
                   help="step accent: an accent head trained on a pool of 1,000 synthetic voices (python -m s2v.accent), "
                        "whose posteriors S_id also reads (train/stage1.py --accent; with --traits 3 --id-head linear)")
    p.add_argument("--face-pool", type=int, default=0,
                   help="step face-stills: that many stills of identities that need no voice (python -m s2v.corpus "
                        "faces --stills), which stage 2 decodes from their ν* beside the corpus' frames "
                        "(train/stage2.py --face-pool; needs --nu-source teacher or mix; 0: none)")
    p.add_argument("--sync-loss", type=float, default=0.5,
                   help="weight of the expert sync loss in a fine-tuning of stage 2 (step stage2-sync: from stage 2's "
                        "generator, D_sync left out; the bundle's setting; 0: no such step, the paper's D_sync alone)")
    p.add_argument("--sync-steps", type=int, default=1000, help="steps of stage2-sync")
    p.add_argument("--sync-pull", type=float, default=0.05,
                   help="stage2-sync's --sync-pull (the bundle's setting)")
    p.add_argument("--sync-lower", type=float, default=20.0,
                   help="stage2-sync's --lambda-lower (20: the lower-face L1 holds the mouth's expression while the sync "
                        "loss times it; at stage 2's 10, emotion by the held-out judge fell to 0.57)")
    p.add_argument("--sync-augment", type=float, default=0.0,
                   help="train the sync expert and the sync judge on degraded audio too (train/syncnet.py --augment; "
                        "0.5 keeps their LSE-C under phone, Opus and noise, README; 0: as the bundle was made)")
    p.add_argument("--sync-dereverb", action="store_true",
                   help="the sync expert and the sync judge hear audio through a WPE dereverberation front end "
                        "(train/syncnet.py --dereverb; with --sync-augment their room examples are dereverberated too)")
    p.add_argument("--sync-rooms", action="store_true",
                   help="also fine-tune the sync expert and the sync judge on degraded audio with the WPE front end "
                        "(syncnet-rooms, sync-judge-rooms; ~20 min each on 2 cores): experts that score real video "
                        "against audio from a phone line, noise or a codec at >= 0.8 of clean, a room at 0.79-0.80 "
                        "(docs/training.md)")
    p.add_argument("--sync-clean-audio", action="store_true",
                   help="stage2-sync on the clean corpus audio alone, c_t as it comes (bundles before 2026-11-24); by "
                        "default it also trains on degraded, pitch-shifted copies with --c-norm mean (real voices)")
    p.add_argument("--from", dest="start", default=None, help="rerun from this step on")
    p.add_argument("--only", default=None, help="run just this step")
    p.add_argument("--until", default=None, help="stop after this step")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    p.add_argument("--tiny", action="store_true", help="every step shrunk: a plumbing check in minutes")
    a = p.parse_args(argv)
    a.size = a.size or (128 if a.profile == "gpu" else 64)
    if a.face_pool and a.nu_source == "student":
        p.error("--face-pool trains the generator on the pool's teacher ν*: give --nu-source mix (or teacher)")
    plan = steps(a)
    names = [s[0] for s in plan]
    skip = [x for x in a.skip.split(",") if x]
    for opt in (a.start, a.only, a.until, *skip):
        if opt and opt not in names:
            p.error(f"unknown step {opt!r}; steps: {', '.join(names)}")
    state_path = Path(a.runs) / "recipe.json"
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    logs = Path(a.runs) / "recipe-logs"
    total = time.time()
    for k, (name, cmd, marker) in enumerate(plan):
        forced = (a.only == name) or (a.start is not None and k >= names.index(a.start))
        if a.only and a.only != name:
            continue
        if a.until and k > names.index(a.until):
            break
        if name in skip:
            continue
        done = state.get(name, {}).get("done") and marker.exists()
        line = " ".join(shlex.quote(c) for c in cmd)
        if a.dry_run:
            print(f"[{name}] {'(done) ' if done and not forced else ''}{line}")
            continue
        if done and not forced:
            print(f"[{name}] done in {state[name]['seconds']:.0f} s earlier; skipped")
            continue
        logs.mkdir(parents=True, exist_ok=True)
        print(f"[{name}] {line}\n[{name}] log: {logs / (name + '.log')}", flush=True)
        prev = state.get(name, {})
        carried = 0.0 if prev.get("done") else prev.get("partial_seconds", 0.0)  # time spent before an interruption
        t0 = time.time()
        with open(logs / f"{name}.log", "a") as log:
            rc = subprocess.call(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                 env={**os.environ, "PYTHONUNBUFFERED": "1"})
        seconds = time.time() - t0 + carried
        failed = rc != 0 or not marker.exists()
        state[name] = ({"done": False, "partial_seconds": seconds, "rc": rc} if failed else
                       {"done": True, "seconds": round(seconds, 1), "finished": time.strftime("%Y-%m-%d %H:%M:%S")})
        state_path.parent.mkdir(parents=True, exist_ok=True)
        state_path.write_text(json.dumps(state, indent=1))
        if failed:
            print(f"[{name}] failed (exit {rc}); see {logs / (name + '.log')}. Rerun to resume.", file=sys.stderr)
            return 1
        print(f"[{name}] done in {seconds / 60:.1f} min", flush=True)
    if not a.dry_run:
        done = {n: s["seconds"] for n, s in state.items() if s.get("done")}
        print(json.dumps({"step_seconds": done, "total_minutes": round(sum(done.values()) / 60, 1),
                          "this_call_minutes": round((time.time() - total) / 60, 1)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
