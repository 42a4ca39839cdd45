"""What a user of the app waits for: model load, then a voice from upload to a playable clip.

    python benchmarks/app_speed.py [--model DIR] [--audio FILE] [--seconds 4] [--repeats 3] [--threads 2]

Model load is `Speech2Video.from_pretrained` (cold process, files from disk). Per voice it times what
the app does for one request: read the uploaded file, infer emotion and identity, generate every
frame, write the H.264 + AAC MP4 upscaled to 256 px. The voice is --audio cut to --seconds (default:
a seen example from assets/, looped to length). Prints the median of --repeats runs after one warm-up.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="model folder or Hub id (default: $S2V_MODEL or the bundled one)")
    p.add_argument("--audio", default=None)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    from s2v.audio import SAMPLE_RATE, load_audio, write_wav
    from s2v.hub import resolve_model
    from s2v.pipeline import Speech2Video

    folder, where = resolve_model(a.model)
    t0 = time.perf_counter()
    pipe = Speech2Video.from_pretrained(folder, device=a.device)
    load_s = time.perf_counter() - t0

    src = a.audio or next(iter(sorted((ROOT / "assets" / "voices" / "seen").glob("*.wav"))), None)
    if src is None:
        raise SystemExit("error: no --audio and no assets/voices/seen/*.wav")
    wav = load_audio(src)
    n = int(a.seconds * SAMPLE_RATE)
    wav = np.tile(wav, -(-n // wav.size))[:n]
    tmp = Path(tempfile.mkdtemp(prefix="s2v-bench-"))
    upload = tmp / "voice.wav"
    write_wav(upload, wav, SAMPLE_RATE)

    def once(k: int) -> float:
        t = time.perf_counter()
        pipe(str(upload)).write_mp4(tmp / f"out{k}.mp4")
        return time.perf_counter() - t

    once(-1)  # warm-up: first-call allocations, ffmpeg in the page cache
    runs = [once(k) for k in range(a.repeats)]
    print(json.dumps({"model": str(folder), "source": where, "device": a.device, "threads": a.threads,
                      "model_load_s": round(load_s, 3), "voice_seconds": a.seconds,
                      "upload_to_clip_s": round(statistics.median(runs), 3), "runs_s": [round(r, 3) for r in runs],
                      "frames": int(round(a.seconds * pipe.fps))}, indent=1))


if __name__ == "__main__":
    main()
