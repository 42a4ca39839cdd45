"""`python -m s2v generate IN -o OUT.mp4 [--model DIR] [--emotion NAME[:WEIGHT]] [--actor ID]`."""
from __future__ import annotations

import argparse
import json
import sys

from .hub import BUNDLED


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m s2v", description="s2v: a talking face from speech alone")
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate", help="speech file in, MP4 (H.264 + AAC) out")
    g.add_argument("input", help="any audio or video file ffmpeg reads")
    g.add_argument("-o", "--output", required=True, help="output .mp4")
    g.add_argument("--model", default=str(BUNDLED), help="model folder (default: the bundled model)")
    g.add_argument("--emotion", default=None, help="blend in an emotion: NAME or NAME:WEIGHT (e.g. happy:0.7)")
    g.add_argument("--actor", default=None, help="use this seen actor's identity")
    g.add_argument("--upscale", type=int, default=256, help="output side in pixels")
    ident = g.add_mutually_exclusive_group()
    ident.add_argument("--raw-nu", action="store_true",
                       help="feed the voice's ν to the generator as is (the paper): a face of the voice's own")
    ident.add_argument("--recall", action="store_true",
                       help="map the voice's ν onto the seen actors first: the nearest training face (the model "
                            "folder says which of the two is the default)")
    g.add_argument("--device", default=None)
    a = p.parse_args(argv)

    from .audio import AudioError
    from .pipeline import RECALL, Speech2Video

    emotion, weight = None, 0.0
    if a.emotion:
        name, _, w = a.emotion.partition(":")
        emotion, weight = {name.strip().lower(): 1.0}, float(w or 1.0)
    try:
        recall = None if a.raw_nu else RECALL if a.recall else "auto"
        pipe = Speech2Video.from_pretrained(a.model, device=a.device, recall=recall)
        result = pipe(a.input, emotion=emotion, emotion_weight=weight, actor=a.actor)
        result.write_mp4(a.output, upscale=a.upscale)
    except (AudioError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for n in result.notices + ([result.unfamiliar] if result.unfamiliar else []):
        print(f"notice: {n}", file=sys.stderr)
    top = "uncertain" if result.unfamiliar else max(result.voice_emotion, key=result.voice_emotion.get)
    print(json.dumps({"output": a.output, "frames": len(result.frames), "fps": result.fps, "emotion": top,
                      "nearest_actor": result.identity[0][0] if result.identity else None}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
