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
    try:
        return _generate(audio_path, emotion, weight, progress)
    finally:
        _trim_heap()


def _generate(audio_path, emotion, weight, progress):
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
    if result.unfamiliar:
        gr.Warning(f"Uncertain emotion: {result.unfamiliar}.")
    progress(0.8, desc="encoding video")
    out = Path(tempfile.mkdtemp(prefix="s2v-")) / "s2v.mp4"
    result.write_mp4(out)
    # the bars show the μ the face was drawn with: the voice's own, or blended with the override
    emo = pd.DataFrame({"emotion": list(result.emotion), "probability": list(result.emotion.values())})
    top = result.identity[:5]
    g = pipeline().gallery
    ids = pd.DataFrame({"actor": [a for a, _ in top], "face": [_face_name(g, a) for a, _ in top],
                        "similarity": [s for _, s in top]})
    stills = [(g.stills[g.ids.index(a)], f"{_face_name(g, a)} ({s:.2f})") for a, s in top] if g is not None else []
    return emo, ids, str(out), stills


def _face_name(gallery, actor: str) -> str:
    """A seen face by what it looks like: "woman, 29 (1002)"."""
    info = gallery.actors.get(actor, {}) if gallery is not None else {}
    who = {"Male": "man", "Female": "woman"}.get(info.get("sex"), "person")
    age = info.get("age") or info.get("age_group") or ""
    return f"{who}, {age} ({actor})" if age else f"{who} ({actor})"


def _override_weight(emotion: str, weight: float) -> float:
    """Picking an emotion with the blend at 0 would change nothing: move the blend to 0.7; back to the voice's
    own emotion, to 0."""
    if emotion not in EMOTION_NAMES.values():
        return 0.0
    return weight if weight > 0 else 0.7


def generate(audio_path):
    """API: one audio file -> (emotion bars, identity bars (actor, similarity), video)."""
    emo, ids, video, _ = _run(audio_path)
    return emo, ids[["actor", "similarity"]], video


def _real_still(path) -> str | None:
    """The example speaker's real still (assets/stills/ACTOR.png), when the file is one of the examples."""
    if not path:
        return None
    still = ASSETS / "stills" / f"{Path(path).name.split('_')[0]}.png"
    return str(still) if still.exists() else None


def compare(seen, unseen):
    a, b = (_run(x)[2] if x else None for x in (seen, unseen))
    return a, _real_still(seen), b, _real_still(unseen)


def _voice_label(path: str) -> str:
    """An example voice's file name as a choice: "1019 male middle neutral"."""
    return Path(path).stem.replace("_", " ")


def _examples(kind: str) -> list[str]:
    d = ASSETS / "voices" / kind
    return sorted(str(p) for p in d.glob("*.wav")) if d.is_dir() else []


def _intro(recalls: bool, speaker: bool = False) -> str:
    """What the model does with a voice it never heard, as the loaded model does it."""
    if recalls:
        by = (" (the seen speaker who sounds most like it, by a speaker encoder trained on real recorded speech)"
              if speaker else "")
        return ("Record or upload speech. The model infers the emotion in the voice and which seen faces it recalls, "
                "then draws the face speaking. Seen voices are training speakers; an unseen voice (yours) gets the "
                f"nearest face it knows{by}.")
    return ("Record or upload speech. The model infers the emotion in the voice and a face embedding from it, then "
            "draws that face speaking. Seen voices are training speakers; an unseen voice (yours) gets a face of its "
            "own, imagined from what a voice tells (sex, age, build), not a copy of a training face. The bars show "
            "the seen faces nearest the voice, for comparison.")


def build() -> gr.Blocks:
    recalls = pipeline().recall is not None
    with gr.Blocks(title="s2v: a talking face from speech alone") as demo:
        gr.Markdown("# s2v — a talking face from speech alone\n" + _intro(recalls, pipeline().speaker is not None))
        with gr.Tab("Generate"):
            with gr.Row():
                with gr.Column():
                    # upload first: it works on every machine; the microphone is one click away
                    audio = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Speech")
                    with gr.Accordion("Emotion override", open=False):
                        emotion = gr.Dropdown(EMOTION_CHOICES, value=EMOTION_CHOICES[0], label="Emotion")
                        weight = gr.Slider(0, 1, value=0.0, step=0.05, label="Blend weight (0: the voice's own)")
                    button = gr.Button("Generate", variant="primary")
                    seen, unseen = _examples("seen"), _examples("unseen")
                with gr.Column():
                    video = gr.Video(label="Generated clip", autoplay=True)
                    emo_plot = gr.BarPlot(x="emotion", y="probability", title="Emotion in the voice", y_lim=[0, 1])
                    id_plot = gr.BarPlot(x="face", y="similarity", sort="-y", y_lim=[0, 1],
                                         title="Seen faces the voice recalls" if recalls else
                                         "Seen faces nearest the voice")
                    stills = gr.Gallery(label="Those faces", columns=5, height=160)
            outputs = [emo_plot, id_plot, video, stills]
            with gr.Row():  # a click on an example generates at once
                if seen:
                    gr.Examples(seen, inputs=audio, outputs=outputs, fn=_run, run_on_click=True,
                                cache_examples=False, label="Seen voices (training speakers)")
                if unseen:
                    gr.Examples(unseen, inputs=audio, outputs=outputs, fn=_run, run_on_click=True,
                                cache_examples=False, label="Unseen voices (held-out speakers)")
            emotion.change(_override_weight, [emotion, weight], weight, api_name=False)
            button.click(_run, [audio, emotion, weight], outputs, api_name=False)
            # the public API: one audio file in; emotion bars, identity bars, video out
            api = gr.Button(visible=False)
            api.click(generate, [audio], [emo_plot, id_plot, video], api_name="generate")
        with gr.Tab("Seen vs unseen"):
            gr.Markdown("A training speaker's voice beside a held-out one. " + (
                "Both get a seen face: the first its own, the second the nearest one the model knows."
                if recalls else "The first face was learnt from that speaker; the second is imagined from the voice "
                "alone: compare it with the real speaker below."))
            with gr.Row():
                with gr.Column():
                    pick_seen = gr.Dropdown([(_voice_label(p), p) for p in seen], value=(seen or [None])[0],
                                            label="Seen speaker (or upload a voice below)")
                    a_seen = gr.Audio(type="filepath", label="Seen voice", value=(seen or [None])[0])
                with gr.Column():
                    pick_unseen = gr.Dropdown([(_voice_label(p), p) for p in unseen], value=(unseen or [None])[0],
                                              label="Unseen speaker (or upload your own voice below)")
                    a_unseen = gr.Audio(type="filepath", label="Unseen voice", value=(unseen or [None])[0])
            pick_seen.change(lambda p: p, pick_seen, a_seen, api_name=False)
            pick_unseen.change(lambda p: p, pick_unseen, a_unseen, api_name=False)
            go = gr.Button("Compare", variant="primary")
            gr.Markdown("Press play on one clip at a time: each speaks with its own voice.")
            with gr.Row():  # no autoplay: two voices at once would talk over each other
                v_seen, v_unseen = gr.Video(label="Seen", autoplay=False), gr.Video(label="Unseen", autoplay=False)
            with gr.Row():
                s_seen = gr.Image(label="The seen speaker, really", height=160, interactive=False)
                s_unseen = gr.Image(label="The unseen speaker, really", height=160, interactive=False)
            go.click(compare, [a_seen, a_unseen], [v_seen, s_seen, v_unseen, s_unseen], api_name=False)
    return demo


def _libc():
    import ctypes
    import ctypes.util

    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


_LIBC = _libc()


def _trim_heap() -> None:
    """Hand the heap's free pages back to the system after each request (glibc keeps them otherwise, and the
    server's memory creeps up under load; benchmarks/app_load.py measures it)."""
    if _LIBC is not None and hasattr(_LIBC, "malloc_trim"):
        _LIBC.malloc_trim(0)


def _fewer_malloc_arenas(n: int = 2) -> None:
    """glibc gives each thread that allocates its own arena and keeps freed memory there: under 8
    concurrent users the server's memory swung to +60 %; two arenas keep it within ~10 % (benchmarks/app_load.py)."""
    if _LIBC is not None and hasattr(_LIBC, "mallopt"):  # not glibc: nothing to do
        _LIBC.mallopt(-8, n)  # M_ARENA_MAX


if __name__ == "__main__":
    _fewer_malloc_arenas()
    pipeline()  # load before serving, so the first request is fast
    build().queue(default_concurrency_limit=2, max_size=32).launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0"), max_file_size="25mb")
