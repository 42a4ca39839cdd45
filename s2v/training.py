"""What every training script shares: the common flags, the Accelerator, checkpoints that a kill
never leaves half-written, resuming, and pushing to the Hugging Face Hub in the background.

Scripts stay readable top to bottom: `args = parse_args(); run = Run(args, "name"); ...;
run.maybe_checkpoint(step); ...; run.finish(folder)`.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import threading
import warnings
from pathlib import Path

import torch

CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
# what a Hub push leaves out: training state, caches (stage 2's stage-1 features), samples and logs; the model
# folders, their configs and cards, and the run's json records go up
PUSH_IGNORE = ["checkpoint-*", "checkpoint-*/**", "*.tmp", "logs/**", "features/**", "samples/**", "*.log",
               "log.jsonl"]


def add_common_args(p: argparse.ArgumentParser, *, max_steps: int = 1000, batch_size: int = 32,
                    lr: float = 1e-3, checkpointing_steps: int = 500) -> argparse.ArgumentParser:
    p.add_argument("--data", required=True, help="prepared data (or, for teachers, the face pool)")
    p.add_argument("--output-dir", required=True, help="run folder: checkpoints, logs, the final model")
    p.add_argument("--max-steps", type=int, default=max_steps)
    p.add_argument("--batch-size", type=int, default=batch_size)
    p.add_argument("--learning-rate", type=float, default=lr)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-workers", type=int, default=2, help="DataLoader workers")
    p.add_argument("--checkpointing-steps", type=int, default=checkpointing_steps)
    p.add_argument("--checkpoints-total-limit", type=int, default=2, help="keep this many checkpoint-* folders")
    p.add_argument("--resume-from-checkpoint", default=None, help="'latest' or a checkpoint folder")
    p.add_argument("--push-to-hub", action="store_true", help="upload the model (not training state); HF_TOKEN")
    p.add_argument("--hub-model-id", default=None, help="user/name of the Hub repo")
    p.add_argument("--report-to", default=None, choices=(None, "tensorboard", "all"), help="tracker")
    p.add_argument("--mixed-precision", default="no", choices=("no", "fp16", "bf16"))
    p.add_argument("--logging-steps", type=int, default=20)
    return p


def latest_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    """The complete checkpoint with the highest step (folders are renamed into place when done)."""
    found = []
    for d in Path(output_dir).glob("checkpoint-*"):
        m = CHECKPOINT.match(d.name)
        if m and d.is_dir() and (d / "s2v_step.json").exists():
            found.append((int(m.group(1)), d))
    return max(found)[1] if found else None


class HubPusher:
    """Uploads a folder to the Hub in a background thread; offline or failing, it warns once and
    the run goes on with every local file kept."""

    def __init__(self, repo_id: str | None, enabled: bool, is_main: bool):
        self.repo_id, self.enabled, self.is_main = repo_id, enabled and is_main, is_main
        self._thread: threading.Thread | None = None
        self._warned = False
        self.ok = None
        if enabled and not repo_id:
            raise ValueError("--push-to-hub needs --hub-model-id user/name")
        if self.enabled:
            try:
                from huggingface_hub import create_repo

                create_repo(repo_id, exist_ok=True, token=os.environ.get("HF_TOKEN"))
                self.ok = True
            except Exception as exc:  # offline, no token, ...
                self._warn(exc)

    def _warn(self, exc: Exception) -> None:
        self.ok = False
        if not self._warned:
            self._warned = True
            warnings.warn(f"Hub push to {self.repo_id} failed ({type(exc).__name__}: {str(exc)[:200]}); "
                          "training goes on and every file stays in the output folder.", stacklevel=3)

    def push(self, folder: str | os.PathLike, message: str) -> None:
        if not self.enabled or self.ok is False:
            return
        self.wait()

        def work():
            try:
                from huggingface_hub import upload_folder

                upload_folder(repo_id=self.repo_id, folder_path=str(folder), commit_message=message,
                              ignore_patterns=PUSH_IGNORE,
                              token=os.environ.get("HF_TOKEN"))
            except Exception as exc:
                self._warn(exc)

        self._thread = threading.Thread(target=work, daemon=True)
        self._thread.start()

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None


class Run:
    """The Accelerator plus run-folder chores for one training script."""

    def __init__(self, args: argparse.Namespace, name: str):
        from accelerate import Accelerator
        from accelerate.utils import ProjectConfiguration, set_seed

        self.args = args
        self.out = Path(args.output_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        log_with = args.report_to
        self.accelerator = Accelerator(
            mixed_precision=args.mixed_precision, log_with=log_with,
            project_config=ProjectConfiguration(project_dir=str(self.out), logging_dir=str(self.out / "logs")))
        set_seed(args.seed, device_specific=True)  # a different stream per rank
        if self.accelerator.device.type == "cuda":
            # TF32 matrix products and convolutions (float32 storage, 10-bit mantissa products) and cuDNN's
            # autotuner for the fixed batch shapes: what Hopper and Ampere run fast; CPU runs are untouched
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
            torch.backends.cudnn.benchmark = True
        if log_with:
            cfg = {k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, bool))}
            self.accelerator.init_trackers(name, config=cfg)
        self.hub = HubPusher(args.hub_model_id, args.push_to_hub, self.accelerator.is_main_process)
        self.step = 0
        self._last_checkpoint = None

    @property
    def device(self):
        return self.accelerator.device

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    def resume(self) -> int:
        """Load the checkpoint named by --resume-from-checkpoint; returns the step to continue at."""
        which = self.args.resume_from_checkpoint
        if not which:
            return 0
        path = latest_checkpoint(self.out) if which == "latest" else Path(which)
        if path is None:
            self.accelerator.print(f"no checkpoint in {self.out}; starting from scratch")
            return 0
        if not (path / "s2v_step.json").exists():
            raise FileNotFoundError(f"{path} is not a complete checkpoint")
        self.accelerator.load_state(str(path))
        self.step = json.loads((path / "s2v_step.json").read_text())["step"]
        self.accelerator.print(f"resumed from {path} at step {self.step}")
        return self.step

    def log(self, values: dict, step: int) -> None:
        """Every --logging-steps: to the trackers (--report-to) and, always, a line of OUT/log.jsonl."""
        if self.args.report_to:
            self.accelerator.log(values, step=step)
        if self.is_main:
            with open(self.out / "log.jsonl", "a") as f:
                f.write(json.dumps({"step": step, **{k: round(float(v), 6) for k, v in values.items()}}) + "\n")

    def checkpoint(self, step: int, extra: dict | None = None) -> Path:
        """Save training state to checkpoint-{step}: written under a temporary name and renamed,
        so a kill at any moment leaves the previous checkpoint as the latest. Old ones rotate out."""
        acc = self.accelerator
        final = self.out / f"checkpoint-{step}"
        tmp = self.out / f".tmp-checkpoint-{step}"
        acc.wait_for_everyone()
        if self.is_main and tmp.exists():
            shutil.rmtree(tmp)
        acc.wait_for_everyone()
        acc.save_state(str(tmp))
        if self.is_main:
            (tmp / "s2v_step.json").write_text(json.dumps({"step": step, **(extra or {})}))
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            self._rotate()
        acc.wait_for_everyone()
        return final

    def _rotate(self) -> None:
        limit = self.args.checkpoints_total_limit
        if not limit or limit < 1:
            return
        ckpts = sorted((int(CHECKPOINT.match(d.name).group(1)), d) for d in self.out.glob("checkpoint-*")
                       if CHECKPOINT.match(d.name))
        for _, d in ckpts[:-limit]:
            shutil.rmtree(d, ignore_errors=True)

    def checkpoint_due(self, step: int) -> bool:
        """Whether `maybe_checkpoint(step)` writes one (every --checkpointing-steps)."""
        return step % self.args.checkpointing_steps == 0

    def maybe_checkpoint(self, step: int, save_model=None) -> None:
        """Every --checkpointing-steps: training state, and (via `save_model(folder)`) the release
        weights, pushed to the Hub in the background."""
        if self.checkpoint_due(step):
            self.checkpoint(step)
            self._last_checkpoint = step
            if save_model is not None and self.is_main:
                save_model(self.out)
                self.hub.push(self.out, f"step {step}")

    def finish(self, step: int, save_model=None) -> None:
        """A last checkpoint (so a longer run can resume from the end), the final model into the
        output folder, a last push, trackers closed."""
        if self._last_checkpoint != step:
            self.checkpoint(step)
        self.accelerator.wait_for_everyone()
        if save_model is not None and self.is_main:
            save_model(self.out)
            self.hub.push(self.out, "final model")
            self.hub.wait()
        if self.args.report_to:
            self.accelerator.end_training()
        if os.environ.get("S2V_RANK_DIGESTS"):
            self.write_digest(step)

    def write_digest(self, step: int) -> None:
        """OUT/rank-digests/rank{N}.json: a hash of every prepared model's parameters, and one of its buffers, as
        this process holds them (S2V_RANK_DIGESTS=1; how the multi-process test checks that the ranks stayed
        identical). Buffers (BatchNorm's running statistics) are each rank's own after its last forward: DDP
        broadcasts rank 0's at the start of each forward, and rank 0's are the ones saved."""
        import hashlib

        def digest(named) -> str:
            h = hashlib.sha256()
            for k, v in sorted(named):
                h.update(k.encode())
                h.update(v.detach().float().cpu().contiguous().numpy().tobytes())
            return h.hexdigest()[:16]

        acc = self.accelerator
        models = [acc.unwrap_model(m) for m in acc._models]  # the models passed to accelerator.prepare, in order
        d = self.out / "rank-digests"
        d.mkdir(exist_ok=True)
        (d / f"rank{acc.process_index}.json").write_text(json.dumps(
            {"step": step, "models": [digest(m.named_parameters()) for m in models],
             "buffers": [digest(m.named_buffers()) for m in models]}))


def infinite(loader):
    """Cycle a DataLoader forever (a new shuffle each pass). A loader that yields no batch (fewer items than
    one batch with drop_last) is an error that says so, not a loop that never returns."""
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            # an accelerate-prepared loader keeps its batch size on the batch sampler
            b = (getattr(loader, "total_batch_size", None) or getattr(loader, "batch_size", None)
                 or getattr(getattr(loader, "batch_sampler", None), "batch_size", None) or "?")
            n = len(loader.dataset)
            raise ValueError(f"the training set has {n} item(s), fewer than one batch of {b}: "
                             f"pass a smaller --batch-size (at most {n}) or more data")
