"""Concept folders: loading, and bad input reported in one pass, each problem naming its file."""

import io
import shutil

import numpy as np
import pytest
from PIL import Image

from lycobench.config import CONCEPTS_DIR
from lycobench.data import InputError, check_concepts, load_concepts
from lycobench.image_policy import to_rgb


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


# --- image policy and the checks added for issue 5 ---------------------------------------------------


def test_policy_composites_alpha_on_white_and_scales_16_bit():
    rgba = Image.new("RGBA", (20, 20), (255, 0, 0, 0))  # fully transparent red
    assert to_rgb(rgba).getpixel((0, 0)) == (255, 255, 255)
    half = Image.new("RGBA", (20, 20), (0, 0, 0, 128))
    assert to_rgb(half).getpixel((0, 0)) == (127, 127, 127)
    la = Image.new("LA", (20, 20), (0, 0))
    assert to_rgb(la).getpixel((0, 0)) == (255, 255, 255)
    p = Image.new("P", (20, 20), 3)
    p.info["transparency"] = 3
    assert to_rgb(p).getpixel((0, 0)) == (255, 255, 255)
    gray16 = Image.fromarray(np.full((20, 20), 65535 // 2, dtype=np.uint16))
    assert gray16.mode.startswith("I;16")
    assert to_rgb(gray16).getpixel((0, 0)) == (127, 127, 127)
    cmyk = Image.new("CMYK", (20, 20), (0, 255, 255, 0))  # red in CMYK
    assert to_rgb(cmyk).getpixel((0, 0)) == (255, 0, 0)
    assert to_rgb(Image.new("L", (20, 20), 7)).getpixel((0, 0)) == (7, 7, 7)


def test_exif_rotation_is_applied():
    im = Image.new("RGB", (40, 20), (0, 0, 0))
    im.paste((255, 255, 255), (0, 0, 20, 20))  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view"
    buf = io.BytesIO()
    im.save(buf, format="JPEG", exif=exif, quality=95)
    upright = to_rgb(Image.open(buf))
    assert upright.size == (20, 40)
    assert sum(upright.getpixel((10, 5))) > 600 and sum(upright.getpixel((10, 35))) < 100  # white on top


def test_modes_are_accepted_with_notes_and_odd_files_warned(tmp_path):
    d = example(tmp_path)
    Image.open(d / "00.png").convert("RGBA").save(d / "00.png")
    Image.open(d / "01.png").convert("L").save(d / "01.png")
    Image.open(d / "02.png").convert("RGB").save(d / "02.png", format="JPEG")  # a .png holding JPEG
    (d / "notes.md").write_text("not an image")
    (d / "99.txt").write_text("zqx toy, a caption without an image")
    concepts, report = check_concepts([str(d)])
    assert not report.problems, report.problems
    assert concepts[0].n_images == 6
    notes, warnings = "\n".join(report.notes), "\n".join(report.warnings)
    assert "00.png: RGBA image -> RGB (alpha composited on white)" in notes
    assert "01.png: L image -> RGB" in notes
    assert "02.png: holds JPEG data under a .png name" in warnings
    assert "notes.md: ignored" in warnings and "99.txt: caption without an image" in warnings


def test_duplicates_symlinks_aspect_and_reserved_names(tmp_path):
    d = example(tmp_path)
    Image.open(d / "00.png").save(d / "06.png")  # same pixels, another file
    (d / "06.txt").write_text("zqx toy, again")
    outside = tmp_path / "outside.png"
    Image.new("RGB", (32, 32), (1, 2, 3)).save(outside)
    (d / "07.png").symlink_to(outside)
    (d / "07.txt").write_text("zqx toy, linked")
    Image.new("RGB", (200, 40), (9, 9, 9)).save(d / "08.png")
    (d / "08.txt").write_text("zqx toy, wide")
    _, report = check_concepts([str(d)])
    problems = "\n".join(report.problems)
    assert "06.png: same pixels as" in problems and "00.png" in problems
    assert "07.png: symlink leads outside the concept folder" in problems
    assert len(report.problems) == 2, problems
    assert any("08.png: aspect ratio 5.0:1" in w for w in report.warnings)
    (d / "concept.yaml").write_text("name: con\ncategory: object\ntrigger: zqx\nclass_word: toy\n")
    _, report = check_concepts([str(d)])
    assert any("device name" in p for p in report.problems)


def test_two_concepts_with_one_trigger_are_refused(tmp_path):
    a, b = example(tmp_path, "a"), example(tmp_path, "b")
    (b / "concept.yaml").write_text("name: other\ncategory: object\ntrigger: zqx\nclass_word: toy\n")
    for p in b.glob("*.png"):  # different pixels, so only the trigger clashes
        Image.open(p).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(p)
    with pytest.raises(InputError, match="trigger 'zqx' is used by more than one concept"):
        load_concepts([str(a), str(b)])


def test_world_concepts_are_exported_to_the_user_cache_not_the_source_tree(tmp_path, monkeypatch):
    """An installed package's source tree is site-packages: exports go to $LYCOBENCH_CACHE (else XDG)."""
    from lycobench.config import PROJECT_ROOT, user_cache_dir
    from lycobench.data import resolve_concept_path

    monkeypatch.setenv("LYCOBENCH_CACHE", str(tmp_path / "c"))
    folder = resolve_concept_path("world:bear")
    assert folder.is_relative_to(tmp_path / "c" / "world-concepts") and (folder / "concept.yaml").is_file()
    assert not folder.is_relative_to(PROJECT_ROOT)
    monkeypatch.delenv("LYCOBENCH_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert user_cache_dir() == tmp_path / "xdg" / "lycobench"


def test_a_caption_must_start_with_the_trigger(tmp_path):
    """The docs' rule: the trigger in the middle ("a photo of zqx toy") is refused, naming the file."""
    d = example(tmp_path)
    (d / "00.txt").write_text("a photo of zqx toy, white background\n")
    (d / "01.txt").write_text("zqx, toy on blue\n")  # the trigger first, a comma after it: fine
    with pytest.raises(InputError) as e:
        load_concepts([str(d)])
    assert len(e.value.problems) == 1 and str(d / "00.txt") in e.value.problems[0]
    assert "does not start with the trigger word 'zqx'" in e.value.problems[0]


def test_16_bit_greyscale_is_scaled_by_its_bit_depth_not_its_values(tmp_path):
    """A 16-bit PNG whose values stay below 256 is dark (200/65535), not read as 8-bit 200 (bright)."""
    arr = np.full((32, 32), 200, np.uint16)
    Image.fromarray(arr).save(tmp_path / "dark.png")
    with Image.open(tmp_path / "dark.png") as im:
        assert im.mode.startswith("I")  # opened as 16-bit
        rgb = np.asarray(to_rgb(im))
    assert rgb.max() == round(200 / 257)
