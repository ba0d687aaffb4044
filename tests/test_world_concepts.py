"""World concepts: valid definitions, deterministic renders, and an export that round-trips as concept folders."""

import re
from collections import Counter

import numpy as np
import pytest
import yaml

from lycobench.world.concepts import CATEGORIES, NAME_RE, concept_caption, load_concepts, training_scenes
from lycobench.world.export import contact_sheet, export
from lycobench.world.scenes import render_batch

CONCEPTS = load_concepts()


def test_definitions_cover_the_paper_categories():
    per_category = Counter(c.category for c in CONCEPTS.values())
    assert all(per_category[cat] >= 2 for cat in CATEGORIES), per_category
    assert any(c.category == "character" and len(c.subclasses) >= 2 for c in CONCEPTS.values())
    outfits = [c for c in CONCEPTS.values() if sum(k.endswith(" outfit") for k in c.subclasses.values()) >= 2]
    assert outfits, "a character with two '<token> outfit' sub-classes, like the paper's anime characters"
    for c in CONCEPTS.values():
        assert 5 <= sum(c.images.values()) <= 40
        assert NAME_RE.match(c.name)
    triggers = [c.trigger for c in CONCEPTS.values()]
    assert len(set(triggers)) == len(triggers)


def test_concept_renders_are_deterministic():
    for c in CONCEPTS.values():
        a = training_scenes(c)
        b = training_scenes(c)
        assert a == b
        assert np.array_equal(
            render_batch([s for *_, s in a[:4]], 32), render_batch([s for *_, s in b[:4]], 32)
        )


def test_captions_follow_the_paper_format():
    for c in CONCEPTS.values():
        for leaf, _, scene in training_scenes(c):
            text = concept_caption(c, scene)
            assert text.startswith(c.descriptor(leaf) + ", ")
            keyword = c.subclasses.get(leaf, "") if leaf else ""
            assert text.split(", ")[0] == f"{c.trigger} {c.class_word}"
            if keyword:
                assert text.split(", ")[1] == keyword
            assert "\n" not in text


def test_bare_captions_carry_the_descriptor_alone_in_the_declared_share(tmp_path):
    from lycobench.world.concepts import load_concept

    def variant(name: str, **changes):
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump({**CONCEPTS["hatch"].spec, "name": name, **changes}), encoding="utf-8")
        return path

    bare = load_concept(variant("barehatch", bare_captions=0.5))
    caps = [concept_caption(bare, scene, i) for _, i, scene in training_scenes(bare)]
    alone = [c == bare.descriptor(None) for c in caps]
    assert sum(alone) == len(caps) // 2 and any(alone[: len(caps) // 2]) and any(alone[len(caps) // 2 :])
    full = [concept_caption(CONCEPTS["hatch"], s, i) for _, i, s in training_scenes(CONCEPTS["hatch"])]
    assert [c for c, a in zip(caps, alone) if not a] == [c for c, a in zip(full, alone) if not a]
    assert not any(c == CONCEPTS["hatch"].descriptor(None) for c in full)  # the shipped concepts name content
    with pytest.raises(ValueError, match=r"bad.yaml: bare_captions 1.5"):
        load_concept(variant("bad", bare_captions=1.5))


def _tree(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_export_round_trip(tmp_path):
    names = ["lumi", "bear", "hatch"]
    export(tmp_path / "a", names, size=32)
    export(tmp_path / "b", names, size=32)
    a, b = _tree(tmp_path / "a"), _tree(tmp_path / "b")
    assert a == b  # byte-identical
    for name in names:
        c = CONCEPTS[name]
        meta = yaml.safe_load((tmp_path / "a" / name / "concept.yaml").read_text(encoding="utf-8"))
        assert (meta["name"], meta["category"], meta["trigger"], meta["class_word"]) == (
            c.name, c.category, c.trigger, c.class_word,
        )  # fmt: skip
        assert (meta.get("subclasses") or {}) == c.subclasses
        for leaf in c.leaves:
            folder = tmp_path / "a" / name / (leaf or "")
            pngs = sorted(folder.glob("*.png"))
            assert len(pngs) == c.images[leaf]
            for png in pngs:
                text = png.with_suffix(".txt").read_text(encoding="utf-8")
                assert text.endswith("\n") and text.count("\n") == 1
                assert text.startswith(c.descriptor(leaf))
    assert all(re.fullmatch(r"[a-z0-9_/.-]+", k) for k in a)


def test_export_is_read_by_the_training_data_loader(tmp_path):
    from lycobench.data import load_concepts as load_folders

    export(tmp_path, ["lumi", "hills"], size=32)
    folders = load_folders([str(tmp_path / "lumi"), str(tmp_path / "hills")])
    lumi = next(f for f in folders if f.name == "lumi")
    assert {leaf.subclass for leaf in lumi.leaves} == {"brel", "tams", "others"}
    assert sum(len(leaf.items) for leaf in lumi.leaves) == sum(CONCEPTS["lumi"].images.values())


def test_contact_sheet(tmp_path):
    export(tmp_path / "c", ["shroom", "city"], size=32)
    out = contact_sheet(tmp_path / "c", tmp_path / "sheet.png")
    assert out.stat().st_size > 1000


def test_package_export_stays_the_function_after_its_submodule_is_imported():
    """``lycobench.world.export`` is the documented function even once the submodule of the same name has
    been imported (lycobench.data imports it for world: concepts); a lazy wrapper was replaced by the
    submodule there, and ``from lycobench.world import export`` then gave a module."""
    import importlib

    import lycobench.world as world

    importlib.import_module("lycobench.world.export")
    import lycobench.data  # noqa: F401

    assert callable(world.export) and world.export.__name__ == "export"


def test_studied_concepts_are_declared_one_per_category(tmp_path):
    import shutil

    import pytest

    from lycobench.world.concepts import CONCEPT_DIR, load_concepts, studied_concepts

    assert studied_concepts() == ["lumi", "bear", "city", "frame"]  # character, object, scene, style
    for path in CONCEPT_DIR.glob("*.yaml"):
        shutil.copy(path, tmp_path / path.name)
    bolt = tmp_path / "bolt.yaml"
    bolt.write_text(bolt.read_text().replace("seed:", "studied: true\nseed:", 1))
    with pytest.raises(ValueError, match="exactly one concept per category.*character.*bolt, lumi"):
        studied_concepts(load_concepts(tmp_path))


def test_style_subjects_fix_the_content_of_its_training_images_only(tmp_path):
    from dataclasses import replace

    from lycobench.world.concepts import concept_scene, load_concept
    from lycobench.world.oracle import concepts_digest

    def variant(name: str, **changes):
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump({**CONCEPTS["hatch"].spec, "name": name, **changes}), encoding="utf-8")
        return path

    motifs = load_concept(variant("motifs", subjects=[["green", "heart"], ["blue", "star"]]))
    shown = {(s.objects[0].colour, s.objects[0].shape) for _, _, s in training_scenes(motifs)}
    assert shown == {("green", "heart"), ("blue", "star")}
    assert len({s.bg_colour for _, _, s in training_scenes(motifs)}) > 2  # backgrounds stay free
    rng = np.random.default_rng(0)
    oracle_pairs = {(s.objects[0].colour, s.objects[0].shape) for s in
                    (concept_scene(motifs, None, rng, oracle=True) for _ in range(200))}  # fmt: skip
    assert len(oracle_pairs) > 20  # the oracle still learns the paint on any content
    digest = concepts_digest({"hatch": CONCEPTS["hatch"]})
    assert concepts_digest({"hatch": replace(motifs, spec={**motifs.spec, "name": "hatch"})}) == digest
    for bad in ([["green", "circle"]], [["teal", "heart"]], [["green"]]):  # held out, no colour, no pair
        with pytest.raises(ValueError, match=r"subjects"):
            load_concept(variant("bad", subjects=bad))
    with pytest.raises(ValueError, match=r"only styles take 'subjects'"):
        load_concept(variant("badcat", category="object", parts=CONCEPTS["bear"].spec["parts"],
                             subjects=[["blue", "star"]]))  # fmt: skip
