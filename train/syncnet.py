"""Train the sync expert (SyncNet layout, s2v/syncnet.py) on prepared clips.

    accelerate launch train/syncnet.py --data data/prep64 --output-dir runs/syncnet

Each example is a 5-frame window of a seen actor's training clip and --candidates MFCC windows of
the same clip: the one starting with the video window and others shifted by 2..15 frames. The loss
is cross-entropy over the negative distances (SyncNet's multi-way matching), so the expert learns
what the evaluation measures: the in-sync window is the nearest. The report on the seen actors'
test clips gives LSE-D, LSE-C and how often the offset found is within ±1 frame of 0, on ground
truth: the ceiling any generator is held to. Output: config.json + model.safetensors + README.md,
metrics.json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from s2v.data import Prepared  # noqa: E402
from s2v.syncnet import (VIDEO_WINDOW, SyncNet, SyncNetConfig, audio_windows, ground_truth_scores,  # noqa: E402
                         lip_input, mfcc, mfcc_start, seeded_test_clips, shifted_starts, video_windows)
from s2v.training import Run, add_common_args, infinite  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p, max_steps=2000, batch_size=32, lr=1e-3, checkpointing_steps=500)
    p.add_argument("--image-size", type=int, default=64, help="lip-stream input side")
    p.add_argument("--width", type=float, default=0.25, help="channel multiplier (1.0 = public SyncNet)")
    p.add_argument("--embed-dim", type=int, default=256)
    p.add_argument("--region", default="lower", choices=("face", "lower"))
    p.add_argument("--candidates", type=int, default=8, help="audio windows per example, one in sync")
    p.add_argument("--min-shift", type=int, default=2, help="smallest shift (frames) of an off-sync window")
    p.add_argument("--eval-clips", type=int, default=60, help="test clips in the final report")
    p.add_argument("--augment", type=float, default=0.0,
                   help="share of examples whose audio goes through a recording condition (s2v.degrade: room "
                        "reverb, noise, phone band + AMR, Opus), each also at a random gain within ±10 dB; 0: none. "
                        "The report adds ground truth's LSE-C against each degraded audio")
    p.add_argument("--dereverb", action="store_true",
                   help="the expert hears audio through WPE dereverberation (s2v.dereverb; saved in its config, "
                        "so every use of it does the same); with --augment, its reverberant examples are "
                        "dereverberated copies made before training (--reverb-copies per clip)")
    p.add_argument("--reverb-copies", type=int, default=2, help="with --dereverb: reverberant copies per clip")
    p.add_argument("--reverb-weight", type=float, default=1.0,
                   help="with --augment: the room drawn this many times as often as each other condition (2 did not "
                        "raise the room's share of clean LSE-C, docs/training.md)")
    p.add_argument("--init-expert", default=None,
                   help="start from this saved expert's weights (same layout; e.g. a clean-audio expert fine-tuned "
                        "with --augment / --dereverb)")
    return p.parse_args(argv)


def dereverbed_copies(data: Prepared, ids: list[int], k: int, seed: int, show: bool = True) -> dict[int, list]:
    """{clip: [k copies in s2v.degrade's room, dereverberated]} of `ids` (s2v.dereverb.dereverbed_rooms). Kept
    in DATA/rooms-cache/ by seed and k (the copies depend on nothing else), so a second run on the same data
    (another weighting, a fine-tune) skips the minutes WPE takes."""
    from s2v.dereverb import dereverbed_rooms

    cache = Path(data.root) / "rooms-cache" / f"seed{seed}-k{k}.npz"
    if cache.exists():
        with np.load(cache) as z:
            if set(map(int, z["ids"])) >= set(ids):
                at = {int(c): n for n, c in enumerate(z["ids"])}
                ends, flat = z["ends"], z["audio"]
                starts = np.r_[0, ends[:-1]]
                return {i: [flat[starts[at[i] * k + j]:ends[at[i] * k + j]] for j in range(k)] for i in ids}
    jobs = [(i, seed * 1_000_003 + 7919 * i + j) for i in ids for j in range(k)]
    out = dereverbed_rooms([data.audio(i) for i, _ in jobs], [s for _, s in jobs], show=show)
    try:  # a read-only data folder just goes without the cache
        cache.parent.mkdir(exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.npz")
        np.savez(tmp, ids=np.array(ids), ends=np.cumsum([len(w) for w in out]),
                 audio=np.concatenate(out).astype(np.float16))
        tmp.replace(cache)
    except OSError as e:
        print(f"note: rooms not cached ({e})", file=sys.stderr)
    return {i: out[n * k:(n + 1) * k] for n, i in enumerate(ids)}


class SyncPairs(torch.utils.data.Dataset):
    """(video window (3, 5, S, S), audio windows (K, 1, 13, 20)); the in-sync window is index 0."""

    def __init__(self, data: Prepared, ids: list[int], net_config: SyncNetConfig, k: int, min_shift: int,
                 length: int = 10 ** 7, augment: float = 0.0, rooms: dict[int, list] | None = None,
                 reverb_weight: float = 1.0):
        self.data, self.ids, self.k, self.min_shift, self.length = data, ids, k, min_shift, length
        self.config, self.augment, self.rooms = net_config, augment, rooms
        self.weights = None if reverb_weight == 1.0 else {"reverb": reverb_weight}

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, j: int):
        rng = np.random.default_rng(torch.randint(0, 2 ** 31, ()).item())
        i = self.ids[rng.integers(len(self.ids))]
        fps = self.data.clips[i]["fps"]
        n = self.data.clips[i]["n_frames"]
        t = int(rng.integers(0, n - VIDEO_WINDOW + 1))
        starts = shifted_starts(rng, t, n, self.k, self.min_shift)
        video = video_windows(lip_input(self.data.frames(i, t, t + VIDEO_WINDOW), self.config), [0])[0]
        wav = self.data.audio(i)
        if self.augment > 0:
            from s2v.degrade import augment

            conditions = None
            if self.rooms is not None:  # the room condition: one of the clip's dereverberated copies
                from s2v.degrade import CONDITIONS

                copies = self.rooms[i]
                conditions = {**CONDITIONS, "reverb": lambda w, r: copies[r.integers(len(copies))].astype(np.float32)}
            wav = augment(wav, rng, self.augment, conditions=conditions, weights=self.weights)
        audio = audio_windows(mfcc(wav), [mfcc_start(s, fps) for s in starts])
        return video, audio


def main(args) -> dict:
    run = Run(args, "syncnet")
    acc = run.accelerator
    data = Prepared(args.data)
    cfg = SyncNetConfig(image_size=args.image_size, width=args.width, embed_dim=args.embed_dim, region=args.region,
                        dereverb=args.dereverb)
    net = SyncNet(cfg)
    if args.init_expert:
        init = SyncNet.from_pretrained(args.init_expert)
        if {k: v for k, v in vars(init.config).items() if k != "dereverb"} != \
                {k: v for k, v in vars(cfg).items() if k != "dereverb"}:
            raise SystemExit(f"error: --init-expert {args.init_expert} is a {init.config}, not a {cfg}")
        net.load_state_dict(init.state_dict())
    train = [i for i in data.split("train") if data.clips[i]["n_frames"] >= VIDEO_WINDOW + 2 * args.min_shift]
    if not train:
        raise SystemExit(f"error: no training clip of {VIDEO_WINDOW + 2 * args.min_shift}+ frames in {args.data}")
    rooms = None
    if args.dereverb and args.augment > 0:
        rooms = dereverbed_copies(data, train, args.reverb_copies, args.seed, show=run.is_main)
    loader = torch.utils.data.DataLoader(SyncPairs(data, train, cfg, args.candidates, args.min_shift,
                                                  augment=args.augment, rooms=rooms, reverb_weight=args.reverb_weight),
                                         batch_size=args.batch_size, num_workers=args.num_workers)
    opt = torch.optim.Adam(net.parameters(), lr=args.learning_rate)
    net, opt, loader = acc.prepare(net, opt, loader)
    step = run.resume()
    from tqdm.auto import tqdm

    bar = tqdm(total=args.max_steps, initial=step, desc="syncnet", disable=not run.is_main)
    batches = infinite(loader)
    u = acc.unwrap_model(net)
    loss = None  # the last step's loss (none when a finished run is resumed)
    while step < args.max_steps:
        net.train()
        video, audio = next(batches)
        b, k = audio.shape[:2]
        with acc.autocast():
            v, a = net(video, audio.flatten(0, 1))
            a = a.view(b, k, -1)
            dist = (v[:, None].float() - a.float()).pow(2).sum(-1).add(1e-6).sqrt()
            loss = F.cross_entropy(-dist, torch.zeros(b, dtype=torch.long, device=dist.device))
        opt.zero_grad(set_to_none=True)
        acc.backward(loss)
        opt.step()
        step += 1
        bar.update()
        if step % args.logging_steps == 0:
            acc_top1 = (dist.argmin(1) == 0).float().mean().item()
            bar.set_postfix(loss=f"{loss.item():.3f}", top1=f"{acc_top1:.2f}")
            run.log({"loss": loss.item(), "train_top1": acc_top1}, step)
        run.maybe_checkpoint(step)
    bar.close()

    metrics = {"steps": step, "final_loss": round(float(loss.item()), 4) if loss is not None else None,
               **report(u.eval(), data, args.eval_clips, args.seed, degraded=args.augment > 0)}
    acc.print(json.dumps(metrics))

    def save(out: Path) -> None:
        u.save_pretrained(out, card=(
            "# s2v sync expert\n\nSyncNet layout (netcnnaud/netfcaud/netcnnlip/netfclip) trained on "
            f"`{args.data}` by train/syncnet.py: {cfg}.\n\n## Ground-truth sync on seen test clips\n\n```\n"
            f"{json.dumps(metrics, indent=1)}\n```\n\n## Limitations\n\nTrained on synthetic faces only; for real "
            "video use the public syncnet_v2.model (`s2v.syncnet.import_syncnet_v2`).\n"))
        (out / "metrics.json").write_text(json.dumps(metrics, indent=1))

    run.finish(step, save)
    return metrics


def report(net: SyncNet, data: Prepared, n: int, seed: int, degraded: bool = False) -> dict:
    """Ground truth's LSE-D, LSE-C and in-sync rate (|offset| <= 1) on a seeded set of test clips; with
    `degraded`, also ground truth's LSE-C against the same audio under each of s2v.degrade's conditions."""
    from s2v.degrade import CONDITIONS

    ids = seeded_test_clips(data, n, seed)
    if not ids:
        return {}
    scores = ground_truth_scores(net, data, ids, seed, CONDITIONS if degraded else None)
    rows = scores.pop("clean")
    out = {"gt_lse_d": round(float(np.mean([r["lse_d"] for r in rows])), 4),
           "gt_lse_c": round(float(np.mean([r["lse_c"] for r in rows])), 4),
           "gt_in_sync": round(float(np.mean([abs(r["offset"]) <= 1 for r in rows])), 4),
           "gt_clips": len(ids)}
    for name, c in scores.items():
        out[f"gt_lse_c_{name}"] = round(float(np.mean([r["lse_c"] for r in c])), 4)
    return out


if __name__ == "__main__":
    main(parse_args())
