"""Square face crops for a clip: `detect` (OpenCV's Haar cascade, whose weights ship inside the
opencv-python-headless wheel), `center`, or `none`.

`detect` finds faces on a downscaled grey frame, keeps the face nearest the previous one, fills
frames where detection misses with the last good box, smooths centre and size over time, and
crops a square around the face with a margin (hair to chin, like CREMA-D's framing), padding
with edge pixels where the square leaves the frame.
"""
from __future__ import annotations

import cv2
import numpy as np

CROPS = ("detect", "center", "none")


class NoFaceError(ValueError):
    """No face was found in any frame of the clip."""


def _detector() -> cv2.CascadeClassifier:
    path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
    det = cv2.CascadeClassifier(path)
    if det.empty():
        raise RuntimeError(f"cannot load the Haar cascade {path}")
    return det


def detect_boxes(frames: np.ndarray, every: int = 1, max_side: int = 480) -> np.ndarray:
    """(T, 4) boxes (cx, cy, side, found) per frame in pixels; `found` 0 where detection missed."""
    det = _detector()
    t, h, w, _ = frames.shape
    scale = min(1.0, max_side / max(h, w))
    boxes = np.zeros((t, 4), np.float64)
    prev = None
    for i in range(0, t, every):
        grey = cv2.cvtColor(frames[i], cv2.COLOR_RGB2GRAY)
        if scale < 1:
            grey = cv2.resize(grey, (int(w * scale), int(h * scale)), interpolation=cv2.INTER_AREA)
        grey = cv2.equalizeHist(grey)
        found = det.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5,
                                     minSize=(max(16, int(0.08 * min(grey.shape))),) * 2)
        if len(found):
            cand = np.array([(x + bw / 2, y + bh / 2, max(bw, bh)) for x, y, bw, bh in found]) / scale
            if prev is None:
                best = cand[np.argmax(cand[:, 2])]  # the largest face first
            else:
                best = cand[np.argmin(np.hypot(cand[:, 0] - prev[0], cand[:, 1] - prev[1]))]
            prev = best
            boxes[i] = (*best, 1)
    return boxes


def smooth_boxes(boxes: np.ndarray, sigma: float = 1.5) -> np.ndarray:
    """(T, 3) (cx, cy, side): misses take the last good box (the first good one before any),
    then a Gaussian smoothing over time removes the detector's jitter."""
    found = boxes[:, 3] > 0
    if not found.any():
        raise NoFaceError("no face found in any frame")
    idx = np.where(found, np.arange(len(boxes)), -1)
    idx = np.maximum.accumulate(idx)
    idx[idx < 0] = np.argmax(found)
    filled = boxes[idx, :3]
    if len(filled) < 2:
        return filled
    r = min(int(np.ceil(3 * sigma)), len(filled) - 1)
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    # odd reflection at the ends keeps a moving face's trend instead of dragging the box back
    padded = np.pad(filled, ((r, r), (0, 0)), mode="reflect", reflect_type="odd")
    return np.stack([np.convolve(padded[:, j], k, mode="valid") for j in range(3)], 1)


def crop_square(frame: np.ndarray, cx: float, cy: float, side: float, size: int) -> np.ndarray:
    """The square of `side` pixels centred at (cx, cy), resized to size x size (edge padding)."""
    half = side / 2
    x0, y0 = cx - half, cy - half
    m = np.array([[size / side, 0, -x0 * size / side], [0, size / side, -y0 * size / side]], np.float32)
    interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    if interp == cv2.INTER_AREA:  # warpAffine has no area filter: crop first, then resize
        xi0, yi0 = int(np.floor(x0)), int(np.floor(y0))
        s = int(np.ceil(side))
        pad = max(0, -xi0, -yi0, xi0 + s - frame.shape[1], yi0 + s - frame.shape[0])
        src = cv2.copyMakeBorder(frame, pad, pad, pad, pad, cv2.BORDER_REPLICATE) if pad else frame
        patch = src[yi0 + pad:yi0 + pad + s, xi0 + pad:xi0 + pad + s]
        return cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA)
    return cv2.warpAffine(frame, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def crop_clip(frames: np.ndarray, size: int, mode: str = "center", margin: float = 1.8) -> np.ndarray:
    """(T, H, W, 3) -> (T, size, size, 3) uint8 by `mode` (detect | center | none)."""
    t, h, w, _ = frames.shape
    if mode == "none":
        return np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA if min(h, w) > size
                                    else cv2.INTER_LINEAR) for f in frames])
    if mode == "center":
        side = min(h, w)
        return np.stack([crop_square(f, w / 2, h / 2, side, size) for f in frames])
    if mode == "detect":
        boxes = smooth_boxes(detect_boxes(frames))
        # the Haar box covers brows to mouth; move down a little and widen to take hair and chin
        return np.stack([crop_square(f, cx, cy + 0.08 * s, s * margin, size) for f, (cx, cy, s) in zip(frames, boxes)])
    raise ValueError(f"unknown crop {mode!r}; choose from {', '.join(CROPS)}")
