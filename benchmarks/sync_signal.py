"""How much a stage-2 c window says about the mouth: a ridge probe and D_sync trained alone.

    python benchmarks/sync_signal.py --data data/prep64 --features runs/stage2/features
        [--context 2] [--probe-clips 400] [--d-steps 2000] [--d-lr 3e-4] [--seed 0]

1. Ridge probe: from the (2·context+1)-frame c window at video frame t to the lower half of the face
   at t (grey, 4×4-pooled), both minus their clip's mean, so identity and the clip's constant look
   drop out and only what moves with time is left. Fitted on training clips; R² on test clips with
   the window in sync, and with a window ≥ 3 frames away (off sync). In sync above off sync means
   the window carries timing information about the mouth; the size says how much, linearly.
2. D_sync alone: train/stage2.py's D_sync (same architecture, RMSProp) on real frames only, in sync
   → 1 and off sync → 0 (eq. 6 without the generated term), then the share of test pairs whose
   in-sync logit beats the off-sync one (0.5 = chance).
Prints one JSON line with both.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def clip_rows(data, feats, i: int, context: int):
    """(window (n, W·H), lower face (n, 128)) of clip i, each minus the clip's mean."""
    c = data.clips[i]
    fr = torch.from_numpy(np.asarray(data.frames(i))).float().mean(-1) / 127.5 - 1
    low = F.avg_pool2d(fr[:, None, fr.shape[1] // 2:, :], 4).flatten(1).numpy()
    win = np.stack([feats.window(i, t, c["fps"], context).ravel() for t in range(c["n_frames"])])
    return win - win.mean(0), low - low.mean(0)


def ridge_probe(data, feats, context: int, n_clips: int, per_clip: int = 20, lam: float = 100.0,
                rng=np.random) -> dict:
    def rows(split, n):
        X, Xo, Y = [], [], []
        for i in rng.choice(data.split(split), min(n, len(data.split(split))), replace=False):
            win, low = clip_rows(data, feats, int(i), context)
            n_f = len(low)
            for t in rng.choice(n_f, min(per_clip, n_f), replace=False):
                far = [u for u in range(n_f) if abs(u - t) >= 3] or [t]
                X.append(win[t]), Xo.append(win[rng.choice(far)]), Y.append(low[t])
        return np.array(X), np.array(Xo), np.array(Y)

    X, _, Y = rows("train", n_clips)
    Xt, Xot, Yt = rows("test", max(1, n_clips // 4))
    W = np.linalg.solve(X.T @ X + lam * np.eye(X.shape[1]), X.T @ Y)

    def r2(Xe, Ye):
        return float(1 - ((Xe @ W - Ye) ** 2).sum() / ((Ye - Ye.mean(0)) ** 2).sum())

    return {"train_r2": round(r2(X, Y), 4), "test_r2_in_sync": round(r2(Xt, Yt), 4),
            "test_r2_off_sync": round(r2(Xot, Yt), 4), "rows_train": len(X), "rows_test": len(Xt)}


def d_sync_alone(data, feats, targets, context: int, steps: int, lr: float, width: int = 64) -> dict:
    from s2v.discriminators import Discriminators, DiscriminatorsConfig
    from s2v.training import infinite
    from s2v.data import Frames
    from tqdm.auto import trange

    D = Discriminators(DiscriminatorsConfig(size=data.size, c_dim=feats.c.shape[1], window=2 * context + 1,
                                            id_channels=(1, 1, 1), width=width)).sync
    opt = torch.optim.RMSprop(D.parameters(), lr=lr)
    loader = torch.utils.data.DataLoader(Frames(data, feats, targets, "train", context, 3), batch_size=16,
                                         shuffle=True, drop_last=True)
    test = next(iter(torch.utils.data.DataLoader(Frames(data, feats, targets, "test", context, 3),
                                                 batch_size=256, shuffle=True)))
    batches, losses = infinite(loader), []
    for _ in trange(steps, desc="D_sync alone"):
        b = next(batches)
        loss = ((D(b["c"], b["frame"])[0] - 1) ** 2).mean() + 0.5 * (D(b["c_off"], b["frame"])[0] ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    D.eval()
    with torch.no_grad():
        a, o = D(test["c"], test["frame"])[0].flatten(), D(test["c_off"], test["frame"])[0].flatten()
    return {"steps": steps, "lr": lr, "final_loss": round(float(np.mean(losses[-50:])), 4),
            "test_pairs": len(a), "pairwise_in_beats_off": round(float((a > o).float().mean()), 4),
            "constant_output_loss": round(1 / 3, 4)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="prepared corpus (with targets.npz)")
    p.add_argument("--features", required=True, help="a stage-2 run's features/ folder")
    p.add_argument("--context", type=int, default=2)
    p.add_argument("--probe-clips", type=int, default=400, help="training clips for the probe (test: a quarter)")
    p.add_argument("--d-steps", type=int, default=2000, help="D_sync steps (0: skip)")
    p.add_argument("--d-lr", type=float, default=3e-4, help="D_sync learning rate (the paper's is 1e-5)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    from s2v.data import Prepared
    from s2v.features import AudioFeatures

    torch.manual_seed(a.seed)
    np.random.seed(a.seed)
    data, feats = Prepared(a.data), AudioFeatures.load(a.features)
    out = {"probe": ridge_probe(data, feats, a.context, a.probe_clips, rng=np.random.RandomState(a.seed))}
    if a.d_steps:
        targets = dict(np.load(Path(a.data) / "targets.npz"))
        out["d_sync_alone"] = d_sync_alone(data, feats, targets, a.context, a.d_steps, a.d_lr)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
