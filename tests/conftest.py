"""Shared fixtures: one tiny synthetic corpus (2 actors x 2 sentences x 3 emotions), made once."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("S2V_CACHE", str(Path(__file__).resolve().parent / "artifacts" / "cache"))


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    from s2v.corpus.make import make_corpus

    out = tmp_path_factory.mktemp("corpus")
    make_corpus(out, seen=1, unseen=1, sentences=2, emotions=("ANG", "NEU", "SAD"), seed=0, workers=2,
                size=64, progress=False)
    return out


@pytest.fixture(scope="session")
def speech_wav(tiny_corpus) -> Path:
    """A real speech recording (synthesised by the corpus maker)."""
    return sorted((tiny_corpus / "AudioWAV").glob("*.wav"))[0]
