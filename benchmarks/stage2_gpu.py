"""The real stage-2 trainer on real prepared data: training frames per second and the GPU's busy share.

    python benchmarks/stage2_gpu.py --data data/prep128 --stage1 runs/stage1 --teachers runs/teachers \
        [--batch-size 128] [--steps 300] [--mixed-precision bf16] [-- any other train/stage2.py flags]

Runs `train/stage2.py` (the recipe's stage-2 settings; a fresh output folder under --out) for --steps steps,
reads the trainer's own throughput figure (timed after 10 warm-up steps, sample grids and checkpoints left
out; train/stage2.py `Throughput`), and samples `nvidia-smi`'s utilization.gpu (the share of time a kernel
was running) every 100 ms over the same window. Prints one JSON line. On a machine without nvidia-smi the
busy share is null.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# the recipe's stage-2 settings (train/recipe.py), less the folders and the step counts
RECIPE = ["--nu-source", "student", "--context", "2", "--lambda-lower", "10", "--lambda-expr", "2", "--expr-region",
          "upper"]


class BusySampler:
    """utilization.gpu samples (time, percent) from `nvidia-smi -lms`, in a background thread."""

    def __init__(self, period_ms: int = 100):
        self.samples: list[tuple[float, float]] = []
        exe = shutil.which("nvidia-smi")
        self.proc = None if exe is None else subprocess.Popen(
            [exe, "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", f"-lms={period_ms}"],
            stdout=subprocess.PIPE, text=True)
        if self.proc is not None:
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                self.samples.append((time.time(), float(line.split(",")[0])))
            except ValueError:
                pass

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait()

    def busy(self, start: float, end: float) -> float | None:
        v = [u for t, u in self.samples if start <= t <= end]
        return round(sum(v) / len(v) / 100, 3) if v else None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--stage1", required=True)
    p.add_argument("--teachers", required=True)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--mixed-precision", default="bf16", choices=("no", "fp16", "bf16"))
    p.add_argument("--out", default=None, help="the trainer's output folder (default: a temporary one)")
    a, extra = p.parse_known_args()
    extra = [x for x in extra if x != "--"]
    out = Path(a.out or tempfile.mkdtemp(prefix="stage2-gpu-"))
    cmd = [sys.executable, str(ROOT / "train/stage2.py"), "--data", a.data, "--stage1", a.stage1, "--teachers",
           a.teachers, "--output-dir", str(out), "--batch-size", str(a.batch_size), "--max-steps", str(a.steps),
           "--mixed-precision", a.mixed_precision, "--sample-steps", str(10 ** 9), "--checkpointing-steps",
           str(10 ** 9), "--logging-steps", str(10 ** 9), *RECIPE, *extra]
    sampler = BusySampler()
    try:
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    finally:
        sampler.stop()
    if r.returncode != 0:
        sys.exit(f"train/stage2.py failed:\n{r.stderr[-3000:]}")
    speed = json.loads((out / "stage2.json").read_text())["metrics"]["speed"]
    if speed is None:
        sys.exit("too few steps to time (raise --steps)")
    print(json.dumps({"batch_size": a.batch_size, "mixed_precision": a.mixed_precision, "extra": extra,
                      "frames_per_s": speed["frames_per_s"], "steps_timed": speed["steps_timed"],
                      "gpu_busy": sampler.busy(*speed["window"]), "output": str(out)}))
    if a.out is None:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
