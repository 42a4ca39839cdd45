"""The running app under load: concurrent gradio_client users, good and bad inputs mixed.

    python benchmarks/app_load.py [--model DIR] [--clients 8] [--requests 240] [--budget 900]

Starts `python app.py` on a free loopback port (the bundled model unless --model), measures a single
client's latency first (--single requests one after another), then runs --requests requests from
--clients threads, each a random pick of: example voices from assets/ (good: must return a clip) and
bad files (empty, not audio, silence, 0.1 s of speech: must get the app's message, not a crash). Stops
early when --budget seconds run out. Prints, as JSON: single-client p50/p95, loaded p50/p95 and their
ratio, good requests that failed, bad requests that got no clear message, and the server's resident
memory at the start and the end of the loaded run (from /proc).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mb(pid: int) -> float:
    """Resident memory of a process and its children, MB."""
    total = 0
    for p in [pid] + [int(c) for c in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True,
                                                     text=True).stdout.split()]:
        try:
            for line in open(f"/proc/{p}/status"):
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total / 1024


def inputs(folder: Path) -> tuple[list[str], dict[str, str]]:
    """Good voices (assets/voices/*/*.wav) and bad files, each with the words its message must contain."""
    from s2v.audio import write_wav

    good = sorted(str(p) for p in (ROOT / "assets" / "voices").rglob("*.wav"))
    if not good:
        raise SystemExit("no example voices in assets/voices: run python -m s2v.corpus assets first")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "empty.wav").write_bytes(b"")
    (folder / "text.wav").write_text("this is not audio at all\n" * 20)
    write_wav(folder / "silence.wav", np.zeros(32000, np.float32))
    from s2v.audio import load_audio

    write_wav(folder / "short.wav", load_audio(good[0])[:1600])
    bad = {str(folder / "empty.wav"): "empty", str(folder / "text.wav"): "corrupt", str(folder / "silence.wav"): "silent",
           str(folder / "short.wav"): "at least"}
    return good, bad


def request(url: str, path: str) -> tuple[float, str | None, str | None]:
    """(seconds, video path or None, error message or None) of one /generate call on a fresh client."""
    from gradio_client import Client, handle_file

    t = time.time()
    try:
        _, _, video = Client(url, verbose=False).predict(handle_file(path), api_name="/generate")
        v = video["video"] if isinstance(video, dict) else video
        return time.time() - t, v, None
    except Exception as exc:  # the app's gr.Error arrives as an AppError with its message
        return time.time() - t, None, str(exc)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--requests", type=int, default=240)
    p.add_argument("--single", type=int, default=8, help="requests of the single-client baseline")
    p.add_argument("--bad-share", type=float, default=0.25)
    p.add_argument("--budget", type=float, default=900, help="seconds for the loaded run at most")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    port = _port()
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1",
           "GRADIO_ANALYTICS_ENABLED": "False"}
    if a.model:
        env["S2V_MODEL"] = a.model
    server = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except Exception:
                if server.poll() is not None:
                    raise SystemExit("the app exited while starting")
                time.sleep(1)
        good, bad = inputs(Path(tempfile.mkdtemp(prefix="s2v-load-")))
        request(url, good[0])  # warm-up
        single = [request(url, good[k % len(good)])[0] for k in range(a.single)]
        rng = random.Random(a.seed)
        plan = [(rng.choice(list(bad)) if rng.random() < a.bad_share else rng.choice(good)) for _ in range(a.requests)]
        results, lock, start = [], threading.Lock(), time.time()
        mem0 = _rss_mb(server.pid)

        def worker(k: int) -> None:
            for path in plan[k::a.clients]:
                if time.time() - start > a.budget:
                    return
                r = request(url, path)
                with lock:
                    results.append((path, *r))

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(a.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        mem1 = _rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)
    good_lat = [s for path, s, v, e in results if path not in bad]
    failed_good = [(path, e) for path, s, v, e in results if path not in bad and (v is None or e)]
    unclear_bad = [(path, e) for path, s, v, e in results if path in bad and not (e and bad[path] in e.lower())]
    q = lambda x, f: float(np.percentile(x, f)) if x else None  # noqa: E731
    out = {"clients": a.clients, "requests_done": len(results), "requests_planned": a.requests,
           "seconds": round(time.time() - start, 1),
           "single_p50_s": q(single, 50), "single_p95_s": q(single, 95),
           "loaded_p50_s": q(good_lat, 50), "loaded_p95_s": q(good_lat, 95),
           "p95_over_single_p50": (q(good_lat, 95) / q(single, 50)) if good_lat else None,
           "good_failed": len(failed_good), "bad_without_clear_message": len(unclear_bad),
           "examples": {"good_failed": failed_good[:3], "bad_unclear": unclear_bad[:3]},
           "server_rss_mb": {"start": round(mem0, 1), "end": round(mem1, 1),
                             "growth": round((mem1 - mem0) / max(mem0, 1), 3)}}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
