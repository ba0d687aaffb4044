"""Signed distance functions (negative inside) on numpy grids, and the base shapes built from them.

All functions broadcast: ``x`` and ``y`` are coordinates (any broadcastable shapes), the other arguments are
scalars. Distances are in the units of ``x`` and ``y``. Base shapes are defined in a unit frame (radius 1) and
sampled from precomputed textures, which is what makes batch rendering fast.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from .vocab import SHAPES


def circle(x, y, cx: float, cy: float, r: float):
    return np.hypot(x - cx, y - cy) - r


def _rotate(x, y, cx: float, cy: float, angle: float):
    c, s = math.cos(angle), math.sin(angle)
    dx, dy = x - cx, y - cy
    return c * dx + s * dy, -s * dx + c * dy


def box(x, y, cx: float, cy: float, hx: float, hy: float, angle: float = 0.0, round_: float = 0.0):
    qx, qy = _rotate(x, y, cx, cy, angle)
    dx, dy = np.abs(qx) - hx + round_, np.abs(qy) - hy + round_
    outside = np.hypot(np.maximum(dx, 0), np.maximum(dy, 0))
    return outside + np.minimum(np.maximum(dx, dy), 0) - round_


def ellipse(x, y, cx: float, cy: float, a: float, b: float, angle: float = 0.0):
    # a close approximation of the true distance; exact on the boundary, which is what anti-aliasing needs
    qx, qy = _rotate(x, y, cx, cy, angle)
    k0 = np.hypot(qx / a, qy / b)
    k1 = np.hypot(qx / (a * a), qy / (b * b))
    return k0 * (k0 - 1.0) / np.maximum(k1, 1e-9)


def dome(x, y, cx: float, cy: float, a: float, b: float):
    """The upper half of an ellipse centred at (cx, cy) (a mushroom cap, a hill)."""
    return np.maximum(ellipse(x, y, cx, cy, a, b), y - cy)


def capsule(x, y, ax: float, ay: float, bx: float, by: float, r: float):
    ex, ey = bx - ax, by - ay
    wx, wy = x - ax, y - ay
    t = np.clip((wx * ex + wy * ey) / max(ex * ex + ey * ey, 1e-12), 0.0, 1.0)
    return np.hypot(wx - ex * t, wy - ey * t) - r


def polygon(x, y, points):
    """Exact distance to a simple polygon (either winding): nearest edge, sign from the crossing count."""
    v = np.asarray(points, dtype=np.float64)
    d = (x - v[0, 0]) ** 2 + (y - v[0, 1]) ** 2
    inside = np.zeros(np.broadcast(x, y).shape, dtype=bool)
    j = len(v) - 1
    for i in range(len(v)):
        ex, ey = v[j] - v[i]
        wx, wy = x - v[i, 0], y - v[i, 1]
        t = np.clip((wx * ex + wy * ey) / (ex * ex + ey * ey), 0.0, 1.0)
        d = np.minimum(d, (wx - ex * t) ** 2 + (wy - ey * t) ** 2)
        above, below, left = y >= v[i, 1], y < v[j, 1], ex * wy > ey * wx
        inside ^= (above & below & left) | (~above & ~below & ~left)
        j = i
    return np.where(inside, -1.0, 1.0) * np.sqrt(d)


def heart(x, y, cx: float, cy: float, r: float):
    # a heart of half-width ~r, point down (image y grows downwards)
    s = r / 0.62
    px = np.abs(x - cx) / s
    py = (cy - y) / s + 0.55
    upper = np.hypot(px - 0.25, py - 0.75) - math.sqrt(2) / 4
    m = 0.5 * np.maximum(px + py, 0.0)
    lower = np.sqrt(np.minimum(px**2 + (py - 1.0) ** 2, (px - m) ** 2 + (py - m) ** 2)) * np.sign(px - py)
    return np.where(px + py > 1.0, upper, lower) * s


def crescent(x, y, cx: float, cy: float, r: float, angle: float = -0.35):
    """A disc with a smaller disc bitten out towards ``angle`` (radians; 0 opens to the right)."""
    ox, oy = 0.42 * r * math.cos(angle), 0.42 * r * math.sin(angle)
    return np.maximum(circle(x, y, cx, cy, r), -circle(x, y, cx + ox, cy + oy, 0.8 * r))


def star_points(cx: float, cy: float, r: float, n: int = 5, inner: float = 0.42, angle: float = 0.0):
    """Vertices of an n-pointed star with one point up (rotated by ``angle``)."""
    pts = []
    for k in range(2 * n):
        a = angle - math.pi / 2 + k * math.pi / n
        rr = r if k % 2 == 0 else r * inner
        pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
    return pts


def cross_points(cx: float, cy: float, r: float, arm: float = 0.3):
    a, e = arm * r, r
    pts = [
        (-a, -e),
        (a, -e),
        (a, -a),
        (e, -a),
        (e, a),
        (a, a),
        (a, e),
        (-a, e),
        (-a, a),
        (-e, a),
        (-e, -a),
        (-a, -a),
    ]
    return [(cx + px, cy + py) for px, py in pts]


def unit_shape(name: str, x, y):
    """A base shape at the origin with radius 1 (it fits the unit disc, area roughly alike across shapes)."""
    if name == "circle":
        return circle(x, y, 0.0, 0.0, 0.9)
    if name == "square":
        return box(x, y, 0.0, 0.0, 0.8, 0.8, 0.0, 0.06)
    if name == "triangle":
        return polygon(x, y, [(0.0, -0.98), (0.98, 0.74), (-0.98, 0.74)])
    if name == "diamond":
        return polygon(x, y, [(0.0, -1.0), (0.74, 0.0), (0.0, 1.0), (-0.74, 0.0)])
    if name == "star":
        return polygon(x, y, star_points(0.0, 0.06, 1.02))
    if name == "heart":
        return heart(x, y, 0.0, 0.02, 0.98)
    if name == "cross":
        return polygon(x, y, cross_points(0.0, 0.0, 0.9, 0.32))
    if name == "crescent":
        return crescent(x, y, 0.0, 0.0, 0.92)
    raise KeyError(f"unknown shape {name!r}; known: {', '.join(SHAPES)}")


TEX_EXTENT = 1.7  # the textures cover [-TEX_EXTENT, TEX_EXTENT]^2 of the unit frame


@functools.cache
def shape_textures(resolution: int = 512) -> np.ndarray:
    """Unit-frame distance fields of all base shapes, [len(SHAPES), R, R] float32, rows = y."""
    t = (np.arange(resolution) + 0.5) / resolution * 2 * TEX_EXTENT - TEX_EXTENT
    x, y = t[None, :], t[:, None]
    return np.stack([unit_shape(s, x, y) for s in SHAPES]).astype(np.float32)
