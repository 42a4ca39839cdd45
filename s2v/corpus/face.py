"""A shaded, anti-aliased face renderer (OpenCV drawing, supersampled, then area-downsampled).

Per clip, `FaceRenderer` draws the static part once (hair, skin, eyes at the emotion's opening,
brows, nose, wrinkles; then a lighting pass). Per frame it only does what moves: the jaw (a smooth
vertical warp of the lower face), the mouth (lips, teeth, tongue, from a `Mouth` state), blinks,
and a small head motion (an affine warp of the head over the backdrop). That keeps a 128 px frame
at about a millisecond, which is what lets the 2,160-clip corpus render on two cores.

Coordinates: the face centre is (0, 0); x to the right, y down; one unit is the default face's
half-width. `FaceRenderer.px` maps units to supersampled pixels.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .actors import Expression, Face

_SHIFT = 4  # fixed-point bits for sub-pixel OpenCV drawing
_ONE = 1 << _SHIFT
BACKDROP = (0.56, 0.60, 0.64)


@dataclass(frozen=True)
class Mouth:
    """Mouth state: `open` 0..1 (jaw), `width` -1 (rounded, protruded) .. 1 (spread), `close` 0..1
    (lips pressed, bilabials), `teeth` 0..1 (lower lip tucked under upper teeth, labiodentals)."""

    open: float = 0.0
    width: float = 0.0
    close: float = 0.0
    teeth: float = 0.0


@dataclass(frozen=True)
class Pose:
    """Head motion: translation in units, roll in degrees, and blink 0 (open) .. 1 (closed)."""

    dx: float = 0.0
    dy: float = 0.0
    roll: float = 0.0
    blink: float = 0.0


def _mix(a, b, t: float) -> tuple[float, float, float]:
    return tuple(float(x * (1 - t) + y * t) for x, y in zip(a, b))


def _shade(c, k: float) -> tuple[float, float, float]:
    return tuple(float(np.clip(x * k, 0, 1)) for x in c)


class FaceRenderer:
    """Renders one actor with one expression; call `frame(mouth, pose)` per frame."""

    def __init__(self, face: Face, expr: Expression, size: int = 128, ss: int = 2):
        self.f, self.e, self.size, self.ss = face, expr, size, ss
        self.S = size * ss
        self.unit = self.S * 0.25
        self.cx, self.cy = self.S * 0.5, self.S * 0.47
        self.a = face.face_w  # face half-width (units)
        self.b = face.face_h  # face half-height
        self.mouth_y = 0.50 * self.b
        self.eye_y = -0.08 * self.b
        self._build()

    # ------------------------------------------------------------------ geometry helpers
    def px(self, x, y) -> np.ndarray:
        """Unit coordinates -> fixed-point pixel coordinates for cv2 (int32, shifted)."""
        pts = np.stack([self.cx + np.asarray(x) * self.unit, self.cy + np.asarray(y) * self.unit], -1)
        return np.round(pts * _ONE).astype(np.int32)

    def _poly(self, img, x, y, color, alpha=None) -> None:
        pts = self.px(x, y).reshape(-1, 1, 2)
        cv2.fillPoly(img, [pts], color, cv2.LINE_AA, _SHIFT)
        if alpha is not None:
            cv2.fillPoly(alpha, [pts], 1.0, cv2.LINE_AA, _SHIFT)

    def _line(self, img, x, y, color, width: float, closed=False) -> None:
        pts = self.px(x, y).reshape(-1, 1, 2)
        cv2.polylines(img, [pts], closed, color, max(1, int(round(width * self.unit))), cv2.LINE_AA, _SHIFT)

    def _ellipse(self, img, x, y, rx, ry, color, angle=0.0, alpha=None) -> None:
        c = tuple(int(v) for v in self.px(x, y))
        axes = (max(1, int(round(rx * self.unit * _ONE))), max(1, int(round(ry * self.unit * _ONE))))
        cv2.ellipse(img, c, axes, angle, 0, 360, color, -1, cv2.LINE_AA, _SHIFT)
        if alpha is not None:
            cv2.ellipse(alpha, c, axes, angle, 0, 360, 1.0, -1, cv2.LINE_AA, _SHIFT)

    def _grid(self):
        ys, xs = np.mgrid[0:self.S, 0:self.S].astype(np.float32)
        return (xs + 0.5 - self.cx) / self.unit, (ys + 0.5 - self.cy) / self.unit

    def face_contour(self, n: int = 96, drop: float = 0.0):
        """Face outline (x, y): rounder forehead, a jaw whose squareness follows `face.jaw`."""
        t = np.linspace(0, 2 * np.pi, n, endpoint=False)
        c, s = np.cos(t), np.sin(t)
        lower = s > 0
        p = np.where(lower, 2.0 / (2.2 + 1.6 * self.f.jaw), 1.0)  # superellipse exponent
        x = self.a * np.sign(c) * np.abs(c) ** p
        x = x * np.where(lower, 1 - (0.28 - 0.18 * self.f.jaw) * s ** 2, 1.0)
        y = self.b * np.sign(s) * np.abs(s) ** np.where(lower, 1.0, 0.9)
        y = y + np.where(lower, drop * s ** 4, 0.0)
        return x, y

    # ------------------------------------------------------------------ static layers
    def _build(self) -> None:
        f, e, S = self.f, self.e, self.S
        img = np.zeros((S, S, 3), np.float32)
        alpha = np.zeros((S, S), np.float32)
        X, Y = self._grid()
        hair = _mix(f.hair, (0.78, 0.77, 0.75), f.grey)
        skin = f.skin

        # hair behind the head (long hair, bob)
        if f.hair_style in ("long", "bob"):
            bottom = 1.95 if f.hair_style == "long" else 1.15
            hx = np.concatenate([np.linspace(-self.a * 1.18, self.a * 1.18, 40)])
            top = -self.b * 1.12 * np.sqrt(np.clip(1 - (hx / (self.a * 1.2)) ** 2, 0, 1))
            xs = np.concatenate([hx, [self.a * 1.25, -self.a * 1.25]])
            ys = np.concatenate([top, [bottom, bottom]])
            self._poly(img, xs, ys, _shade(hair, 0.8), alpha)
        # neck and shoulders
        nw = 0.42 * self.a * (1.12 if f.jaw > 0.5 else 1.0)
        self._poly(img, [-nw, nw, nw * 1.05, -nw * 1.05], [0.4 * self.b, 0.4 * self.b, 2.2, 2.2],
                   _shade(skin, 0.82), alpha)
        self._ellipse(img, 0, 2.35, 1.75, 0.75, f.shirt, alpha=alpha)
        self._poly(img, [-nw * 0.95, 0, nw * 0.95], [1.72, 2.05, 1.72], _shade(skin, 0.78))  # collar V
        # ears
        for sgn in (-1, 1):
            self._ellipse(img, sgn * self.a * 0.98, 0.05 * self.b, 0.13 * f.ear, 0.24 * f.ear,
                          _shade(skin, 0.93), alpha=alpha)
            self._ellipse(img, sgn * self.a * 1.0, 0.06 * self.b, 0.06 * f.ear, 0.15 * f.ear, _shade(skin, 0.75))
        # face
        fx, fy = self.face_contour()
        self._poly(img, fx, fy, skin, alpha)
        self.face_mask = np.zeros((S, S), np.float32)
        self._poly(self.face_mask, fx, fy, 1.0)
        # stubble: a darkened, speckled lower face
        if f.stubble > 0:
            rng = np.random.default_rng(int(f.stubble * 1e6))
            # beard line: from the sideburns down to just above the upper lip
            line = (0.05 + 0.33 * np.clip(1 - np.abs(X) / self.a, 0, 1)) * self.b
            m = cv2.GaussianBlur(((Y > line) * self.face_mask).astype(np.float32), (0, 0), 0.04 * self.unit)
            speck = rng.random((S, S)) < 0.35
            dark = (m * (0.25 + 0.5 * speck) * f.stubble * 0.5).astype(np.float32)
            dark = cv2.GaussianBlur(dark, (0, 0), 0.6 * self.ss)
            img = img * (1 - dark[..., None]) + np.array(_shade(f.hair, 0.8), np.float32) * dark[..., None]
        # cheeks: blush and the cheek raise of a smile
        blush = _mix(skin, (0.85, 0.35, 0.35), 0.12 + 0.15 * max(e.cheek, 0) + (0.05 if f.lashes > 0.55 else 0))
        for sgn in (-1, 1):
            self._soft_ellipse(img, sgn * 0.55 * self.a, 0.22 * self.b - 0.08 * e.cheek, 0.22, 0.14, blush, 0.6)
        self._wrinkles(img)
        self._eyes(img, openness=e.eye_open)
        self._brows(img, hair)
        self._nose(img)
        self._hair_front(img, alpha, X, Y, hair)

        self.light = self._lighting(X, Y)
        self.albedo = img
        self.base = np.clip(img * self.light[..., None], 0, 1)
        self.alpha = np.clip(alpha, 0, 1)
        self._jaw_maps()
        bg = np.empty((S, S, 3), np.float32)
        grad = np.linspace(1.06, 0.9, S, dtype=np.float32)[:, None, None]
        bg[:] = np.array(BACKDROP, np.float32) * grad
        rad = np.exp(-((X / 3.0) ** 2 + ((Y + 0.3) / 3.0) ** 2))[..., None]
        self.backdrop_ss = bg * (0.88 + 0.14 * rad)
        self.backdrop = cv2.resize(self.backdrop_ss, (self.size, self.size), interpolation=cv2.INTER_AREA)

    def _soft_ellipse(self, img, x, y, rx, ry, color, strength) -> None:
        m = np.zeros(img.shape[:2], np.float32)
        self._ellipse(m, x, y, rx, ry, 1.0)
        m = cv2.GaussianBlur(m, (0, 0), 0.08 * self.unit) * strength * self.face_mask
        img[:] = img * (1 - m[..., None]) + np.array(color, np.float32) * m[..., None]

    def _eye_geometry(self, sgn: int, openness: float):
        f = self.f
        ex = sgn * f.eye_spacing * self.a * 1.02
        w = 0.2 * f.eye_size
        hu = 0.10 * f.eye_size * openness
        hl = 0.055 * f.eye_size * min(openness, 1.15) * (1 - 0.3 * max(self.e.cheek, 0))
        s = np.linspace(-1, 1, 25)
        tilt = -f.eye_tilt * s * sgn
        xs = ex + w * s
        top = self.eye_y - hu * (1 - s ** 2) ** 0.8 + tilt - 0.015 * s * sgn
        bot = self.eye_y + hl * (1 - s ** 2) ** 0.9 + tilt
        return ex, w, xs, top, bot

    def _eyes(self, img, openness: float) -> None:
        f = self.f
        for sgn in (-1, 1):
            ex, w, xs, top, bot = self._eye_geometry(sgn, openness)
            # socket shadow and lid crease
            self._line(img, xs[3:-3], top[3:-3] - 0.07 * f.eye_size, _shade(f.skin, 0.8), 0.02)
            # sclera, clipped iris and pupil, highlight
            patch = np.zeros(img.shape[:2], np.float32)
            self._poly(patch, np.concatenate([xs, xs[::-1]]), np.concatenate([top, bot[::-1]]), 1.0)
            eye = np.zeros_like(img)
            eye[:] = (0.93, 0.91, 0.88)
            ix, iy = ex + f.gaze[0] * w, self.eye_y + f.gaze[1] * 0.05 + 0.01
            r = 0.085 * f.eye_size
            self._ellipse(eye, ix, iy, r, r, _shade(f.eye_color, 0.6))
            self._ellipse(eye, ix, iy, r * 0.8, r * 0.8, f.eye_color)
            self._ellipse(eye, ix, iy, r * 0.38, r * 0.38, (0.04, 0.03, 0.03))
            self._ellipse(eye, ix - r * 0.35, iy - r * 0.35, r * 0.18, r * 0.18, (1.0, 1.0, 1.0))
            img[:] = img * (1 - patch[..., None]) + eye * patch[..., None]
            # lash line on the upper lid, a faint lower lid
            lash = _mix(_shade(f.skin, 0.4), (0.05, 0.04, 0.04), f.lashes)
            self._line(img, xs, top, lash, 0.018 + 0.012 * f.lashes)
            self._line(img, xs[4:-4], bot[4:-4], _shade(f.skin, 0.72), 0.008)

    def _brows(self, img, hair) -> None:
        f, e = self.f, self.e
        color = _mix(_shade(hair, 0.75), (0.05, 0.04, 0.03), 0.25)
        for sgn in (-1, 1):
            ex = sgn * f.eye_spacing * self.a * 1.02
            s = np.linspace(0, 1, 20)  # 0 inner end, 1 outer end
            xs = ex + sgn * (-0.2 + 0.46 * s) * f.eye_size - sgn * 0.05 * min(e.brow_inner, 0)
            base = self.eye_y - 0.2 * f.eye_size - 0.13 * e.brow_raise  # CREMA-D's expressions are big
            arch = -f.brow_arch * 0.08 * np.sin(np.pi * s ** 0.8)
            inner = -0.15 * e.brow_inner * (1 - s) ** 1.5
            ys = base + arch + inner + 0.03 * s
            th = 0.03 * f.brow_thick * (1.2 - 0.6 * s)
            self._poly(img, np.concatenate([xs, xs[::-1]]), np.concatenate([ys - th, (ys + th * 0.6)[::-1]]), color)
        # frown lines between the brows in anger, forehead lines when brows go up or with age
        if e.brow_inner < -0.2:
            for dx in (-0.06, 0.06):
                self._line(img, [dx, dx * 0.7], [self.eye_y - 0.24, self.eye_y - 0.12],
                           _shade(f.skin, 0.8), 0.012 * -e.brow_inner)
        lines = max(f.wrinkles, 0) * 0.6 + max(e.brow_raise, 0) * 0.6
        if lines > 0.1:
            for k in range(3):
                yy = self.eye_y - 0.42 - 0.1 * k
                xs = np.linspace(-0.42, 0.42, 12) * self.a
                self._line(img, xs, yy + 0.025 * np.cos(xs * 3), _shade(f.skin, 1 - 0.14 * min(lines, 1)), 0.012)

    def _nose(self, img) -> None:
        f, e = self.f, self.e
        tip_y = 0.27 * self.b * f.nose_len - 0.02 * e.nose_wrinkle
        w = 0.13 * f.nose_w
        shadow = _shade(f.skin, 0.78)
        # bridge shadow on the side away from the light
        self._line(img, [0.05, 0.07, w * 0.9], [self.eye_y + 0.03, tip_y - 0.12, tip_y - 0.01], shadow, 0.018)
        self._soft_ellipse(img, 0.0, tip_y - 0.02, 0.09 * f.nose_w, 0.07, _shade(f.skin, 1.08), 0.7)
        for sgn in (-1, 1):  # alae and nostrils
            t = np.linspace(-0.4, 1.2, 12)
            self._line(img, sgn * (w * 0.8 + 0.05 * np.sin(t * 2)), tip_y - 0.06 + 0.07 * t / 1.2, shadow, 0.016)
            self._ellipse(img, sgn * w * 0.45, tip_y + 0.03, 0.04 * f.nose_w, 0.018, _shade(f.skin, 0.42),
                          angle=-sgn * 15)
        if e.nose_wrinkle > 0.2:
            for k in range(3):
                yy = self.eye_y + 0.05 + 0.04 * k
                self._line(img, [-0.07, 0, 0.07], [yy, yy - 0.015, yy], _shade(f.skin, 0.75), 0.01)
        # nasolabial folds: deeper with age and with a smile
        fold = 0.25 * f.wrinkles + 0.5 * max(e.cheek, 0) + 0.3 * e.nose_wrinkle
        if fold > 0.1:
            for sgn in (-1, 1):
                t = np.linspace(0, 1, 10)
                xs = sgn * (w * 1.1 + 0.16 * t + 0.05 * np.sin(np.pi * t))
                ys = tip_y - 0.02 + (self.mouth_y - tip_y + 0.08) * t
                self._line(img, xs, ys, _shade(f.skin, 1 - 0.2 * min(fold, 1)), 0.016)

    def _wrinkles(self, img) -> None:
        f = self.f
        if f.wrinkles < 0.15:
            return
        color = _shade(f.skin, 1 - 0.15 * f.wrinkles)
        for sgn in (-1, 1):  # crow's feet
            ex = sgn * (f.eye_spacing * self.a + 0.26 * f.eye_size)
            for k in (-1, 0, 1):
                self._line(img, [ex, ex + sgn * 0.09], [self.eye_y + 0.02 * k, self.eye_y + 0.04 * k], color, 0.01)
            # under-eye bags
            t = np.linspace(-1, 1, 10)
            self._line(img, ex - sgn * 0.3 + 0.14 * t, self.eye_y + 0.12 + 0.03 * (1 - t ** 2), color, 0.01)

    def _hair_front(self, img, alpha, X, Y, hair) -> None:
        f = self.f
        if f.hair_style == "bald":
            rim = (np.abs(X) > self.a * 0.8) & (Y > -0.55 * self.b) & (Y < 0.1 * self.b)
            shape = ((X / (self.a * 1.06)) ** 2 + (Y / (self.b * 1.08)) ** 2 < 1) & rim
        else:
            head = (X / (self.a * 1.08)) ** 2 + ((Y + 0.06) / (self.b * 1.1)) ** 2 < 1
            line_y = -self.b * (0.55 + 0.25 * f.hairline) + 0.12 * (X / self.a) ** 2
            if f.hair_style == "fringe":
                line_y = -self.b * 0.38 + 0.05 * np.cos(X * 9) + 0.1 * (X / self.a) ** 4
            taper = np.clip((Y + 0.3 * self.b) / (0.35 * self.b), 0, 1)  # sideburns narrow downwards
            side = (np.abs(X) > self.a * (0.84 + 0.14 * taper)) & (Y < 0.05 * self.b)
            shape = head & ((Y < line_y) | side)
            if f.hair_style == "bun":
                shape |= (X ** 2 + (Y + self.b * 1.2) ** 2) < (0.38 * self.a) ** 2
            if f.hair_style == "buzz":
                shape &= (X / (self.a * 1.02)) ** 2 + ((Y + 0.03) / (self.b * 1.03)) ** 2 < 1
        m = cv2.GaussianBlur(shape.astype(np.float32), (0, 0), 0.6 * self.ss)
        # strands: streaky texture along the hair
        rng = np.random.default_rng(int(sum(hair) * 1e6) % (2 ** 31))
        tex = rng.normal(0, 1, (self.S // 4 + 1, self.S * 2 // 4 + 1)).astype(np.float32)
        tex = cv2.resize(tex, (self.S * 2, self.S), interpolation=cv2.INTER_CUBIC)[:, : self.S]
        tex = cv2.GaussianBlur(tex, (1, 0), sigmaX=0.3, sigmaY=2.5 * self.ss)
        k = 0.55 if f.hair_style == "buzz" else 1.0
        col = np.array(hair, np.float32)[None, None] * (1 + 0.12 * k * tex[..., None])
        if f.hair_style == "buzz":
            col = col * 0.7 + np.array(f.skin, np.float32) * 0.3
        img[:] = img * (1 - m[..., None]) + col * m[..., None]
        alpha[:] = np.maximum(alpha, m)

    def _lighting(self, X, Y) -> np.ndarray:
        """Multiplicative shading: key light from the upper left, falloff to the face's edges."""
        r2 = (X / (self.a * 1.1)) ** 2 + (Y / (self.b * 1.15)) ** 2
        light = 1.05 - 0.28 * np.clip(r2, 0, 1.6) ** 2 - 0.09 * X / self.a - 0.04 * Y
        occl = np.zeros_like(X)
        for sgn in (-1, 1):  # eye sockets, a shadow under the nose, under the lower lip, under the chin
            self._ellipse(occl, sgn * self.f.eye_spacing * self.a, self.eye_y - 0.02, 0.26, 0.14, 0.12)
        self._ellipse(occl, 0.04, 0.27 * self.b * self.f.nose_len + 0.07, 0.12, 0.04, 0.12)
        self._ellipse(occl, 0, self.mouth_y + 0.16, 0.14, 0.05, 0.08)
        fx, fy = self.face_contour()
        chin = np.zeros_like(X)
        self._ellipse(chin, 0, self.b + 0.1, 0.5 * self.a, 0.16, 0.35)
        occl += chin * (1 - self.face_mask)
        occl = cv2.GaussianBlur(occl, (0, 0), 0.06 * self.unit)
        return np.clip(light - occl, 0.45, 1.15).astype(np.float32)

    # ------------------------------------------------------------------ per-frame layers
    def _jaw_maps(self) -> None:
        """Rows of the lower face move down with the jaw: weight 0 at the upper lip, 1 at the chin."""
        top = self.px(0, self.mouth_y - 0.02)[1] / _ONE
        bot = self.S
        self.jaw_roi = (int(top), int(bot))
        ys, xs = np.mgrid[int(top):int(bot), 0:self.S].astype(np.float32)
        yu = (ys + 0.5 - self.cy) / self.unit
        xu = (xs + 0.5 - self.cx) / self.unit
        w_y = np.clip((yu - (self.mouth_y - 0.02)) / (self.b - self.mouth_y + 0.02), 0, 1)
        w_y = np.where(yu > self.b, np.clip(1 - (yu - self.b) / 0.35, 0, 1), np.sqrt(w_y))
        w_x = np.clip(1.2 - np.abs(xu) / (self.a * 0.75), 0, 1)
        self.jaw_w = (w_y * w_x).astype(np.float32)
        self.jaw_xs, self.jaw_ys = xs, ys

    def _mouth_patch(self, img, alpha_out, m: Mouth) -> None:
        f, e = self.f, self.e
        k = max(m.close, m.teeth)
        opening = m.open * (1 - k) * 0.2 * self.b
        w = 0.34 * f.mouth_w * (1 + 0.18 * e.stretch + 0.12 * max(e.smile, 0) + 0.12 * m.width
                                - 0.18 * max(-m.width, 0))
        tu, tl = 0.045 * f.lip_full, 0.06 * f.lip_full * (1 + 0.3 * max(-m.width, 0))
        s = np.linspace(-1, 1, 41)
        env = (1 - s ** 2)
        lift = 0.12 * e.smile * s ** 2  # corners up with a smile, down in sadness
        y0 = self.mouth_y + 0.02 - 0.02 * e.lip_raise
        up_in = y0 - opening * 0.25 * env ** 0.5 - lift - 0.05 * e.lip_raise * env
        lo_in = y0 + opening * 0.75 * env ** (0.5 + 0.3 * max(-m.width, 0)) - lift
        cupid = 1 - 0.25 * np.exp(-(s / 0.14) ** 2)
        up_out = up_in - tu * env ** 0.5 * cupid
        lo_out = lo_in + tl * env ** 0.6 * (1 - 0.35 * m.teeth)
        xs = w * s
        lip = f.lips
        self._poly(img, np.concatenate([xs, xs[::-1]]), np.concatenate([up_out, lo_out[::-1]]),
                   _shade(lip, 0.9), alpha_out)
        self._poly(img, np.concatenate([xs, xs[::-1]]), np.concatenate([up_in + 0.004, lo_out[::-1]]), lip)
        # lower lip highlight
        self._ellipse(img, -0.03, (lo_in[20] + lo_out[20]) / 2, 0.35 * w, 0.012 * f.lip_full, _shade(lip, 1.18))
        if opening > 0.004 * self.b:
            cavity = np.zeros(img.shape[:2], np.float32)
            self._poly(cavity, np.concatenate([xs, xs[::-1]]), np.concatenate([up_in, lo_in[::-1]]), 1.0)
            inner = np.zeros_like(img)
            inner[:] = (0.22, 0.06, 0.07)
            gap = lo_in[20] - up_in[20]
            self._ellipse(inner, 0, lo_in[20] - 0.1 * gap, w * 0.55, 0.35 * gap + 0.01, (0.62, 0.28, 0.3))  # tongue
            teeth_h = min(0.4 * gap, 0.05)
            self._poly(inner, [-0.7 * w, 0.7 * w, 0.7 * w, -0.7 * w],
                       [up_in[20] - 0.05, up_in[20] - 0.05, up_in[20] + teeth_h, up_in[20] + teeth_h],
                       (0.93, 0.91, 0.85))
            if gap > 0.12:
                self._poly(inner, [-0.5 * w, 0.5 * w, 0.5 * w, -0.5 * w],
                           [lo_in[20] - 0.03, lo_in[20] - 0.03, lo_in[20] + 0.05, lo_in[20] + 0.05],
                           (0.85, 0.83, 0.78))
            img[:] = img * (1 - cavity[..., None]) + inner * cavity[..., None]
        elif m.teeth > 0.3:  # upper teeth resting on the lower lip (f, v)
            self._poly(img, [-0.45 * w, 0.45 * w, 0.45 * w, -0.45 * w],
                       [up_in[20], up_in[20], up_in[20] + 0.025, up_in[20] + 0.025], (0.93, 0.91, 0.85))
        self._line(img, xs, (up_in + lo_in) / 2 if opening <= 0.004 * self.b else up_in,
                   _shade(lip, 0.45), 0.012)

    def _mouth_roi(self) -> tuple[int, int, int, int]:
        x0, y0 = self.px(-0.7, self.mouth_y - 0.2) // _ONE
        x1, y1 = self.px(0.7, self.mouth_y + 0.5) // _ONE
        return int(max(x0, 0)), int(max(y0, 0)), int(min(x1, self.S)), int(min(y1, self.S))

    def frame(self, mouth: Mouth = Mouth(), pose: Pose = Pose(), *, backdrop: bool = True) -> np.ndarray:
        """One frame, (size, size, 3) uint8 RGB."""
        img = self.base.copy()
        alpha = self.alpha
        drop = mouth.open * (1 - max(mouth.close, mouth.teeth)) * 0.16 * self.b
        if drop > 1e-3:
            y0, y1 = self.jaw_roi
            dy = drop * self.unit * self.jaw_w
            mapy = self.jaw_ys - dy
            img[y0:y1] = cv2.remap(self.base, self.jaw_xs, mapy, cv2.INTER_LINEAR)
            alpha = alpha.copy()
            alpha[y0:y1] = cv2.remap(self.alpha, self.jaw_xs, mapy, cv2.INTER_LINEAR)
        if pose.blink > 0.05:
            self._blink(img, pose.blink)
        # mouth: drawn in albedo on a local patch, lit by the same light map, then composited
        x0, y0, x1, y1 = self._mouth_roi()
        sub_img = np.zeros((y1 - y0, x1 - x0, 3), np.float32)
        sub_a = np.zeros((y1 - y0, x1 - x0), np.float32)
        self._draw_in_roi(sub_img, sub_a, x0, y0, lambda im, al: self._mouth_patch(im, al, mouth))
        lit = sub_img * self.light[y0:y1, x0:x1, None]
        img[y0:y1, x0:x1] = img[y0:y1, x0:x1] * (1 - sub_a[..., None]) + lit * sub_a[..., None]
        small = cv2.resize(img, (self.size, self.size), interpolation=cv2.INTER_AREA)
        a_small = cv2.resize(alpha, (self.size, self.size), interpolation=cv2.INTER_AREA)
        if pose.dx or pose.dy or pose.roll:
            c = (self.cx / self.ss, (self.cy + 0.6 * self.unit) / self.ss)  # rotate about the neck
            M = cv2.getRotationMatrix2D(c, pose.roll, 1.0)
            M[:, 2] += (pose.dx * self.unit / self.ss, pose.dy * self.unit / self.ss)
            small = cv2.warpAffine(small, M, (self.size, self.size), flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_REPLICATE)
            a_small = cv2.warpAffine(a_small, M, (self.size, self.size), flags=cv2.INTER_LINEAR,
                                     borderMode=cv2.BORDER_REPLICATE)
        if backdrop:
            small = small * a_small[..., None] + self.backdrop * (1 - a_small[..., None])
        return (np.clip(small, 0, 1) * 255 + 0.5).astype(np.uint8)

    def _draw_in_roi(self, sub_img, sub_a, x0, y0, draw) -> None:
        """Run `draw` on a sub-image: shift the centre so unit coordinates stay the same."""
        cx, cy = self.cx, self.cy
        self.cx, self.cy = cx - x0, cy - y0
        try:
            draw(sub_img, sub_a)
        finally:
            self.cx, self.cy = cx, cy

    def _blink(self, img, amount: float) -> None:
        """Upper lids come down over the eyes (drawn in skin, lit, with the lash line on their edge)."""
        f = self.f
        for sgn in (-1, 1):
            ex, w, xs, top, bot = self._eye_geometry(sgn, self.e.eye_open)
            lid = top + (bot - top) * amount
            lid_img = np.zeros_like(img)
            lid_img[:] = _shade(f.skin, 0.95)
            m = np.zeros(img.shape[:2], np.float32)
            self._poly(m, np.concatenate([xs * 1.02, xs[::-1] * 1.02]),
                       np.concatenate([top - 0.01, lid[::-1] + 0.004]), 1.0)
            lid_img *= self.light[..., None]
            img[:] = img * (1 - m[..., None]) + lid_img * m[..., None]
            lash = _mix(_shade(f.skin, 0.4), (0.05, 0.04, 0.04), f.lashes)
            lit = tuple(float(c) for c in np.array(lash) * 0.9)
            self._line(img, xs, lid, lit, 0.018 + 0.012 * f.lashes)
