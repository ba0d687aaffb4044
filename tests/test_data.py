"""Concept folders: loading, and bad input reported in one pass, each problem naming its file."""

import shutil

import pytest
from PIL import Image

from lycobench.config import CONCEPTS_DIR
from lycobench.data import InputError, load_concepts


def example(tmp_path, name="zq-star"):
    dst = tmp_path / name
    shutil.copytree(CONCEPTS_DIR / "examples" / "zq-star", dst)
    return dst


def test_example_concept_loads():
    [c] = load_concepts(["examples/zq-star"])
    assert (c.name, c.category, c.trigger, c.class_word) == ("zq-star", "object", "zqx", "toy")
    [leaf] = c.leaves
    assert leaf.descriptor == "zqx toy" and len(leaf.items) == 6
    assert all(it.caption.startswith("zqx toy") for it in leaf.items)


def test_all_problems_are_reported_at_once(tmp_path):
    d = example(tmp_path)
    (d / "00.txt").unlink()  # missing caption
    (d / "01.txt").write_bytes(b"zqx toy, caf\x92 background")  # cp1252, not UTF-8
    (d / "02.png").write_bytes((d / "02.png").read_bytes()[:100])  # truncated image
    (d / "03.txt").write_text("a toy without its trigger")
    Image.new("RGB", (8, 8)).save(d / "04.png")  # too small
    with pytest.raises(InputError) as e:
        load_concepts([str(d)])
    problems = e.value.problems
    text = "\n".join(problems)
    assert len(problems) == 5, text
    assert "00.txt" in text and "image without caption" in text
    assert "01.txt" in text and "not UTF-8" in text and "0x92" in text
    assert "02.png" in text and "unreadable image" in text
    assert "03.txt" in text and "trigger word 'zqx'" in text
    assert "04.png" in text and "minimum side" in text


def test_bom_and_nfd_captions_are_normalised(tmp_path):
    d = example(tmp_path)
    (d / "00.txt").write_bytes("\ufeffzqx toy, cafe\u0301 background\n".encode())
    [c] = load_concepts([str(d)])
    assert c.leaves[0].items[0].caption == "zqx toy, caf\u00e9 background"


def test_missing_folder_and_metadata(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError) as e:
        load_concepts([str(tmp_path / "nope"), str(tmp_path / "empty")])
    text = str(e.value)
    assert "no such folder" in text and "concept.yaml: missing" in text


@pytest.mark.parametrize("bad", ["../evil", "A B", "x" * 80, "con/x"])
def test_unsafe_concept_names_are_rejected(tmp_path, bad):
    d = example(tmp_path)
    (d / "concept.yaml").write_text(f"name: '{bad}'\ncategory: object\ntrigger: zqx\nclass_word: toy\n")
    with pytest.raises(InputError, match="must match"):
        load_concepts([str(d)])
