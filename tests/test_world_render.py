"""The world renderer: deterministic, anti-aliased, legible, with the sampling contract pretraining relies on."""

import numpy as np

from lycobench.world import HELDOUT_PAIRS, labels, render_batch, sample_scenes
from lycobench.world.render import BASE_PAINTS, Background, Drawing, Paint, Part, render_drawings
from lycobench.world.scenes import Obj, Scene
from lycobench.world.vocab import BG_COLOURS, COLOURS, COMPATIBLE_BG, PATTERNS, SHAPES


def test_sampling_and_rendering_are_deterministic():
    a, b = sample_scenes(200, 7), sample_scenes(200, 7)
    assert a == b
    assert a != sample_scenes(200, 8)
    img1, img2 = render_batch(a, 64), render_batch(b, 64)
    assert img1.dtype == np.uint8 and img1.shape == (200, 64, 64, 3)
    assert np.array_equal(img1, img2)
    # batch composition does not change an image
    assert np.array_equal(render_batch(a[5:9], 64), img1[5:9])


def test_configurable_resolution():
    scenes = sample_scenes(8, 1)
    for size in (32, 48, 96):
        assert render_batch(scenes, size).shape == (8, size, size, 3)


def test_heldout_pairs_are_excluded_or_forced():
    pairs = lambda scenes: {(o.colour, o.shape) for s in scenes for o in s.objects}  # noqa: E731
    assert not pairs(sample_scenes(2000, 0)) & set(HELDOUT_PAIRS)
    forced = sample_scenes(300, 0, heldout=True)
    assert all((s.objects[0].colour, s.objects[0].shape) in HELDOUT_PAIRS for s in forced)
    assert pairs(sample_scenes(3000, 0, heldout=None)) >= set(HELDOUT_PAIRS)


def test_vocabulary_is_covered():
    scenes = sample_scenes(3000, 3)
    assert {o.shape for s in scenes for o in s.objects} == set(SHAPES)
    assert {o.colour for s in scenes for o in s.objects} == set(COLOURS)
    assert {s.bg_colour for s in scenes} == set(BG_COLOURS)
    assert {s.pattern for s in scenes} == set(PATTERNS)
    assert {s.style for s in scenes} == {"flat"}
    assert {len(s.objects) for s in scenes} == {1}  # one large, centred object: what the base model masters
    assert all(abs(o.cx - 0.5) <= 0.03 and abs(o.cy - 0.5) <= 0.03 for s in scenes for o in s.objects)
    assert len(SHAPES) >= 8 and len(COLOURS) >= 8
    for s in scenes:  # every object colour suits the background
        assert all(s.bg_colour in COMPATIBLE_BG[o.colour] for o in s.objects)


def test_edges_are_antialiased_and_colours_exact_inside():
    scene = Scene((Obj("circle", "red", 0.5, 0.5, 0.35),), "white", "plain", "flat")
    img = render_batch([scene], 64)[0].astype(int)
    red, white = np.array(COLOURS["red"]), np.array(BG_COLOURS["white"])
    assert np.abs(img[32, 32] - red).max() <= 1
    assert np.abs(img[2, 2] - white).max() <= 1
    row = img[32, :, 1]  # green channel across the edge: intermediate values exist
    assert ((row > red[1] + 5) & (row < white[1] - 5)).any()


def test_objects_are_large_enough_at_32px():
    # an object covers a legible area once downsampled to 32 px
    scene = Scene((Obj("star", "black", 0.5, 0.5, 0.35),), "white", "plain", "flat")
    img = render_batch([scene], 32)[0]
    assert (img.mean(-1) < 128).sum() >= 40


def test_paints_differ():  # the style concepts' paints must read apart from the base world's flat one
    base = Scene((Obj("heart", "blue", 0.5, 0.5, 0.35),), "beige", "plain", "flat")
    kinds = ["flat", "outline", "hatch", "halftone", "cartoon", "shaded", "shadow", "frame"]
    imgs = render_batch([Scene(**{**base.__dict__, "paint": Paint(k)}) for k in kinds], 64).astype(int)
    for i in range(len(kinds)):
        for j in range(i + 1, len(kinds)):
            assert np.abs(imgs[i] - imgs[j]).mean() > 2, (kinds[i], kinds[j])


def test_frame_paint_borders_the_picture_and_leaves_the_content_flat():
    scene = Scene((Obj("heart", "blue", 0.5, 0.5, 0.3),), "pink", "stripes", "flat")
    flat, framed = render_batch(
        [scene, Scene(**{**scene.__dict__, "paint": Paint("frame", width=0.125)})], 64
    )
    edge = 8  # 0.125 of 64 px
    ring = np.ones((64, 64), bool)
    ring[edge:-edge, edge:-edge] = False
    assert (framed[ring] <= 21).all()  # near-black on every side, over background and object alike
    assert np.array_equal(framed[edge:-edge, edge:-edge], flat[edge:-edge, edge:-edge])


def test_analytic_parts_render():
    parts = tuple(
        Part(kind, args, (0.1, 0.1, 0.1), (0.5, 0.5, 0.2))
        for kind, args in [
            ("circle", (0.2, 0.2, 0.1)),
            ("ellipse", (0.5, 0.2, 0.15, 0.08, 0.3)),
            ("box", (0.8, 0.2, 0.1, 0.06, 0.2, 0.02)),
            ("capsule", (0.1, 0.5, 0.3, 0.6, 0.04)),
            ("heart", (0.5, 0.5, 0.1)),
            ("crescent", (0.8, 0.5, 0.1, 0.0)),
            ("dome", (0.2, 0.85, 0.12, 0.1)),
            ("poly", (0.5, 0.7, 0.6, 0.9, 0.4, 0.9)),
        ]
    )
    img = render_drawings([Drawing(Background((1, 1, 1), (1, 1, 1)), parts, BASE_PAINTS["flat"])], 64)[0]
    for x, y in [(0.2, 0.2), (0.5, 0.2), (0.8, 0.2), (0.5, 0.5), (0.2, 0.8), (0.5, 0.85)]:
        assert img[int(y * 64), int(x * 64)].max() < 60, (x, y)


def test_labels_of_base_scenes():
    for s in sample_scenes(100, 2):
        lab = labels(s)
        assert lab["count"] == len(s.objects) and lab["concept"] == "none" and lab["leaf"] == "none"
        assert lab["shapes"] == {o.shape for o in s.objects}
        assert set(lab) == {"shapes", "colours", "count", "bg_colour", "pattern", "concept", "leaf"}
