"""Shared fixtures: one tiny synthetic corpus (3 seen + 2 unseen actors x 2 sentences x 3 emotions), made once.
Three seen actors, so that a check of who a voice or a face is can fail; two unseen, so that the open-set
scores have a true speaker and another to tell apart."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("S2V_CACHE", str(Path(__file__).resolve().parent / "artifacts" / "cache"))


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    from s2v.corpus.make import make_corpus

    out = tmp_path_factory.mktemp("corpus")
    make_corpus(out, seen=3, unseen=2, sentences=2, emotions=("ANG", "NEU", "SAD"), seed=0, workers=2,
                size=64, progress=False)
    return out


@pytest.fixture(scope="session")
def speech_wav(tiny_corpus) -> Path:
    """A real speech recording (synthesised by the corpus maker)."""
    return sorted((tiny_corpus / "AudioWAV").glob("*.wav"))[0]


@pytest.fixture(scope="session")
def tiny_prep(tiny_corpus, tmp_path_factory) -> Path:
    """The tiny corpus prepared at 32 px, with teacher targets from small untrained teachers."""
    from s2v.corpus.prepare import prepare
    from s2v.targets import write_targets
    from s2v.teachers import EmotionConfig, EmotionTeacher, IdentityConfig, IdentityTeacher

    root = tmp_path_factory.mktemp("tiny")
    prep, teachers = root / "prep", root / "teachers"
    prepare("crema-d", tiny_corpus, prep, size=32, workers=1, progress=False)
    import torch

    torch.manual_seed(0)
    IdentityTeacher(IdentityConfig(blocks=((8, 8), (8, 8), (16, 16), (16, 16)), fc=32, num_classes=4,
                                   image_size=32)).save_pretrained(teachers / "identity")
    EmotionTeacher(EmotionConfig(stem=8, widths=(4, 4, 8, 8), image_size=32)).save_pretrained(teachers / "emotion")
    write_targets(prep, teachers, k=4, progress=False, device="cpu")
    return prep


def load_benchmark(name: str):
    """The module benchmarks/NAME.py (the benchmarks are scripts, not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def read_scalars(logdir: Path, tag: str) -> list[float]:
    """Values of a tensorboard scalar written anywhere under `logdir`."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for e in sorted(Path(logdir).rglob("events.out.tfevents.*")):
        ev = EventAccumulator(str(e.parent))
        ev.Reload()
        if tag in ev.Tags()["scalars"]:
            return [s.value for s in ev.Scalars(tag)]
    raise AssertionError(f"no scalar {tag!r} under {logdir}")


def build_tiny_model(prep: Path, out: Path, context: int = 1) -> Path:
    """A small untrained model folder (stage1/ + generator/) matching the tiny prepared data."""
    import torch

    from s2v.cpc import CPC, CPCConfig
    from s2v.data import Prepared
    from s2v.gallery import Gallery
    from s2v.generator import Generator, GeneratorConfig
    from s2v.students import Students, StudentsConfig
    from s2v.targets import load_targets

    torch.manual_seed(0)
    t = load_targets(prep)
    CPC(CPCConfig(hidden_encoder=16, hidden_ar=16)).save_pretrained(out / "stage1" / "cpc")
    Students(StudentsConfig(in_dim=16, id_dim=t["nu_star"].shape[1], hidden=16)).save_pretrained(out / "stage1" / "students")
    Gallery.build(Prepared(prep), t).save(out / "stage1" / "gallery")
    Generator(GeneratorConfig(size=32, c_dim=16, nu_dim=t["nu_star"].shape[1], context=context, base=32,
                              id_channels=tuple(t[f"still_map{j}"].shape[1] for j in range(3)))).save_pretrained(out / "generator")
    return out


@pytest.fixture(scope="session")
def tiny_model(tiny_prep, tmp_path_factory) -> Path:
    return build_tiny_model(tiny_prep, tmp_path_factory.mktemp("model"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def app_server(tiny_prep, tmp_path_factory):
    """app.py launched on a tiny model (shared by the gradio_client and browser tests); yields its URL."""
    d = build_tiny_model(tiny_prep, tmp_path_factory.mktemp("appmodel"), context=0)
    port = _free_port()
    env = {**os.environ, "S2V_MODEL": str(d), "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1",
           "GRADIO_ANALYTICS_ENABLED": "False", "S2V_MAX_SECONDS": "3"}
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 180
    import urllib.request

    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except Exception:
            if proc.poll() is not None:
                raise RuntimeError(proc.stdout.read())
            time.sleep(1)
    else:
        proc.kill()
        raise RuntimeError("app did not start")
    yield url
    proc.terminate()
    proc.wait(timeout=30)
