"""Can a sync expert judge real video against audio from a room, a noisy place, a phone line or a codec?

    python benchmarks/sync_rooms.py --data data24v/prep64 --expert checkpoints/default/syncnet \\
        --expert runs24e/sync-judge [--expert OTHER ...] [--front-end both] [--out FILE.json]

For seeded seen test clips (`--clips`), each expert's LSE-C of the clip's own (real) video against its audio
as recorded and under each of `s2v.degrade.CONDITIONS` (room reverb RT60 0.6 s, pink noise 20 dB under the
speech, telephone band + AMR, Opus 12 kbit/s), and each condition's share of the clean LSE-C with its
standard error over clips (the share of the means; the error by the delta method). The issue's target is a
share of at least 0.8 under every condition. `--front-end` scores each expert as saved (`saved`), with the
WPE dereverberation front end switched on (`on`, `s2v.dereverb`; no retraining) or both. Every condition's
audio is drawn from the same seed for every expert, so experts are compared on the same audio. The video
side is embedded once per clip and expert; WPE costs ~0.2 s a clip and condition.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def share(x: np.ndarray, clean: np.ndarray) -> tuple[float, float]:
    """mean(x) / mean(clean) and its standard error over paired clips (delta method)."""
    n = len(x)
    mx, mc = x.mean(), clean.mean()
    r = mx / mc
    if n < 2:
        return float(r), float("nan")
    var = (np.var(x, ddof=1) + r ** 2 * np.var(clean, ddof=1) - 2 * r * np.cov(x, clean)[0, 1]) / (n * mc ** 2)
    return float(r), float(np.sqrt(max(var, 0.0)))


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="prepared clips (data/prep64)")
    p.add_argument("--expert", action="append", required=True, help="a saved sync expert folder (repeatable)")
    p.add_argument("--front-end", choices=("saved", "on", "both"), default="saved")
    p.add_argument("--clips", type=int, default=60, help="seen test clips (seeded)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="write the figures and per-clip values as JSON")
    args = p.parse_args(argv)

    from s2v.data import Prepared
    from s2v.degrade import CONDITIONS
    from s2v.syncnet import VIDEO_WINDOW, SyncNet, ground_truth_scores, seeded_test_clips

    data = Prepared(args.data)
    ids = seeded_test_clips(data, args.clips, args.seed)
    if not ids:
        raise SystemExit(f"error: no test clip of {2 * VIDEO_WINDOW + 1}+ frames in {args.data}")
    modes = {"saved": (False,), "on": (True,), "both": (False, True)}[args.front_end]
    rows = []
    for path in args.expert:
        saved = SyncNet.from_pretrained(path)
        for on in modes:
            if on and saved.config.dereverb and False in modes:
                continue  # saved with the front end: its saved row is this one
            net = saved
            if on and not saved.config.dereverb:
                net = SyncNet(dataclasses.replace(saved.config, dereverb=True))
                net.load_state_dict(saved.state_dict())
            lse = {k: np.array([r["lse_c"] for r in v])
                   for k, v in ground_truth_scores(net, data, ids, args.seed, CONDITIONS, progress=True).items()}
            row = {"expert": path, "front_end": bool(net.config.dereverb), "clips": len(ids),
                   "clean": round(float(lse["clean"].mean()), 3)}
            for c in lse:
                if c != "clean":
                    r, se = share(lse[c], lse["clean"])
                    row[c] = round(r, 3)
                    row[f"{c}_se"] = round(se, 3)
            row["per_clip"] = {k: [round(float(x), 5) for x in v] for k, v in lse.items()}
            rows.append(row)
            conds = [c for c in lse if c != "clean"]
            print(f"{path} (front end {'on' if row['front_end'] else 'off'}): clean LSE-C {row['clean']:.2f}; "
                  + ", ".join(f"{c} {row[c]:.2f} ± {row[c + '_se']:.2f}" for c in conds), flush=True)
    conds = [k for k in rows[0]["per_clip"] if k != "clean"]
    print("\n| expert | front end | clean LSE-C | " + " | ".join(f"{c} (of clean)" for c in conds) + " |")
    print("|---|---|---|" + "---|" * len(conds))
    for r in rows:
        print(f"| {r['expert']} | {'WPE' if r['front_end'] else '—'} | {r['clean']:.2f} | "
              + " | ".join(f"{r[c]:.2f} ± {r[c + '_se']:.2f}" for c in conds) + " |")
    result = {"data": args.data, "seed": args.seed, "rows": rows}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
