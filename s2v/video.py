"""Reading and writing video through ffmpeg (the binary of the imageio-ffmpeg wheel)."""
from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from .audio import SAMPLE_RATE, ffmpeg_exe, write_wav


class VideoError(ValueError):
    """A video file that cannot be decoded."""


def probe_video(path: str | os.PathLike) -> dict:
    """{'size': (W, H), 'fps': float, 'duration': float} of the first video stream."""
    import imageio_ffmpeg

    try:
        gen = imageio_ffmpeg.read_frames(str(path))
        meta = next(gen)
        gen.close()
    except (RuntimeError, OSError, StopIteration) as exc:
        raise VideoError(f"cannot read video {Path(path).name}: {str(exc).strip().splitlines()[-1]}") from exc
    return {"size": tuple(meta["size"]), "fps": float(meta["fps"]), "duration": float(meta.get("duration") or 0)}


def read_video(path: str | os.PathLike, size: int | None = None) -> tuple[np.ndarray, float]:
    """All frames as (T, H, W, 3) uint8 RGB and the fps; `size` rescales to size x size."""
    meta = probe_video(path)
    w, h = (size, size) if size else meta["size"]
    # passthrough: one output frame per coded frame (no duplicates to fill timestamp gaps)
    cmd = [ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-i", str(path), "-map", "0:v:0", "-fps_mode", "passthrough"]
    if size:
        cmd += ["-vf", f"scale={size}:{size}:flags=area"]
    cmd += ["-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    proc = subprocess.run(cmd, capture_output=True)
    if proc.returncode != 0 and b"fps_mode" in proc.stderr:  # an ffmpeg before 5.1 (S2V_FFMPEG): the old name
        cmd[cmd.index("-fps_mode"):cmd.index("-fps_mode") + 2] = ["-vsync", "passthrough"]
        proc = subprocess.run(cmd, capture_output=True)
    if proc.returncode != 0:
        raise VideoError(f"cannot decode {Path(path).name}: {proc.stderr.decode(errors='replace').strip()[-300:]}")
    n = len(proc.stdout) // (w * h * 3)
    frames = np.frombuffer(proc.stdout[: n * w * h * 3], np.uint8).reshape(n, h, w, 3)
    return frames, meta["fps"]


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float, audio: np.ndarray | None = None,
                rate: int = SAMPLE_RATE, *, fmt: str | None = None, crf: int = 18, preset: str = "fast",
                upscale: int | None = None) -> None:
    """Encode (T, H, W, 3) uint8 frames as H.264 (+ AAC audio when given) into mp4 or flv.

    Deterministic: one encoder thread, fixed settings. `upscale` resizes to upscale x upscale
    (for display). The file is written to a temporary name and renamed, so it is never half-written.
    """
    frames = np.ascontiguousarray(frames, dtype=np.uint8)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got {frames.shape}")
    t, h, w, _ = frames.shape
    path = Path(path)
    fmt = fmt or {".flv": "flv", ".mp4": "mp4", ".mov": "mov", ".mkv": "matroska"}.get(path.suffix, "mp4")
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [ffmpeg_exe(), "-nostdin", "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
               "-s", f"{w}x{h}", "-r", str(fps), "-i", "-"]
        if audio is not None:
            wav = os.path.join(tmp, "a.wav")
            write_wav(wav, audio, rate)
            cmd += ["-i", wav, "-map", "0:v", "-map", "1:a", "-c:a", "aac", "-b:a", "64k"]
        vf = [f"scale={upscale}:{upscale}:flags=lanczos"] if upscale else []
        if (upscale or w) % 2 or (upscale or h) % 2:
            vf.append("pad=ceil(iw/2)*2:ceil(ih/2)*2")
        if vf:
            cmd += ["-vf", ",".join(vf)]
        cmd += ["-c:v", "libx264", "-preset", preset, "-crf", str(crf), "-pix_fmt", "yuv420p", "-threads", "1",
                "-g", str(int(round(fps))), "-bf", "0", "-bitexact"]  # no B-frames: video starts at t = 0
        if fmt == "mp4":
            cmd += ["-movflags", "+faststart"]
        part = path.with_name(path.name + ".part")
        cmd += ["-f", fmt, str(part)]
        proc = subprocess.run(cmd, input=frames.tobytes(), capture_output=True)
        if proc.returncode != 0:
            part.unlink(missing_ok=True)
            raise VideoError(f"ffmpeg could not write {path.name}: {proc.stderr.decode(errors='replace')[-500:]}")
        os.replace(part, path)
