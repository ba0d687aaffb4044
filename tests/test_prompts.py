"""The paper's prompt-count rule, seed scheme and trigger-word processing; the five prompt types; the
template sets (the world's, checkable by its oracle, and the paper's, verbatim)."""

import re

import numpy as np
import pytest

from lycobench.config import PROMPTS_DIR
from lycobench.data import InputError, Item, Leaf
from lycobench.prompts import (
    SET_KEYS,
    parse_expect,
    prompt_file,
    prompt_plan,
    prompts_for,
    read_template_file,
    split_counts,
    template_sources,
    text_for_clip,
)


def leaf(category="object", n=3, keyword="", concept="zq-star", trigger="zqx", class_word="toy"):
    items = [Item(f"{i}.png", f"{trigger} {class_word}, tag{i}") for i in range(n)]
    return Leaf(concept, category, trigger, class_word, None, keyword, items)


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
    a = prompt_plan([leaf()], ["trigger", "alter"], {"trigger": 4, "alter": 10}, 1000)
    other = Leaf("other", "scene", "qwv", "scene", None, "", [Item("x.png", "qwv scene")])
    b = prompt_plan([other, leaf()], ["trigger", "alter"], {"trigger": 4, "alter": 10}, 1000)
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
    # plain-word keywords stay, only "<token> outfit" goes (the paper's examples); '_' in a name reads as a space
    toy = Leaf("bunny", "object", "olis", "stuffed toy", "robe", "pink robe", [])
    assert (
        text_for_clip("olis stuffed toy, pink robe in grand canyon", toy)
        == "bunny stuffed toy, pink robe in grand canyon"
    )
    man = Leaf("fck", "character", "fck", "man", "bald", "bald 3d", [])
    assert text_for_clip("fck man, bald 3d selfie", man) == "man, bald 3d selfie"
    afro = Leaf("fck", "character", "fck", "man", "afro", "afro, illustration", [])
    assert text_for_clip("fck man, afro, illustration", afro) == "man, afro, illustration"
    castle = Leaf("golden_castle", "scene", "adl", "scene", None, "", [])
    assert text_for_clip("photo of adl scene", castle) == "photo of golden castle scene"


# --- the five prompt types -----------------------------------------------------------------------------


def test_trigger_is_the_descriptor_and_alter_style_fill_it_in():
    lf = leaf("character", keyword="hat", concept="gus", trigger="drix", class_word="man")
    assert [p.text for p in prompts_for(lf, "trigger")] == ["drix man, hat"]
    for pt in ("alter", "style"):
        prompts = prompts_for(lf, pt)
        assert prompts and all("drix man, hat" in p.text and "{}" not in p.text for p in prompts)
        assert all(p.source.startswith(f"world/{pt}/") for p in prompts)


def test_agnostic_prompts_have_no_trigger_and_share_their_class_free_half():
    a = leaf("object", concept="zq-star", trigger="zqx")
    b = leaf("object", concept="bb-box", trigger="bbq")
    pa, pb = prompts_for(a, "agnostic"), prompts_for(b, "agnostic")
    for prompts, lf in ((pa, a), (pb, b)):
        assert all(lf.trigger not in p.text.split() for p in prompts)
        variants = [p.variant for p in prompts]
        n_free = variants.count("class-free")
        assert n_free >= 3 and variants == ["class-free"] * n_free + ["class-word"] * (len(prompts) - n_free)
        assert all(re.search(r"\btoy\b", p.text) for p in prompts if p.variant == "class-word")
        assert not any(re.search(r"\btoy\b", p.text) for p in prompts if p.variant == "class-free")
    # class-free prompts come first, so two leaves ask for the very same (prompt, seed) images
    fa = prompt_file(a, "agnostic", 30, 1000)
    fb = prompt_file(b, "agnostic", 30, 1000)
    free = lambda f: [(p.prompt, p.seed) for p in f if p.variant == "class-free"]  # noqa: E731
    assert free(fa) == free(fb) and len(free(fa)) >= 3


def test_unknown_prompt_type_and_missing_counts_are_reported_together():
    with pytest.raises(InputError) as e:
        prompt_plan([leaf()], ["train", "nope", "alter"], {"train": 2}, 1000)
    text = str(e.value)
    assert "'nope'" in text and "images_per_type.alter" in text


# --- template files ----------------------------------------------------------------------------------------


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_lookup_prefers_the_concept_file_then_the_category_then_default(tmp_path):
    write(tmp_path / "alter" / "object.txt", "# version: 1\n{} on a table\n")
    write(tmp_path / "alter" / "zq-star.txt", "# version: 2\n{} on the moon\n")
    write(tmp_path / "style" / "default.txt", "# version: 1\n{} in pencil\n")
    write(tmp_path / "agnostic" / "default.txt", "# version: 1\na cat\n")
    t = str(tmp_path)
    assert [p.text for p in prompts_for(leaf(concept="zq-star"), "alter", t)] == ["zqx toy on the moon"]
    assert [p.text for p in prompts_for(leaf(concept="other"), "alter", t)] == ["zqx toy on a table"]
    assert [p.text for p in prompts_for(leaf(), "style", t)] == ["zqx toy in pencil"]
    with pytest.raises(InputError, match=r"no <alter> templates for concept 'qq' \(scene\).*scene\.txt"):
        prompts_for(leaf("scene", concept="qq"), "alter", t)


def test_bad_template_files_name_the_line_and_the_fix(tmp_path):
    no_version = write(tmp_path / "a.txt", "{} here\n")
    with pytest.raises(InputError, match="first line must be '# version: <n>'"):
        read_template_file(no_version)
    bad = write(tmp_path / "b.txt", "# version: 1\n{} and {}\nno slot\n{} | count\n")
    with pytest.raises(InputError) as e:
        read_template_file(bad)
    assert [p.split(": ", 1)[0] for p in e.value.problems] == [f"{bad}:2", f"{bad}:3", f"{bad}:4"]
    with pytest.raises(InputError, match="no '{}'"):
        read_template_file(write(tmp_path / "c.txt", "# version: 1\n{} here\n"), slot=False)
    with pytest.raises(InputError, match="no such template set"):
        prompts_for(leaf(), "alter", "no-such-set")


def test_every_shipped_template_file_parses_with_a_version():
    files = sorted(PROMPTS_DIR.rglob("*.txt"))
    assert {f.parent.parent.name for f in files} == {"world", "paper"}
    for f in files:
        tf = read_template_file(f, slot=f.parent.name != "agnostic")
        assert tf.version and tf.templates, f


def test_template_sources_give_version_and_hash_of_the_files_used():
    plan = prompt_plan(
        [leaf()], ["train", "alter", "agnostic"], {"train": 3, "alter": 10, "agnostic": 15}, 1000
    )
    src = template_sources(plan)
    assert set(src) == {"world/alter/object.txt", "world/agnostic/default.txt"}
    assert all(v["version"] == "2" and len(v["sha256"]) == 64 for v in src.values())


def test_the_paper_templates_are_verbatim():
    lines = lambda name: [t.text for t in read_template_file(PROMPTS_DIR / "paper" / name).templates]  # noqa: E731
    assert lines("style/default.txt") == [
        "{} in the style of pencil drawing",
        "{} in the style of watercolor painting",
        "{} in the style of Vincent Van Gogh",
        "{} in the style of Claude Monet",
        "{} in the style of pixel art",
    ]
    person = lines("alter/character.txt")
    assert (
        len(person) == 10
        and "{} dressed in a a firefighter's outfit, a raging forest fire in the background" in person
    )
    assert "{} with with cloudy sky" in lines("alter/garden.txt")
    assert lines("alter/castle.txt")[7] == "A peacock in front of the {}"
    for name in ("object", "style", "castle", "canal", "garden", "sculpture", "waterfall"):
        assert len(lines(f"alter/{name}.txt")) == 10, name
    # the paper's scenes are found by concept name; the paper's 4-way split is 10 prompts x 10 images
    castle = Leaf("castle", "scene", "adl", "scene", None, "", [Item("x.png", "adl scene")])
    alter = prompt_file(castle, "alter", 100, 1000, "paper")
    assert alter[0].prompt == "adl scene stands against a backdrop of snow-capped mountains"
    assert [it.seed for it in alter if it.prompt_id == 3] == list(range(1030, 1040))
    style = prompt_file(castle, "style", 100, 1000, "paper")
    assert style[20].prompt == "adl scene in the style of watercolor painting" and style[20].seed == 1020


# --- world templates: words the base world knows, expectations its oracle can check ------------------------


def world_vocabulary() -> set[str]:
    from lycobench.world import all_captions, sample_scenes

    words = set()
    for scene in sample_scenes(300, seed=5, heldout=None):
        for c in all_captions(scene):
            words.update(c.replace(",", " ").split())
    return words


def world_templates():
    for f in sorted((PROMPTS_DIR / "world").rglob("*.txt")):
        slot = f.parent.name != "agnostic"
        yield f, read_template_file(f, slot=slot).templates


def test_world_templates_use_only_the_base_worlds_words():
    known = world_vocabulary()
    for f, templates in world_templates():
        for t in templates:
            unknown = set(t.text.replace("{}", " ").replace(",", " ").split()) - known
            assert not unknown, f"{f}: {t.text!r} uses words the base world never shows: {unknown}"


def defined_labels(category: str, concepts) -> set[str]:
    """The oracle heads that are defined for images of a category (as the oracle was trained)."""
    from lycobench.world.concepts import concept_scene
    from lycobench.world.scenes import labels

    out = set()
    rng = np.random.default_rng(0)
    for c in concepts.values():
        if c.category == category:
            for _ in range(40):
                lab = labels(concept_scene(c, c.leaves[0], rng, oracle=True))
                out |= {k for k, v in lab.items() if v is not None}
    return out


def test_world_expectations_are_what_the_oracle_can_read():
    from lycobench.world import HELDOUT_PAIRS, load_concepts
    from lycobench.world.oracle import MULTI, head_classes
    from lycobench.world.vocab import COMPATIBLE_BG

    assert set(SET_KEYS) == set(MULTI)
    concepts = load_concepts()
    classes = head_classes([])
    heldout = set(HELDOUT_PAIRS)
    free = {k for k, v in classes.items() if k != "leaf"}
    for f, templates in world_templates():
        category = f.stem if f.parent.name == "alter" else None
        allowed = defined_labels(category, concepts) if category else free
        avoided = {
            b
            for c in concepts.values()
            if c.category == category
            for b in c.spec.get("avoid_backgrounds") or []
        }
        for t in templates:
            e = parse_expect(t.expect)
            where = f"{f}: {t.text!r}"
            assert set(e) <= allowed, f"{where}: the oracle defines no {set(e) - allowed} here"
            for k, v in e.items():
                values = v if isinstance(v, frozenset) else {str(v)}
                assert values <= set(classes[k]), f"{where}: {k}={v} is no class of the oracle"
                for word in values:  # the prompt says what it expects
                    assert word in t.text or k in ("pattern", "count"), where
            if "bg_colour" in e:
                assert e["bg_colour"] not in avoided, f"{where}: a {category} concept avoids {e['bg_colour']}"
                for colour in e.get("colours", ()):
                    assert e["bg_colour"] in COMPATIBLE_BG[colour], f"{where}: {colour} on {e['bg_colour']}"
            pairs = {(c, s) for c in e.get("colours", ()) for s in e.get("shapes", ())}
            if len(e.get("colours", ())) == 1 or len(e.get("shapes", ())) == 1:
                assert not pairs & heldout, f"{where}: a held-out colour-shape pair"
            if category in ("character", "object"):
                assert e.get("count", 0) == 0, f"{where}: the oracle never saw a companion object"


def test_parse_expect_reads_sets_counts_and_json():
    pairs = (("shapes", "star,circle"), ("count", "2"), ("bg_colour", "light blue"))
    e = parse_expect(pairs)
    assert e == {"shapes": frozenset({"star", "circle"}), "count": 2, "bg_colour": "light blue"}
    assert parse_expect('{"colours": "red", "count": "1"}') == {"colours": frozenset({"red"}), "count": 1}
    assert parse_expect('{"shapes": ["cross", "heart"], "count": 2}') == {
        "shapes": frozenset({"cross", "heart"}),
        "count": 2,
    }


def test_attributes_column_is_what_evaluate_reads():
    from lycobench.attributes import from_json
    from lycobench.generate import attributes_json

    plan = prompt_plan([leaf()], ["trigger", "alter"], {"trigger": 1, "alter": 10}, 1000)
    assert attributes_json(plan[0]) is None  # no template expectation: evaluate parses the prompt
    with_expect = [it for it in plan if it.expect]
    assert with_expect and all(
        from_json(attributes_json(it)) == parse_expect(it.expect) for it in with_expect
    )
