"""Stage 2: the adversarial frame generator F(c_t, ν, μ) with D_ID, D_fr and D_sync (eq. 4-10).

    accelerate launch train/stage2.py --data data/prep64 --stage1 runs/stage1 --teachers runs/teachers \
        --output-dir runs/stage2

c_t comes from the stage-1 CPC and ν, μ from its students, computed once per clip (run folder
`features/`); the real side of D_ID is T_id's maps of the speaker's still (PREP/targets.npz).
Per step: one generator update (LSGAN terms of the three discriminators + L_sim + L_grad), then one
update of each discriminator. Beyond the paper, --lambda-sync-expert adds Wav2Lip's expert sync loss
(a frozen sync expert judges windows of 5 generated frames against their audio), --no-d-sync
leaves D_sync out, and --face-pool also decodes stills of identities that need no voice from their ν*. RMSProp with G 3e-4, D_ID 3e-4, D_fr 1e-4, D_sync 1e-5 (paper 3.1; s2v.discriminators.ADVERSARIES).
Every --sample-steps a grid (ground truth above generated, fixed clips of seen voices) goes to
samples/ and tensorboard. The output records which stage 1 it was trained on.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from s2v.data import DeviceFrames, Frames, Prepared, SyncWindows  # noqa: E402
from s2v.discriminators import ADVERSARIES, Discriminators, DiscriminatorsConfig, active_adversaries  # noqa: E402
from s2v.features import STAGE1_PARTS, AudioFeatures, AugmentedFeatures  # noqa: E402
from s2v.modeling import fingerprint  # noqa: E402
from s2v.generator import Generator, GeneratorConfig, generate_clip, to_uint8  # noqa: E402
from s2v.losses import l_expr, l_grad, l_lower, l_sim, sync_expert_terms  # noqa: E402
from s2v.syncnet import SyncNet  # noqa: E402
from s2v.targets import ensure_targets  # noqa: E402
from s2v.teachers import load_emotion_teacher  # noqa: E402
from s2v.training import Run, add_common_args, infinite  # noqa: E402

LR_G = 3e-4  # the discriminators' rates are in s2v.discriminators.ADVERSARIES


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p, max_steps=4000, batch_size=32, lr=LR_G, checkpointing_steps=500)
    p.add_argument("--stage1", required=True, help="stage-1 output folder")
    p.add_argument("--teachers", required=True, help="teachers folder (for the still's T_id maps)")
    p.add_argument("--context", type=int, default=0, help="CPC frames each side of t (0: c_t alone, the paper)")
    p.add_argument("--lambda-sim", type=float, default=10.0, help="weight of L_sim (mean L1 of the upper half)")
    p.add_argument("--lambda-grad", type=float, default=10.0, help="weight of L_grad")
    p.add_argument("--lambda-lower", type=float, default=0.0,
                   help="beyond the paper: L1 on the lower half too (0 keeps the paper's losses)")
    p.add_argument("--lambda-expr", type=float, default=0.0,
                   help="beyond the paper: weight of the expression loss, 1 - cos between T_emo's features of the "
                        "generated and the real frame (0 keeps the paper's losses)")
    p.add_argument("--expr-region", default="full", choices=("full", "upper"),
                   help="where the expression loss's gradient reaches: the whole generated frame, or only its "
                        "upper half (T_emo still sees the whole face; the mouth is left to sync and L1)")
    p.add_argument("--mu-source", default="student", choices=("student", "teacher"),
                   help="μ the generator is trained on: the emotion student's (the paper) or, beyond the paper, the "
                        "teacher's μ* of the clip's frames, which says what the frames show (at inference μ is the "
                        "student's either way)")
    p.add_argument("--nu-source", default="student", choices=("student", "teacher", "mix"),
                   help="ν the generator is trained on: the identity student's (the paper), or, beyond the paper, the "
                        "teacher's ν* of the clip's first frame, or either at random per frame (mix). teacher and mix "
                        "centre and scale ν on the way in (GeneratorConfig.nu_norm) so that a voice's ν decodes in "
                        "the same space; with many identities this teaches a face decoder over the whole face "
                        "embedding, not only the seen actors' points")
    p.add_argument("--no-identity-branch", action="store_true", help="S2F-like ablation: no ν branch, no D_ID")
    p.add_argument("--no-d-sync", action="store_true",
                   help="leave out the paper's D_sync (its loss sits at a constant: benchmarks/sync_signal.py)")
    p.add_argument("--lambda-sync-expert", type=float, default=0.0,
                   help="beyond the paper: weight of the expert sync loss (Wav2Lip's), the frozen --sync-expert's "
                        "cross-entropy of the in-sync audio window for windows of 5 generated frames (0: off)")
    p.add_argument("--sync-expert", default=None, help="a sync expert folder (train/syncnet.py) for that loss")
    p.add_argument("--sync-pull", type=float, default=0.0,
                   help="with the expert sync loss: plus this many times the in-sync distance itself (s2v.losses."
                        "l_sync_expert), so the lips stay where the expert puts real speech (LSE-D) as well as "
                        "nearest the right window (LSE-C)")
    p.add_argument("--sync-batch", type=int, default=8, help="5-frame windows per step for the expert sync loss")
    p.add_argument("--sync-candidates", type=int, default=8, help="audio windows per sync window, one in sync")
    p.add_argument("--init-generator", default=None,
                   help="start G from a trained generator folder (same settings) instead of from scratch, e.g. to "
                        "fine-tune a model with the expert sync loss; the discriminators start fresh")
    p.add_argument("--augment", type=float, default=0.0,
                   help="beyond the paper: c_t also from --augment-copies degraded copies of every clip (s2v.degrade."
                        "augment: with this probability a room, noise, a phone line or a codec, and a gain of ±10 dB), "
                        "each training item's c from the clean or a copy at random, against the clean clip's frames "
                        "(and, for the expert sync loss, its clean audio); 0: clean audio only, the paper")
    p.add_argument("--augment-copies", type=int, default=2, help="degraded copies of each clip (with --augment)")
    p.add_argument("--augment-pitch", type=float, default=0.0,
                   help="with --augment: each copy is first another voice, pitch and formants shifted by up to this "
                        "many semitones either way (s2v.degrade.pitch_shift; duration kept); 0: none")
    p.add_argument("--c-norm", default=None, choices=("mean", "standard"),
                   help="beyond the paper: the generator reads each clip's c with the training voices' mean (and, "
                        "standard, SD) in place of the clip's own, dimension by dimension (GeneratorConfig.c_norm), "
                        "so that a voice recorded otherwise than the corpus (a shift of c_t as a whole) moves the "
                        "mouth as a corpus voice does; default: c as the encoder gives it (the paper)")
    p.add_argument("--face-pool", default=None,
                   help="beyond the paper: a pool of face stills that need no voice (python -m s2v.corpus faces --stills "
                        "--traits 3), decoded each step from their teacher ν* (and T_emo's μ* of the still) with c "
                        "windows of the batch's frames, under an L1 on the upper half (eq. 8's region; the mouth is "
                        "c's): the face decoder learns the face embedding over thousands of identities, not only the "
                        "seen actors' points (needs --nu-source teacher or mix, whose ν the generator normalises)")
    p.add_argument("--lambda-pool", type=float, default=10.0, help="weight of that L1 (with --face-pool)")
    p.add_argument("--pool-batch", type=int, default=8, help="pool stills a step (with --face-pool)")
    p.add_argument("--offsync-min", type=int, default=3, help="|τ - τ'| in frames for off-sync pairs")
    p.add_argument("--sample-steps", type=int, default=250)
    p.add_argument("--batches", default="auto", choices=("auto", "device", "loader"),
                   help="where training batches are drawn: on the accelerator from the split copied there once "
                        "(s2v.data.DeviceFrames; no workers, no host-to-device copies), or by a DataLoader over the "
                        "memory-mapped shards; auto: on the device on CUDA when the split takes <= 40 %% of its free "
                        "memory, else the loader (always on CPU)")
    p.add_argument("--base", type=int, default=256, help="generator channels at 4x4")
    p.add_argument("--d-width", type=int, default=64)
    a = p.parse_args(argv)
    if a.augment_pitch and a.augment <= 0:
        p.error("--augment-pitch shifts the voice of --augment's copies: give --augment P too")
    if a.augment > 0 and a.batches == "device":
        p.error("--augment draws each item's c from one of several copies, which --batches device does not; "
                "use --batches loader (or auto)")
    if a.face_pool and a.nu_source == "student":
        p.error("--face-pool decodes the pool's teacher ν*: train with --nu-source teacher or mix")
    if a.face_pool and a.pool_batch > a.batch_size:
        p.error("--pool-batch takes its c windows from the batch's frames: at most --batch-size")
    if a.lambda_sync_expert and not a.sync_expert:
        p.error("--lambda-sync-expert needs --sync-expert DIR (a sync expert from train/syncnet.py)")
    return a


def sample_grid(generator: Generator, data: Prepared, feats: AudioFeatures, clips: list[int], device,
                per_clip: int = 6) -> np.ndarray:
    """(H, W, 3) uint8: for each clip a row of ground truth above a row of generated frames."""
    rows = []
    generator.eval()
    for i in clips:
        c = data.clips[i]
        ts = np.linspace(0, c["n_frames"] - 1, per_clip).round().astype(int)
        fake = generate_clip(generator, torch.from_numpy(np.asarray(feats.sequence(i), dtype=np.float32)).to(device),
                             torch.from_numpy(feats.nu[i]).to(device), torch.from_numpy(feats.mu[i]).to(device),
                             c["n_frames"], c["fps"])
        fake = to_uint8(fake[ts])
        real = np.asarray(data.frames(i))[ts]
        rows += [np.concatenate(list(real), 1), np.concatenate(list(fake), 1)]
    generator.train()
    return np.concatenate(rows, 0)


def main(args) -> dict:
    run = Run(args, "stage2")
    acc = run.accelerator
    data = Prepared(args.data)
    targets = ensure_targets(args.data, args.teachers, acc)
    if run.is_main:
        if args.augment > 0:
            AugmentedFeatures.build(args.data, args.stage1, run.out / "features", args.augment, args.augment_copies,
                                    seed=args.seed, device=str(acc.device), semitones=args.augment_pitch)
        else:
            AudioFeatures.build(args.data, args.stage1, run.out / "features", device=str(acc.device))
    acc.wait_for_everyone()
    feats = (AugmentedFeatures.load(run.out / "features", args.augment_copies) if args.augment > 0
             else AudioFeatures.load(run.out / "features"))
    id_channels = tuple(int(targets[f"still_map{j}"].shape[1]) for j in range(3))
    gcfg = GeneratorConfig(size=data.size, c_dim=feats.c.shape[1], context=args.context, nu_dim=feats.nu.shape[1],
                           mu_dim=feats.mu.shape[1], id_channels=id_channels, base=args.base,
                           identity_branch=not args.no_identity_branch, nu_norm=args.nu_source != "student",
                           c_norm=args.c_norm)
    G = Generator(gcfg)
    init = None
    if args.init_generator:
        init = Generator.from_pretrained(Path(args.init_generator) / "generator"
                                         if (Path(args.init_generator) / "generator").is_dir() else args.init_generator)
        if init.config.c_norm and init.config.c_norm != args.c_norm:
            raise SystemExit(f"error: --init-generator {args.init_generator} reads c normalised by clip: give "
                             f"--c-norm {init.config.c_norm}")
        if replace(init.config, c_norm=args.c_norm) != gcfg:  # c_norm may be switched on for the fine-tuning
            raise SystemExit(f"error: --init-generator {args.init_generator} was trained with {init.config}, "
                             f"these settings make {gcfg}")
        G.load_state_dict(init.state_dict(), strict=init.config.c_norm == args.c_norm)
    if args.c_norm and not (init is not None and init.config.c_norm):  # a c_norm generator keeps its own statistics
        G.set_c_stats(*feats.stats(data.split("train")))
    raw = feats  # c as the encoder gave it (the sample grids' generate_clip normalises it itself)
    if args.c_norm:
        feats = feats.normalised(G)
    D = Discriminators(DiscriminatorsConfig(size=data.size, c_dim=gcfg.c_dim, window=gcfg.window,
                                            id_channels=id_channels, width=args.d_width))
    # channels_last: oneDNN's and cuDNN's fast layout for these convolutions (CPU: +6 % training, +48 % inference,
    # benchmarks/stage2_speed.py); the weights and what they compute are the same
    G, D = G.to(memory_format=torch.channels_last), D.to(memory_format=torch.channels_last)
    opts = {"g": torch.optim.RMSprop(G.parameters(), lr=args.learning_rate),
            **{k: torch.optim.RMSprop(getattr(D, k).parameters(), lr=a.lr) for k, a in ADVERSARIES.items()}}
    frames = Frames(data, feats, targets, "train", args.context, args.offsync_min, args.mu_source, args.nu_source)
    on_device = args.batches == "device" or (args.batches == "auto" and args.augment <= 0
                                             and DeviceFrames.fits(frames, acc.device))
    if on_device:
        loader = None
        acc.print(f"batches drawn on {acc.device} "
                  f"({DeviceFrames.nbytes(frames) / 2 ** 30:.2f} GiB of frames and features)")
        device_frames = DeviceFrames(frames, acc.device)
    else:
        loader = torch.utils.data.DataLoader(frames, batch_size=args.batch_size, shuffle=True, drop_last=True,
                                             num_workers=args.num_workers, persistent_workers=args.num_workers > 0)
    pool = None
    if args.face_pool:  # (N, S, S, 3) uint8 stills with their ν*, μ*, kept on the device
        from s2v.targets import pool_targets

        pt = pool_targets(args.face_pool, args.teachers, data.size, device=str(acc.device))
        pool = {k: torch.from_numpy(v).to(acc.device) for k, v in pt.items()}
        acc.print(f"face pool: {len(pt['images'])} stills from {args.face_pool}")
    t_emo = None
    if args.lambda_expr:
        t_emo = load_emotion_teacher(args.teachers).to(acc.device)  # frozen, eval mode
    expert, windows = None, None
    if args.lambda_sync_expert:
        expert = SyncNet.from_pretrained(args.sync_expert).to(acc.device).eval().requires_grad_(False)
        windows = torch.utils.data.DataLoader(
            SyncWindows(data, feats, targets, "train", args.context, args.sync_candidates, mu_source=args.mu_source,
                        nu_source=args.nu_source),
            batch_size=args.sync_batch, shuffle=True, drop_last=True, num_workers=args.num_workers,
            persistent_workers=args.num_workers > 0)
    if loader is None:
        G, D, *opt_list = acc.prepare(G, D, *opts.values())
    else:
        G, D, loader, *opt_list = acc.prepare(G, D, loader, *opts.values())
    if windows is not None:
        windows = infinite(acc.prepare(windows))
    opts = dict(zip(opts, opt_list))
    step = run.resume()
    uD = acc.unwrap_model(D)
    fixed = sorted({data.clips[i]["actor"]: i for i in data.split("test")}.values())[:4] or data.split("train")[:4]
    from tqdm.auto import tqdm

    bar = tqdm(total=args.max_steps, initial=step, desc="stage 2", disable=not run.is_main)
    batches = infinite(loader) if loader is not None else iter(lambda: device_frames.next(args.batch_size), None)
    adversaries = active_adversaries(gcfg.identity_branch, ("sync",) if args.no_d_sync else ())
    g, d = {}, {}  # the last step's terms (none when a finished run is resumed)
    clock = Throughput(acc.device, step, warmup=min(10, max(0, args.max_steps - step - 1)))
    while step < args.max_steps:
        clock.tick(step)
        b = next(batches)
        real = b["frame"]  # (B, 3, S, S) in [-1, 1]
        # ---- generator: the batch, then the pool's stills and the sync windows' frames in the same call (one
        # forward per backward, for DDP)
        cs, nus, mus = [b["c"]], [b["nu"]], [b["mu"]]  # c (B, W, c_dim), ν (B, D), μ (B, 6)
        nb = b["c"].shape[0]
        if pool is not None:  # each still with the c window of one of the batch's frames
            k = torch.randint(0, len(pool["images"]), (args.pool_batch,), device=acc.device)
            cs.append(b["c"][torch.randperm(nb, device=acc.device)[:args.pool_batch]])
            nus.append(pool["nu_star"][k])
            mus.append(pool["mu_star"][k])
            stills = pool["images"][k].permute(0, 3, 1, 2).float() / 127.5 - 1
        n_pool = args.pool_batch if pool is not None else 0
        if windows is not None:
            w = next(windows)  # c (Bw, 5, W, c_dim): 5 consecutive frames of a clip; ν, μ; mfcc (Bw, K, 1, 13, 20)
            nw = w["c"].shape[1]
            cs.append(w["c"].flatten(0, 1))
            nus.append(w["nu"].repeat_interleave(nw, 0))
            mus.append(w["mu"].repeat_interleave(nw, 0))
        with acc.autocast():
            out, maps = G(torch.cat(cs), torch.cat(nus), torch.cat(mus))
            fake, maps = out[:nb], [m[:nb] for m in maps]
            if windows is not None:
                lips = out[nb + n_pool:].unflatten(0, (-1, nw))
            s = {"real": real, "fake": fake, "c": b["c"], "c_off": b["c_off"], "maps": maps, "real_maps": b["maps"]}
            g = {f"adv_{k}": ADVERSARIES[k].g_loss(uD, s) for k in adversaries}
            g.update(sim=args.lambda_sim * l_sim(fake, real), grad=args.lambda_grad * l_grad(fake, real))
            if args.lambda_lower:
                g["lower"] = args.lambda_lower * l_lower(fake, real)
            if pool is not None:
                g["pool"] = args.lambda_pool * l_sim(out[nb:nb + n_pool], stills)
            if t_emo is not None:
                g["expr"] = args.lambda_expr * l_expr(t_emo, fake, real, args.expr_region)
            if windows is not None:
                ce, in_sync = sync_expert_terms(expert, lips, w["mfcc"])  # l_sync_expert's parts
                g["sync_expert"] = args.lambda_sync_expert * ce
                if args.sync_pull:  # logged apart, so the cross-entropy's own course can be read
                    g["sync_pull"] = args.lambda_sync_expert * args.sync_pull * in_sync
            g_total = sum(g.values())
        opts["g"].zero_grad(set_to_none=True)
        D.requires_grad_(False)
        acc.backward(g_total)
        D.requires_grad_(True)
        opts["g"].step()
        # ---- discriminators: each its own loss and optimizer
        s.update(fake=fake.detach(), maps=[m.detach() for m in maps])
        with acc.autocast():  # through the (possibly distributed) wrapper, so gradients are synced
            d = {k: ADVERSARIES[k].d_loss(D, s) for k in adversaries}
        for o in d:
            opts[o].zero_grad(set_to_none=True)
        acc.backward(sum(d.values()))
        for o in d:
            opts[o].step()
        step += 1
        bar.update()
        if step % args.logging_steps == 0:
            bar.set_postfix(g=f"{g_total.item():.3f}", sim=f"{g['sim'].item():.3f}")
            run.log({**{f"g/{k}": v.item() for k, v in g.items()}, **{f"d/{k}": v.item() for k, v in d.items()}}, step)
        if run.is_main and (step % args.sample_steps == 0 or step == args.max_steps):
            clock.pause()
            grid = sample_grid(acc.unwrap_model(G), data, raw, fixed, acc.device)
            save_png(run.out / "samples" / f"step-{step:06d}.png", grid)
            if args.report_to:
                for tracker in acc.trackers:
                    if tracker.name == "tensorboard":
                        tracker.writer.add_image("samples", grid, step, dataformats="HWC")
            clock.resume()
        if run.checkpoint_due(step):  # (pause synchronises CUDA: only when there is work to leave out)
            clock.pause()
            run.maybe_checkpoint(step, lambda out: save(acc.unwrap_model(G), out, args, None))
            clock.resume()
    bar.close()
    metrics = {"steps": step, "final": {k: round(v.item(), 5) for k, v in {**g, **d}.items()},
               "speed": clock.report(step, args.batch_size * acc.num_processes)}
    acc.print(json.dumps(metrics))
    run.finish(step, lambda out: save(acc.unwrap_model(G), out, args, metrics))
    return metrics


class Throughput:
    """Training frames per second of this call, timed from `warmup` steps after it started to its end, less the
    time spent on sample grids and checkpoints (CUDA is synchronised at each mark, so queued work is counted).
    Also the wall-clock bounds of that window, so a sampler of GPU activity (benchmarks/stage2_gpu.py) can
    read the same window."""

    def __init__(self, device, start: int, warmup: int):
        self.sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
        self.first, self.t0, self.paused, self.excluded = start + warmup, None, None, 0.0

    def tick(self, step: int) -> None:
        if step == self.first:
            self.sync()
            self.t0, self.wall0 = time.perf_counter(), time.time()

    def pause(self) -> None:
        if self.t0 is not None:
            self.sync()
            self.paused = time.perf_counter()

    def resume(self) -> None:
        if self.paused is not None:
            self.excluded += time.perf_counter() - self.paused
            self.paused = None

    def report(self, step: int, frames_per_step: int) -> dict | None:
        if self.t0 is None or step <= self.first:
            return None
        self.sync()
        seconds = time.perf_counter() - self.t0 - self.excluded
        return {"frames_per_s": round((step - self.first) * frames_per_step / seconds, 1),
                "steps_timed": step - self.first, "seconds": round(seconds, 2),
                "window": [round(self.wall0, 3), round(time.time(), 3)], "excluded_seconds": round(self.excluded, 2)}


def save_png(path: Path, image: np.ndarray) -> None:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), image[..., ::-1])


def stage1_reference(stage1: str) -> dict:
    """Path (or Hub id) and revision of the stage 1 this generator was trained on."""
    p = Path(stage1)
    ref = {"stage1": str(p.resolve()) if p.exists() else stage1}
    meta = p / "stage1.json"
    if meta.exists():
        ref["stage1_meta"] = json.loads(meta.read_text())
    # the revision: a fingerprint of the stage-1 weights (a Hub repo's files hash the same way), the one the
    # feature cache is stamped with
    ref["revision"] = fingerprint(p, STAGE1_PARTS) if p.exists() else None
    return ref


def save(G: Generator, out: Path, args, metrics: dict | None) -> None:
    ref = stage1_reference(args.stage1)
    G.save_pretrained(out / "generator", card="# s2v generator F(c_t, ν, μ)\n\nStage 2 of s2v (paper eq. 4-10).\n",
                      extra={"stage1": ref})
    (out / "stage2.json").write_text(json.dumps({**ref, "teachers": str(args.teachers), "data": str(args.data),
                                                 "settings": vars(args), "metrics": metrics}, indent=1))
    (out / "README.md").write_text(
        "# s2v stage 2\n\nFrame generator F(c_t, ν, μ) with an identity branch, trained against D_ID, D_fr and "
        f"D_sync (LSGAN, real -> 1) plus L_sim and L_grad, on `{args.data}`; stage 1 from `{ref['stage1']}`.\n\n"
        f"```\n{json.dumps(metrics, indent=1)}\n```\n")


if __name__ == "__main__":
    main(parse_args())
