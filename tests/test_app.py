"""The Gradio app through gradio_client against a launched server: good input, bad input, concurrency."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("gradio_client")


def _client(url):
    from gradio_client import Client

    return Client(url, verbose=False)


def test_generate_endpoint(app_server, speech_wav):
    from gradio_client import handle_file

    emo, ids, video = _client(app_server).predict(handle_file(str(speech_wav)), api_name="/generate")
    assert emo["columns"] == ["emotion", "probability"] and len(emo["data"]) == 6
    assert abs(sum(p for _, p in emo["data"]) - 1) < 1e-4
    assert ids["columns"] == ["actor", "similarity"] and sorted(a for a, _ in ids["data"]) == ["1001", "1002", "1003"]
    v = video["video"] if isinstance(video, dict) else video
    assert Path(v).exists() and Path(v).stat().st_size > 1000


def test_bad_inputs_get_clear_errors_and_the_app_keeps_serving(app_server, speech_wav, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    c = _client(app_server)
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(32000, np.float32), 16000)
    short = tmp_path / "short.wav"
    sf.write(short, np.random.default_rng(0).standard_normal(1600).astype(np.float32) * 0.1, 16000)
    junk = tmp_path / "junk.mp3"
    junk.write_bytes(b"definitely not audio" * 100)
    for path, words in ((silent, "silent"), (short, "at least"), (junk, "could not read")):
        with pytest.raises(AppError, match=words):
            c.predict(handle_file(str(path)), api_name="/generate")
    long = tmp_path / "long.wav"
    speech, rate = sf.read(str(speech_wav), dtype="float32")
    sf.write(long, np.tile(speech, int(np.ceil(8 * rate / len(speech)))), rate)
    noise = tmp_path / "noise.wav"
    sf.write(noise, (np.random.default_rng(1).standard_normal(16000 * 3) * 0.1).astype(np.float32), 16000)
    with pytest.raises(AppError, match="no speech found"):
        c.predict(handle_file(str(noise)), api_name="/generate")
    _, _, video = c.predict(handle_file(str(long)), api_name="/generate")  # capped at 3 s, still served
    assert Path(video["video"] if isinstance(video, dict) else video).exists()
    _, _, video = c.predict(handle_file(str(speech_wav)), api_name="/generate")
    assert Path(video["video"] if isinstance(video, dict) else video).exists()


def test_four_concurrent_requests(app_server, speech_wav):
    from gradio_client import handle_file

    def one(_):
        return _client(app_server).predict(handle_file(str(speech_wav)), api_name="/generate")[2]

    with ThreadPoolExecutor(4) as pool:
        videos = list(pool.map(one, range(4)))
    assert all(Path(v["video"] if isinstance(v, dict) else v).exists() for v in videos)


def test_faces_are_named_by_sex_and_age_and_picking_an_emotion_sets_a_blend():
    import app
    from s2v.gallery import Gallery

    g = Gallery(["1002", "1009"], np.zeros((2, 4), np.float32), np.zeros((2, 8, 8, 3), np.uint8),
                {"1002": {"sex": "Female", "age": 29, "age_group": "young"}, "1009": {"sex": "Male", "age_group": "older"}})
    assert app._face_name(g, "1002") == "woman, 29 (1002)" and app._face_name(g, "1009") == "man, older (1009)"
    assert app._override_weight("happy", 0.0) == 0.7 and app._override_weight("happy", 0.4) == 0.4
    assert app._override_weight(app.EMOTION_CHOICES[0], 0.4) == 0.0
