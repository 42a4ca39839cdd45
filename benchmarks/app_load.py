"""The running app under load: concurrent gradio_client users, good and bad inputs mixed.

    python benchmarks/app_load.py [--model DIR] [--clients 8] [--requests 240] [--budget 900] [--think S]

Starts `python app.py` on a free loopback port (the bundled model unless --model), measures a single
client's latency first (--single requests one after another), then runs --requests requests from
--clients threads (each one user's gradio_client session, as a browser tab keeps one), each a random pick of: example voices from assets/ (good: must return a clip) and
bad files (empty, not audio, silence, 0.1 s of speech, noise: must get the app's message, not a crash). Stops
early when --budget seconds run out. Prints, as JSON: single-client p50/p95, loaded p50/p95 and their
ratio, good requests that failed, bad requests that got no clear message, and the CPU seconds per request
of the server (with its ffmpeg children) and of the clients, and the server's resident memory (from /proc)
before the warm-up, at the start and the end of the loaded run, and its peak. Warm-up: each input once from
one client, then each good voice once from every client at the same time, so what the first requests and
the first concurrent requests allocate once is not counted as growth.
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


def _cpu_s(pid: int) -> float:
    """CPU seconds a process has used, with its finished children (the app's ffmpeg runs)."""
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in f[11:15]) / os.sysconf("SC_CLK_TCK")


def _trend(samples: list[float]) -> float | None:
    """(mean of the last third - mean of the first third) / mean of the first third."""
    k = len(samples) // 3
    if k == 0:
        return None
    first, last = float(np.mean(samples[:k])), float(np.mean(samples[-k:]))
    return round((last - first) / first, 3)


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
    write_wav(folder / "noise.wav", (np.random.default_rng(0).standard_normal(48000) * 0.1).astype(np.float32))
    bad = {str(folder / "empty.wav"): "empty", str(folder / "text.wav"): "corrupt", str(folder / "silence.wav"): "silent",
           str(folder / "short.wav"): "at least", str(folder / "noise.wav"): "no speech"}
    return good, bad


def client(url: str):
    """One user's session (a browser tab keeps one): made once per simulated user, reused for its requests."""
    from gradio_client import Client

    return Client(url, verbose=False)


def request(session, path: str) -> tuple[float, str | None, str | None]:
    """(seconds, video path or None, error message or None) of one /generate call in a user's session."""
    from gradio_client import handle_file

    t = time.time()
    try:
        _, _, video = session.predict(handle_file(path), api_name="/generate")
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
    p.add_argument("--think", type=float, default=0.0,
                   help="mean seconds a client waits after each answer of the loaded run, drawn uniformly in "
                        "[0, 2 × think] (a user watching the clip); 0: back to back, the worst case")
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
        one = client(url)
        for path in good + list(bad):  # warm-up: every input once, so lazy first-time costs are not in the figures
            request(one, path)
        single = [request(one, good[k % len(good)])[0] for k in range(a.single)]
        rng = random.Random(a.seed)
        plan = [(rng.choice(list(bad)) if rng.random() < a.bad_share else rng.choice(good)) for _ in range(a.requests)]
        sessions = [client(url) for _ in range(a.clients)]
        results, lock = [], threading.Lock()
        think = random.Random(a.seed + 1)

        def run(jobs: list[str], keep: bool, start: float) -> None:
            def worker(k: int) -> None:
                for path in jobs[k::a.clients]:
                    if time.time() - start > a.budget:
                        return
                    r = request(sessions[k], path)
                    if keep:
                        with lock:
                            results.append((path, *r))
                        if a.think:
                            time.sleep(think.uniform(0, 2 * a.think))

            threads = [threading.Thread(target=worker, args=(k,)) for k in range(a.clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()

        mem_cold = _rss_mb(server.pid)
        run(good * a.clients, False, time.time())  # concurrent warm-up: what concurrency allocates once
        mem0, cpu0, own0 = _rss_mb(server.pid), _cpu_s(server.pid), time.process_time()
        samples, done = [], threading.Event()

        def sample() -> None:
            while not done.wait(1.0):
                samples.append(_rss_mb(server.pid))

        sampler = threading.Thread(target=sample)
        sampler.start()
        start = time.time()
        run(plan, True, start)
        done.set()
        sampler.join()
        mem1, cpu1, own1 = _rss_mb(server.pid), _cpu_s(server.pid), time.process_time()
    finally:
        server.terminate()
        server.wait(timeout=30)
    good_lat = [s for path, s, v, e in results if path not in bad]
    failed_good = [(path, e) for path, s, v, e in results if path not in bad and (v is None or e)]
    unclear_bad = [(path, e) for path, s, v, e in results if path in bad and not (e and bad[path] in e.lower())]
    q = lambda x, f: float(np.percentile(x, f)) if x else None  # noqa: E731
    out = {"clients": a.clients, "think_s": a.think, "requests_done": len(results), "requests_planned": a.requests,
           "seconds": round(time.time() - start, 1),
           "single_p50_s": q(single, 50), "single_p95_s": q(single, 95),
           "loaded_p50_s": q(good_lat, 50), "loaded_p95_s": q(good_lat, 95),
           "p95_over_single_p50": (q(good_lat, 95) / q(single, 50)) if good_lat else None,
           "good_failed": len(failed_good), "bad_without_clear_message": len(unclear_bad),
           "examples": {"good_failed": failed_good[:3], "bad_unclear": unclear_bad[:3]},
           "cpu_s_per_request": {"server": round((cpu1 - cpu0) / max(len(results), 1), 3),
                                 "clients": round((own1 - own0) / max(len(results), 1), 3)},
           "server_rss_mb": {"before_warmup": round(mem_cold, 1), "start": round(mem0, 1), "end": round(mem1, 1),
                             "max": round(max(samples + [mem1]), 1), "growth": round((mem1 - mem0) / max(mem0, 1), 3),
                             # sampled each second: the last third's mean against the first third's (a leak
                             # climbs; allocator arenas swing up and back down)
                             "trend": _trend(samples)}}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
