"""Caption grammar: varied, complete about what matters, tag-style variants, enumerable."""

import numpy as np

from lycobench.world import all_captions, caption, sample_scenes
from lycobench.world.captions import PATTERN_ADJ, object_groups, tags


def test_captions_name_objects_and_background():
    rng = np.random.default_rng(0)
    for s in sample_scenes(300, 4):
        text = caption(s, rng)
        for _, colour, shape in object_groups(s):
            assert colour in text and shape in text
        assert s.bg_colour in text
        if s.pattern != "plain":
            assert PATTERN_ADJ[s.pattern] in text or s.pattern in text


def test_captions_vary_and_are_enumerable():
    rng = np.random.default_rng(1)
    for s in sample_scenes(40, 5):
        every = all_captions(s)
        assert len(every) >= 10
        assert {caption(s, rng) for _ in range(30)} <= set(every)


def test_caption_is_deterministic_given_rng():
    s = sample_scenes(20, 6)
    a = [caption(x, np.random.default_rng(3)) for x in s]
    b = [caption(x, np.random.default_rng(3)) for x in s]
    assert a == b


def test_tag_style_captions():
    s = sample_scenes(50, 7)
    for x in s:
        t = tags(x)
        assert t[-1] != "" and f"{x.bg_colour} background" in t
        assert ", ".join(t) in all_captions(x)
