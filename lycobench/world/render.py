"""Rasterise drawings (a background, parts, a paint style) into RGB images.

Parts are signed distance fields. Every image is drawn on a grid ``supersample`` times finer than the output
and box-filtered down, which anti-aliases edges, strokes and patterns alike. Base shapes come from precomputed
distance textures and are drawn for a whole batch at once, so rendering costs a few numpy passes per batch.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np

from . import sdf
from .vocab import SHAPES

RGB = tuple[float, float, float]
_SHAPE_INDEX = {f"shape:{s}": i for i, s in enumerate(SHAPES)}  # base shapes, drawn from textures


@dataclass(frozen=True)
class Part:
    """One filled primitive, in image units ([0, 1], y down).

    ``kind`` is ``shape:<base shape>`` (args ``cx, cy, r, flip``; radius r as the base world defines it) or an analytic primitive: ``circle`` (cx, cy, r),
    ``ellipse`` (cx, cy, a, b, angle), ``dome`` (cx, cy, a, b), ``box`` (cx, cy, hx, hy, angle, round), ``capsule`` (ax, ay, bx, by, r),
    ``heart`` (cx, cy, r), ``crescent`` (cx, cy, r, angle) or ``poly`` (x0, y0, x1, y1, ...).
    ``frame`` (cx, cy, r) places shading; ``pattern`` (kind, second colour, period) fills it with a motif.
    """

    kind: str
    args: tuple[float, ...]
    colour: RGB
    frame: tuple[float, float, float]
    pattern: tuple[str, RGB, float] | None = None


@dataclass(frozen=True)
class Background:
    """Two tones and how they mix: plain, stripes, checkers, dots or gradient (c1 at the top)."""

    c1: RGB
    c2: RGB
    pattern: str = "plain"


@dataclass(frozen=True)
class Paint:
    """How parts are painted. Base styles: flat, outline, shaded, shadow; concept styles: hatch, halftone, cartoon,
    frame (parts flat, the whole picture inside a dark border of ``width``: a treatment of the picture, not of
    its content, so that it shows whatever the content)."""

    kind: str = "flat"
    width: float = 0.045  # stroke width (outline, hatch, cartoon), image units
    period: float = 0.08  # motif period (hatch, halftone)
    size: float = 0.35  # line width or dot radius, as a fraction of the period
    angle: float = math.pi / 4  # hatch direction


@dataclass(frozen=True)
class Drawing:
    background: Background
    parts: tuple[Part, ...] = ()
    paint: Paint = field(default_factory=Paint)


BASE_PAINTS: dict[str, Paint] = {
    "flat": Paint("flat"),
    "outline": Paint("outline"),
    "shaded": Paint("shaded"),
    "shadow": Paint("shadow"),
}
SHADOW_OFFSET = (0.05, 0.06)  # legible at 32 px (about 2 px)
_HOLLOW = ("outline", "hatch", "halftone")  # paints through which the background shows  # x, y in image units
SHADOW_STRENGTH = 0.5
INK = np.float32(0.08)  # the near-black of the cartoon paint's strokes and the frame paint's border


def _coverage(d: np.ndarray, res: int) -> np.ndarray:
    """Fraction of a (sub)pixel inside the shape, from the signed distance: a one-pixel ramp."""
    return np.clip(0.5 - d * res, 0.0, 1.0)


def _grid(res: int) -> tuple[np.ndarray, np.ndarray]:
    t = ((np.arange(res) + 0.5) / res).astype(np.float32)
    return t[None, None, :], t[None, :, None]  # X [1,1,R], Y [1,R,1]


@functools.cache
def _pattern_mask(pattern: str, res: int) -> np.ndarray:
    """Where a background shows its second tone, [R, R] in [0, 1]. Fixed phase: one mask per pattern."""
    x, y = _grid(res)
    x, y = x[0], y[0]
    period = 1.0 / 6.0

    def stripes(t):
        tri = np.abs(np.mod(t / period, 1.0) - 0.5)  # 0 in the middle of a stripe cell, 0.5 at its border
        return np.clip(0.5 - (0.25 - tri) * period * res, 0.0, 1.0)

    if pattern == "plain":
        m = np.zeros((res, res), np.float32)
    elif pattern == "stripes":
        m = np.broadcast_to(stripes(x), (res, res))
    elif pattern == "checkers":
        sx, sy = stripes(x), stripes(y)
        m = sx + sy - 2 * sx * sy
    elif pattern == "dots":
        dx = (np.mod(x / period, 1.0) - 0.5) * period
        dy = (np.mod(y / period, 1.0) - 0.5) * period
        m = np.clip(0.5 - (np.hypot(dx, dy) - 0.036) * res, 0.0, 1.0)
    elif pattern == "gradient":
        m = np.broadcast_to(y, (res, res))
    else:
        raise KeyError(f"unknown background pattern {pattern!r}")
    return np.ascontiguousarray(m, dtype=np.float32)


def _analytic(part: Part, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    a = part.args
    k = part.kind
    if k == "circle":
        return sdf.circle(x, y, *a)
    if k == "ellipse":
        return sdf.ellipse(x, y, *a)
    if k == "box":
        return sdf.box(x, y, *a)
    if k == "capsule":
        return sdf.capsule(x, y, *a)
    if k == "dome":
        return sdf.dome(x, y, *a)
    if k == "heart":
        return sdf.heart(x, y, *a)
    if k == "crescent":
        return sdf.crescent(x, y, *a)
    if k == "poly":
        return sdf.polygon(x, y, np.asarray(a).reshape(-1, 2))
    raise KeyError(f"unknown part kind {k!r}")


def _texture_sdf(parts: list[Part], xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Distance fields of base-shape parts sampled from the unit textures; xs, ys [b, W] -> [b, W, W]."""
    tex = sdf.shape_textures()
    n = tex.shape[-1]
    arr = np.asarray([p.args for p in parts], dtype=np.float32)  # cx, cy, r, flip
    cx, cy, r, flip = (arr[:, i : i + 1] for i in range(4))
    scale = n / (2 * sdf.TEX_EXTENT)
    iu = np.clip(((xs - cx) / r * flip + sdf.TEX_EXTENT) * scale, 0, n - 1).astype(np.intp)
    iv = np.clip(((ys - cy) / r + sdf.TEX_EXTENT) * scale, 0, n - 1).astype(np.intp)
    si = np.asarray([_SHAPE_INDEX[p.kind] for p in parts])
    return tex[si[:, None, None], iv[:, :, None], iu[:, None, :]] * r[:, :, None]


def _colour_field(part: Part, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    c1 = np.asarray(part.colour, np.float32)
    if part.pattern is None:
        return c1[None, None, :]
    kind, c2, period = part.pattern
    if kind == "stripes":  # horizontal bands
        m = np.mod((y - part.frame[1]) / period, 1.0) < 0.5
        m = np.broadcast_to(m, np.broadcast(x, y).shape)
    elif kind == "vstripes":
        m = np.mod((x - part.frame[0]) / period, 1.0) < 0.5
        m = np.broadcast_to(m, np.broadcast(x, y).shape)
    elif kind == "windows":  # a grid of small squares
        fx = np.abs(np.mod((x - part.frame[0]) / period, 1.0) - 0.5) < 0.22
        fy = np.abs(np.mod((y - part.frame[1]) / period, 1.0) - 0.5) < 0.22
        m = fx & fy
    elif kind == "dots":
        dx = (np.mod((x - part.frame[0]) / period, 1.0) - 0.5) * period
        dy = (np.mod((y - part.frame[1]) / period, 1.0) - 0.5) * period
        m = np.hypot(dx, dy) < 0.3 * period
    else:
        raise KeyError(f"unknown part pattern {kind!r}")
    return np.where(m[..., None], np.asarray(c2, np.float32), c1).astype(np.float32)


def _paint(canvas: np.ndarray, cov: np.ndarray, col) -> None:
    """Paint colour ``col`` (RGB or a per-pixel field) over the canvas with coverage ``cov``, in place."""
    delta = col - canvas
    delta *= cov[..., None]
    canvas += delta


def _stroke(d: np.ndarray, width: float, res: int) -> np.ndarray:
    return np.clip(0.5 - (np.abs(d) - width / 2) * res, 0.0, 1.0)


def _apply(paint: Paint, canvas, bg, d, col, u, v, X, Y, res: int) -> None:
    """Paint one part (a batch of b images) in the given style, in place. ``bg`` shows through hollow parts."""
    cov = _coverage(d, res)
    k = paint.kind
    if k in ("flat", "shadow", "frame"):
        _paint(canvas, cov, col)
    elif k == "shaded":
        # a light from the upper left: darker away from it, plus a soft highlight (visible on black too)
        dist = np.hypot(u + 0.35, v + 0.4)
        light = (1.0 - 0.5 * np.clip(dist / 1.6, 0.0, 1.0))[..., None]
        spec = (np.clip(1.0 - dist / 0.5, 0.0, 1.0) ** 1.5 * 0.8)[..., None]
        lit = col * light
        _paint(canvas, cov, lit + (1.0 - lit) * spec)
    elif k == "outline":
        _paint(canvas, cov, bg)  # hollow: hides the parts behind it
        _paint(canvas, _stroke(d, paint.width, res), col)
    elif k == "hatch":
        t = (X * math.cos(paint.angle) + Y * math.sin(paint.angle)) / paint.period
        tri = np.abs(np.mod(t, 1.0) - 0.5) * paint.period  # distance to the middle of the gap
        line = np.clip(0.5 - (paint.size * paint.period / 2 - (paint.period / 2 - tri)) * res, 0.0, 1.0)
        _paint(canvas, cov, bg)
        _paint(canvas, cov * line, col)
        _paint(canvas, _stroke(d, paint.width, res), col)
    elif k == "halftone":
        p = paint.period
        dx = (np.mod(X / p + 0.5 * np.floor(Y / p), 1.0) - 0.5) * p  # staggered rows
        dy = (np.mod(Y / p, 1.0) - 0.5) * p
        dots = np.clip(0.5 - (np.hypot(dx, dy) - paint.size * p) * res, 0.0, 1.0)
        _paint(canvas, cov, bg)
        _paint(canvas, cov * dots, col)
    elif k == "cartoon":
        _paint(canvas, cov, col)
        _paint(canvas, _stroke(d, paint.width, res), INK)
        glint = np.clip(1.0 - np.hypot((u + 0.34) / 0.3, (v + 0.4) / 0.17), 0.0, 1.0)
        _paint(canvas, cov * np.clip(glint * 3, 0.0, 1.0), np.float32(1.0))
    else:
        raise KeyError(f"unknown paint kind {k!r}")


def _distances(
    parts: list[Part], xs: np.ndarray, ys: np.ndarray, dx: float = 0.0, dy: float = 0.0
) -> np.ndarray:
    """Distance fields of parts (one per image) on per-image pixel coordinates xs, ys [b, W], optionally
    translated by (dx, dy): [b, W, W]."""
    out = np.empty((len(parts), xs.shape[1], xs.shape[1]), np.float32)
    tex = [j for j, p in enumerate(parts) if p.kind in _SHAPE_INDEX]
    if tex:
        moved = [_moved(parts[j], dx, dy) for j in tex]
        out[tex] = _texture_sdf(moved, xs[tex], ys[tex])
    for j, p in enumerate(parts):
        if p.kind not in _SHAPE_INDEX:
            out[j] = _analytic(p, xs[j][None, :] - dx, ys[j][:, None] - dy)
    return out


def _moved(p: Part, dx: float, dy: float) -> Part:
    if dx == 0 and dy == 0:
        return p
    cx, cy, r, flip = p.args
    return Part(p.kind, (cx + dx, cy + dy, r, flip), p.colour, p.frame)


def _downsample(img: np.ndarray, ss: int) -> np.ndarray:
    # summing strided views is several times faster than a mean over reshaped axes
    views = [img[:, i::ss, j::ss] for i in range(ss) for j in range(ss)]
    out = views[0].copy()
    for v in views[1:]:
        out += v
    out *= np.float32(1.0 / (ss * ss))
    return out


def _window(parts: list[Part], paint: Paint, res: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Top-left pixel and side of a square window holding each base-shape part and its stroke and shadow;
    None when a part has no known extent (analytic parts: drawn on the whole canvas)."""
    if any(p.kind not in _SHAPE_INDEX for p in parts):
        return None
    arr = np.asarray([p.args[:3] for p in parts], np.float32)
    reach = paint.width / 2 + (max(SHADOW_OFFSET) if paint.kind == "shadow" else 0.0) + 2.0 / res
    half = 1.05 * arr[:, 2].max() + reach  # base shapes fit in 1.02 r
    side = min(res, int(math.ceil(2 * half * res)))
    corner = np.clip(np.floor((arr[:, :2] - half) * res), 0, res - side).astype(np.intp)
    return corner, np.arange(side)


def _render_chunk(drawings: list[Drawing], size: int, ss: int) -> np.ndarray:
    res = size * ss
    # sort by style, then by number of parts (descending): every (style, slot) batch is a contiguous slice
    order = sorted(range(len(drawings)), key=lambda i: (repr(drawings[i].paint), -len(drawings[i].parts)))
    drawings = [drawings[i] for i in order]
    X, Y = _grid(res)
    full = X[0, 0]

    c1 = np.asarray([d.background.c1 for d in drawings], np.float32)[:, None, None, :]
    c2 = np.asarray([d.background.c2 for d in drawings], np.float32)[:, None, None, :]
    masks = [_pattern_mask(d.background.pattern, res) for d in drawings]
    canvas = np.empty((len(drawings), res, res, 3), np.float32)
    for i, m in enumerate(masks):
        np.add(c1[i], m[..., None] * (c2[i] - c1[i]), out=canvas[i])

    def background(i: int, box=(slice(None), slice(None))) -> np.ndarray:
        """The background of image i (in a window): recomputed where a hollow part needs it."""
        return c1[i] + masks[i][box][..., None] * (c2[i] - c1[i])

    # a shadow darkens light backgrounds and lightens dark ones, so that it shows on every background
    luma = c1[:, 0, 0] @ np.asarray([0.299, 0.587, 0.114], np.float32)
    shade_to = np.where(luma > 0.3, 0.0, 1.0).astype(np.float32)[:, None, None, None]

    start = 0
    while start < len(drawings):
        paint = drawings[start].paint
        end = start
        while end < len(drawings) and drawings[end].paint == paint:
            end += 1
        for k in range(len(drawings[start].parts)):
            stop = start
            while stop < end and len(drawings[stop].parts) > k:
                stop += 1
            parts = [d.parts[k] for d in drawings[start:stop]]
            window = _window(parts, paint, res)
            if window is None:  # the whole canvas
                view = canvas[start:stop]
                bgv = np.stack([background(i) for i in range(start, stop)]) if paint.kind in _HOLLOW else None
                xs = ys = np.broadcast_to(full, (stop - start, res))
            else:  # a window around each part: most pixels of a small object are background
                corner, side = window
                boxes = [
                    (i, slice(y, y + len(side)), slice(x, x + len(side)))
                    for i, (x, y) in zip(range(start, stop), corner)
                ]
                view = np.stack([canvas[bx] for bx in boxes])  # plain slices: far cheaper than fancy indexing
                bgv = np.stack([background(bx[0], bx[1:]) for bx in boxes]) if paint.kind in _HOLLOW else None
                xs, ys = full[corner[:, 0:1] + side], full[corner[:, 1:2] + side]
            Xb, Yb = xs[:, None, :], ys[:, :, None]
            if paint.kind == "shadow":
                ds = _distances(parts, xs, ys, *SHADOW_OFFSET)
                _paint(view, SHADOW_STRENGTH * _coverage(ds, res), shade_to[start:stop])
            frames = np.asarray([p.frame for p in parts], np.float32)
            u = (Xb - frames[:, 0, None, None]) / frames[:, 2, None, None]
            v = (Yb - frames[:, 1, None, None]) / frames[:, 2, None, None]
            if all(p.pattern is None for p in parts):
                col = np.asarray([p.colour for p in parts], np.float32)[:, None, None, :]
            else:
                col = np.stack(
                    [
                        np.broadcast_to(_colour_field(p, Xb[j], Yb[j]), view.shape[1:])
                        for j, p in enumerate(parts)
                    ]
                )
            _apply(paint, view, bgv, _distances(parts, xs, ys), col, u, v, Xb, Yb, res)
            if window is not None:
                for bx, patch in zip(boxes, view):
                    canvas[bx] = patch
        start = end
    for i, d in enumerate(drawings):
        if d.paint.kind == "frame":
            edge = int(round(d.paint.width * res))
            for box in (np.s_[:edge, :], np.s_[-edge:, :], np.s_[:, :edge], np.s_[:, -edge:]):
                canvas[i][box] = INK

    out = np.empty((len(drawings), size, size, 3), np.uint8)
    out[order] = np.clip(_downsample(canvas, ss) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return out


def render_drawings(
    drawings: list[Drawing], size: int = 64, supersample: int = 2, chunk: int = 16
) -> np.ndarray:
    """Rasterise drawings into uint8 images [N, size, size, 3]."""
    if not drawings:
        return np.zeros((0, size, size, 3), np.uint8)
    return np.concatenate(
        [_render_chunk(drawings[i : i + chunk], size, supersample) for i in range(0, len(drawings), chunk)]
    )
