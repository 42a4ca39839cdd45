"""Kill-resume check (not in CI): SIGKILL a stage-2 run at random moments, resume it each time, and compare
the final weights and step count with an uninterrupted run of the same seed.

    python benchmarks/kill_resume.py [--kills 10] [--steps 40] [--work runs/kill-resume]

Builds a tiny corpus and an untrained stage 1 the first time (as the tests do), then: one run straight
through; one run killed `--kills` times at random moments (uniform over each launch's expected life),
each time resumed with `--resume-from-checkpoint latest`. Prints, as JSON, the steps reached, how many
kills landed, the largest weight difference between the two final generators and whether they are equal.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def tiny_setup(work: Path) -> tuple[Path, Path, Path]:
    """(prepared data, stage-1 folder, teachers folder) of a 5-actor corpus, made once."""
    prep, teachers, model = work / "prep", work / "teachers", work / "model"
    if not (model / "generator").exists():
        import torch

        from conftest import build_tiny_model
        from s2v.corpus.make import make_corpus
        from s2v.corpus.prepare import prepare
        from s2v.targets import write_targets
        from s2v.teachers import EmotionConfig, EmotionTeacher, IdentityConfig, IdentityTeacher

        make_corpus(work / "corpus", seen=3, unseen=2, sentences=2, emotions=("ANG", "NEU", "SAD"), seed=0,
                    workers=2, size=64, progress=False)
        prepare("crema-d", work / "corpus", prep, size=32, workers=1, progress=False)
        torch.manual_seed(0)
        IdentityTeacher(IdentityConfig(blocks=((8, 8), (8, 8), (16, 16), (16, 16)), fc=32, num_classes=4,
                                       image_size=32)).save_pretrained(teachers / "identity")
        EmotionTeacher(EmotionConfig(stem=8, widths=(4, 4, 8, 8), image_size=32)).save_pretrained(teachers / "emotion")
        write_targets(prep, teachers, k=4, progress=False, device="cpu")
        build_tiny_model(prep, model, context=1)
    return prep, model / "stage1", teachers


def command(prep: Path, stage1: Path, teachers: Path, out: Path, steps: int) -> list[str]:
    return [sys.executable, str(ROOT / "train" / "stage2.py"), "--data", str(prep), "--stage1", str(stage1),
            "--teachers", str(teachers), "--output-dir", str(out), "--max-steps", str(steps), "--batch-size", "4",
            "--num-workers", "0", "--context", "1", "--base", "32", "--d-width", "16", "--sample-steps", "100000",
            "--checkpointing-steps", "1", "--checkpoints-total-limit", "2", "--seed", "0",
            "--resume-from-checkpoint", "latest"]


def weights(out: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(out / "generator" / "model.safetensors"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kills", type=int, default=10)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--work", default="runs/kill-resume")
    p.add_argument("--seed", type=int, default=0, help="when the kills land")
    a = p.parse_args(argv)
    work = Path(a.work)
    prep, stage1, teachers = tiny_setup(work)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    straight, killed = work / "straight", work / "killed"
    for d in (straight, killed):
        subprocess.run(["rm", "-rf", str(d)], check=True)
    t0 = time.time()
    subprocess.run(command(prep, stage1, teachers, straight, a.steps), check=True, env=env, capture_output=True)
    life = time.time() - t0  # how long one uninterrupted launch takes
    rng = np.random.default_rng(a.seed)
    landed = 0
    for _ in range(a.kills):
        proc = subprocess.Popen(command(prep, stage1, teachers, killed, a.steps), env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            proc.wait(timeout=rng.uniform(0.2, 1.0) * life)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            landed += 1
    subprocess.run(command(prep, stage1, teachers, killed, a.steps), check=True, env=env, capture_output=True)
    w1, w2 = weights(straight), weights(killed)
    diff = max(float(np.abs(w1[k].astype(np.float64) - w2[k]).max()) for k in w1)
    steps = [json.loads((d / "stage2.json").read_text())["metrics"]["steps"] for d in (straight, killed)]
    print(json.dumps({"steps": {"straight": steps[0], "killed": steps[1]}, "kills": a.kills, "kills_landed": landed,
                      "max_weight_difference": diff, "identical": diff == 0.0}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
