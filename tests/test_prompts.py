"""The paper's prompt-count rule, seed scheme and trigger-word processing."""

from lycobench.data import Item, Leaf
from lycobench.prompts import prompt_file, prompt_plan, split_counts, text_for_clip


def leaf(category="object", n=3, keyword=""):
    items = [Item(f"{i}.png", f"zqx toy, tag{i}") for i in range(n)]
    return Leaf("zq-star", category, "zqx", "toy", None, keyword, items)


def test_split_counts_follows_the_paper():
    assert split_counts(100, 30) == [4] * 10 + [3] * 20  # floor(100/30)=3, first 100 mod 30 = 10 get +1
    assert sum(split_counts(100, 7)) == 100
    assert split_counts(100, 150) == [1] * 100 + [0] * 50  # more captions than images: first 100 only
    assert split_counts(5, 0) == []


def test_image_i_of_a_prompt_file_has_seed_base_plus_i():
    items = prompt_file(leaf(n=3), "train", 7, 1000)
    assert [it.seed for it in items] == list(range(1000, 1007))
    assert [it.prompt_id for it in items] == [0, 0, 0, 1, 1, 2, 2]


def test_seeds_do_not_shift_when_another_leaf_is_added():
    a = prompt_plan([leaf()], ["trigger"], {"trigger": 4}, 1000)
    other = Leaf("other", "scene", "qwv", "scene", None, "", [Item("x.png", "qwv scene")])
    b = prompt_plan([other, leaf()], ["trigger"], {"trigger": 4}, 1000)
    assert [(p.prompt, p.seed) for p in a] == [(p.prompt, p.seed) for p in b if p.leaf == "zq-star"]


def test_style_prompts_are_not_made_for_style_concepts():
    style = Leaf("inky", "style", "vlx", "style", None, "", [Item("x.png", "vlx style, a star")])
    assert prompt_plan([style], ["style"], {"style": 5}, 1000) == []


def test_text_processing_per_category():
    assert text_for_clip("zqx toy, red background", leaf("object")) == "zq star toy, red background"
    ch = Leaf("hero", "character", "whoo", "anime girl", "dark", "onex outfit", [])
    assert (
        text_for_clip("whoo anime girl, onex outfit in the style of pencil drawing", ch)
        == "anime girl, in the style of pencil drawing"
    )
    st = Leaf("inky", "style", "pgs", "style", None, "", [])
    assert text_for_clip("pgs style of a city skyline", st) == "a city skyline"
    assert text_for_clip("a red star in pgs style", st) == "a red star in"
