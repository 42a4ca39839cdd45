"""s2v demo: record or upload speech, see the emotion and the face the voice implies, watch the face speak.

    python app.py                      # the bundled model; GRADIO_SERVER_PORT sets the port (7860)
    S2V_MODEL=user/model python app.py # a Hub model (falls back to the bundled one when offline)

API: `/generate` takes one audio file and returns the emotion bars, the identity bars and the video.
"""
from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import gradio as gr
import pandas as pd

from s2v.audio import AudioError
from s2v.labels import EMOTION_NAMES
from s2v.pipeline import Speech2Video

MAX_SECONDS = float(os.environ.get("S2V_MAX_SECONDS", 30))  # longer input is cut, with a notice
ASSETS = Path(__file__).resolve().parent / "assets"
EMOTION_CHOICES = ["(from the voice)"] + list(EMOTION_NAMES.values())

_pipe: Speech2Video | None = None


def pipeline() -> Speech2Video:
    global _pipe
    if _pipe is None:
        with warnings.catch_warnings():  # the Hub fallback is reported by the line printed below
            warnings.simplefilter("ignore")
            _pipe = Speech2Video.from_pretrained(None)  # $S2V_MODEL (folder or Hub id), else the bundled model
        print(_pipe.source)
        if _pipe.vad:  # load and warm the voice activity detector (its first call takes seconds)
            import numpy as np

            from s2v.vad import speech_seconds

            speech_seconds(np.zeros(16000, np.float32))
    return _pipe


def _run(audio_path, emotion: str = EMOTION_CHOICES[0], weight: float = 0.0, progress=gr.Progress()):
    if not audio_path:
        raise gr.Error("No audio: record with the microphone or upload a file first.")
    progress(0.1, desc="listening")
    try:
        result = pipeline()(audio_path, max_seconds=MAX_SECONDS,
                            emotion={emotion: 1.0} if emotion in EMOTION_NAMES.values() else None,
                            emotion_weight=float(weight))
    except AudioError as exc:
        raise gr.Error(str(exc)) from None
    for note in result.notices:
        gr.Warning(f"Only the first {MAX_SECONDS:g} s are used: {note}.")
    progress(0.8, desc="encoding video")
    out = Path(tempfile.mkdtemp(prefix="s2v-")) / "s2v.mp4"
    result.write_mp4(out)
    emo = pd.DataFrame({"emotion": list(result.emotion), "probability": list(result.emotion.values())})
    top = result.identity[:5]
    ids = pd.DataFrame({"actor": [a for a, _ in top], "similarity": [s for _, s in top]})
    g = pipeline().gallery
    stills = [(g.stills[g.ids.index(a)], f"{a}: {g.actors[a]['sex']}, {g.actors[a]['age_group']} ({s:.2f})")
              for a, s in top] if g is not None else []
    return emo, ids, str(out), stills


def generate(audio_path):
    """API: one audio file -> (emotion bars, identity bars, video)."""
    emo, ids, video, _ = _run(audio_path)
    return emo, ids, video


def _real_still(path) -> str | None:
    """The example speaker's real still (assets/stills/ACTOR.png), when the file is one of the examples."""
    if not path:
        return None
    still = ASSETS / "stills" / f"{Path(path).name.split('_')[0]}.png"
    return str(still) if still.exists() else None


def compare(seen, unseen):
    a, b = (_run(x)[2] if x else None for x in (seen, unseen))
    return a, _real_still(seen), b, _real_still(unseen)


def _examples(kind: str) -> list[str]:
    d = ASSETS / "voices" / kind
    return sorted(str(p) for p in d.glob("*.wav")) if d.is_dir() else []


def _intro(recalls: bool) -> str:
    """What the model does with a voice it never heard, as the loaded model does it."""
    if recalls:
        return ("Record or upload speech. The model infers the emotion in the voice and which seen faces it recalls, "
                "then draws the face speaking. Seen voices are training speakers; an unseen voice (yours) gets the "
                "nearest face it knows.")
    return ("Record or upload speech. The model infers the emotion in the voice and a face embedding from it, then "
            "draws that face speaking. Seen voices are training speakers; an unseen voice (yours) gets a face of its "
            "own, imagined from what a voice tells (sex, age, build), not a copy of a training face. The bars show "
            "the seen faces nearest the voice, for comparison.")


def build() -> gr.Blocks:
    recalls = pipeline().recall is not None
    with gr.Blocks(title="s2v: a talking face from speech alone") as demo:
        gr.Markdown("# s2v — a talking face from speech alone\n" + _intro(recalls))
        with gr.Tab("Generate"):
            with gr.Row():
                with gr.Column():
                    audio = gr.Audio(sources=["microphone", "upload"], type="filepath", label="Speech")
                    with gr.Accordion("Emotion override", open=False):
                        emotion = gr.Dropdown(EMOTION_CHOICES, value=EMOTION_CHOICES[0], label="Emotion")
                        weight = gr.Slider(0, 1, value=0.0, step=0.05, label="Blend weight (0: the voice's own)")
                    button = gr.Button("Generate", variant="primary")
                    seen, unseen = _examples("seen"), _examples("unseen")
                    if seen:
                        gr.Examples(seen, inputs=audio, label="Seen voices (training speakers)")
                    if unseen:
                        gr.Examples(unseen, inputs=audio, label="Unseen voices (held-out speakers)")
                with gr.Column():
                    video = gr.Video(label="Generated clip", autoplay=True)
                    emo_plot = gr.BarPlot(x="emotion", y="probability", title="Emotion in the voice", y_lim=[0, 1])
                    id_plot = gr.BarPlot(x="actor", y="similarity", sort="-y", y_lim=[0, 1],
                                         title="Seen faces the voice recalls" if recalls else
                                         "Seen faces nearest the voice")
                    stills = gr.Gallery(label="Those faces", columns=5, height=160)
            button.click(_run, [audio, emotion, weight], [emo_plot, id_plot, video, stills], api_name=False)
            # the public API: one audio file in; emotion bars, identity bars, video out
            api = gr.Button(visible=False)
            api.click(generate, [audio], [emo_plot, id_plot, video], api_name="generate")
        with gr.Tab("Seen vs unseen"):
            gr.Markdown("A training speaker's voice beside a held-out one. " + (
                "Both get a seen face: the first its own, the second the nearest one the model knows."
                if recalls else "The first face was learnt from that speaker; the second is imagined from the voice "
                "alone: compare it with the real speaker below."))
            with gr.Row():
                a_seen = gr.Audio(type="filepath", label="Seen voice", value=(_examples("seen") or [None])[0])
                a_unseen = gr.Audio(type="filepath", label="Unseen voice", value=(_examples("unseen") or [None])[0])
            go = gr.Button("Compare", variant="primary")
            with gr.Row():
                v_seen, v_unseen = gr.Video(label="Seen", autoplay=True), gr.Video(label="Unseen", autoplay=True)
            with gr.Row():
                s_seen = gr.Image(label="The seen speaker, really", height=160, interactive=False)
                s_unseen = gr.Image(label="The unseen speaker, really", height=160, interactive=False)
            go.click(compare, [a_seen, a_unseen], [v_seen, s_seen, v_unseen, s_unseen], api_name=False)
    return demo


def _fewer_malloc_arenas(n: int = 2) -> None:
    """glibc gives each thread that allocates its own arena and keeps freed memory there: under 8
    concurrent users the server's memory swung to +60 %; two arenas keep it within ~10 % (benchmarks/app_load.py)."""
    import ctypes
    import ctypes.util

    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt(-8, n)  # M_ARENA_MAX
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


if __name__ == "__main__":
    _fewer_malloc_arenas()
    pipeline()  # load before serving, so the first request is fast
    build().queue(default_concurrency_limit=2, max_size=32).launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0"), max_file_size="25mb")
