"""Does the emotion read-out hang on the microphone's gain, or on where the clip starts and ends?

    python benchmarks/emotion_stability.py --data data24/prep64 --model checkpoints/default [--model OTHER ...]

For corpus clips (seen actors' test clips and unseen actors' clips, `--limit` each), the students' own
emotion read-out (μ before any familiarity blend or override: `Result.voice_emotion`) of the clip as it is
and of five versions of it: at -10 and +10 dB, trimmed (silence cut off both ends, 50 ms left), and cut in
halves (first and second half, cut at the quietest 20 ms within 0.5 s of the middle). Prints per model and
split the accuracy of the top emotion against the label, and the share of versions whose top emotion is the
one of the whole clip, with its standard error over clips. Runs the CPC and the students only (no video):
a minute or two a model on two CPU cores.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VERSIONS = ("-10 dB", "+10 dB", "trimmed", "first half", "second half")


def trimmed(wav: np.ndarray, keep: float = 0.05) -> np.ndarray:
    """The clip from 50 ms before its first to 50 ms after its last voiced 10 ms frame, as the students see
    voiced (`s2v.students.frame_level`, within VOICED_NEPERS of the loudest)."""
    import torch

    from s2v.audio import CPC_HOP, SAMPLE_RATE
    from s2v.students import VOICED_NEPERS, frame_level

    level = frame_level(torch.from_numpy(np.ascontiguousarray(wav, np.float32))[None], wav.size // CPC_HOP)[0]
    on = np.flatnonzero((level > level.max() - VOICED_NEPERS).numpy())
    k = int(keep * SAMPLE_RATE)
    return wav[max(0, on[0] * CPC_HOP - k):min(wav.size, (on[-1] + 1) * CPC_HOP + k)]


def halves(wav: np.ndarray, rate: int = 16000) -> tuple[np.ndarray, np.ndarray]:
    """The clip cut in two at its quietest 20 ms window within 0.5 s of the middle."""
    win, mid, reach = rate // 50, wav.size // 2, rate // 2
    lo, hi = max(win, mid - reach), min(wav.size - win, mid + reach)
    starts = np.arange(lo, hi, win // 2)
    energy = [float((wav[s - win // 2:s + win // 2] ** 2).mean()) for s in starts]
    cut = int(starts[int(np.argmin(energy))])
    return wav[:cut], wav[cut:]


def versions(wav: np.ndarray) -> dict[str, np.ndarray]:
    from s2v.degrade import gain

    first, second = halves(wav)
    return {"-10 dB": gain(wav, -10), "+10 dB": gain(wav, 10), "trimmed": trimmed(wav),
            "first half": first, "second half": second}


def read_out(pipe, wav: np.ndarray) -> np.ndarray:
    """The students' emotion probabilities (6,) for a waveform."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32))[None].to(pipe.device)
    with torch.no_grad():
        c, _ = pipe.cpc(x)
        _, mu = pipe.students.infer(c, x)
    return torch.softmax(mu.float(), -1)[0].cpu().numpy()


def measure(pipe, data, clips: list[int]) -> dict:
    from s2v.labels import EMOTIONS

    correct, same = [], {v: [] for v in VERSIONS}
    for i in clips:
        wav = data.audio(i)
        top = int(read_out(pipe, wav).argmax())
        correct.append(EMOTIONS[top] == data.clips[i]["emotion"])
        for v, w in versions(wav).items():
            same[v].append(int(read_out(pipe, w).argmax()) == top)

    def stat(x):
        x = np.asarray(x, float)
        return {"mean": round(float(x.mean()), 4), "se": round(float(x.std() / np.sqrt(max(1, x.size - 1))), 4)}

    out = {"clips": len(clips), "accuracy": stat(correct), "same_top": {v: stat(s) for v, s in same.items()}}
    out["same_top"]["all versions"] = stat(np.mean([same[v] for v in VERSIONS], 0))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="a prepared corpus")
    p.add_argument("--model", action="append", required=True, help="a model folder (repeat to compare)")
    p.add_argument("--limit", type=int, default=100, help="clips per split")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="write the figures here as JSON")
    args = p.parse_args(argv)

    from tqdm.auto import tqdm

    from s2v.data import Prepared
    from s2v.evaluate import pick_clips
    from s2v.pipeline import Speech2Video

    data = Prepared(args.data)
    splits = {s: pick_clips(data, s, args.limit, args.seed) for s in ("test", "unseen")}
    results = {}
    for m in args.model:
        pipe = Speech2Video.from_pretrained(m, device="cpu")
        results[m] = {s: measure(pipe, data, tqdm(c, desc=f"{Path(m).name} {s}", leave=False))
                      for s, c in splits.items()}
    for m, r in results.items():
        print(f"\n{m}")
        print(f"{'split':8s} {'clips':>5s} {'accuracy':>14s} " + " ".join(f"{v:>14s}" for v in
                                                                           (*VERSIONS, "all versions")))
        for s, x in r.items():
            cells = [x["accuracy"], *(x["same_top"][v] for v in (*VERSIONS, "all versions"))]
            print(f"{s:8s} {x['clips']:5d} " + " ".join(f"{c['mean']:8.3f}±{c['se']:.3f}" for c in cells))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
