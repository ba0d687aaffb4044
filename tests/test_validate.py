"""`python -m lycobench validate`: one report naming every bad file, non-zero exit on problems."""

import shutil

from PIL import Image

from lycobench.config import CONCEPTS_DIR
from lycobench.input_check import main


def bad_concept(root):
    """The example concept with one of each kind of bad input."""
    d = root / "bad"
    shutil.copytree(CONCEPTS_DIR / "examples" / "zq-star", d)
    (d / "00.txt").unlink()  # missing caption
    (d / "01.txt").write_bytes(b"zqx toy, caf\x92")  # not UTF-8
    (d / "02.png").write_bytes((d / "02.png").read_bytes()[:200])  # truncated
    (d / "03.txt").write_text("   \n")  # empty caption
    (d / "04.txt").write_text("a toy, no trigger")  # trigger missing
    Image.new("RGB", (10, 10)).save(d / "05.png")  # too small
    (d / "06.jpg").write_text("this is text, not a JPEG")  # not an image at all
    (d / "06.txt").write_text("zqx toy")
    outside = root / "elsewhere.png"
    Image.new("RGB", (32, 32), (5, 5, 5)).save(outside)
    (d / "07.png").symlink_to(outside)  # escapes the concept folder
    (d / "07.txt").write_text("zqx toy")
    return d


def test_every_bad_file_is_named_once(tmp_path, capsys):
    d = bad_concept(tmp_path)
    bad_name = tmp_path / "evil"
    bad_name.mkdir()
    (bad_name / "concept.yaml").write_text("name: ../evil\ncategory: object\ntrigger: qqx\nclass_word: toy\n")
    Image.new("RGB", (32, 32), (9, 9, 9)).save(bad_name / "00.png")
    (bad_name / "00.txt").write_text("qqx toy")
    assert main([str(d), str(bad_name), str(tmp_path / "missing")]) == 1
    out = capsys.readouterr().out
    expected = {
        "00.txt": "image without caption",
        "01.txt": "not UTF-8 (byte 0x92",
        "02.png": "unreadable image",
        "03.txt": "empty caption",
        "04.txt": "trigger word 'zqx'",
        "05.png": "minimum side",
        "06.jpg": "unreadable image",
        "07.png": "symlink leads outside",
        "bad: no usable": "images with captions",
        "evil/concept.yaml": "must match",
        "missing": "no such folder",
    }
    problems = [line for line in out.splitlines() if line.startswith("  - ")]
    for name, reason in expected.items():
        hits = [p for p in problems if name in p and reason in p]
        assert len(hits) == 1, (name, reason, out)
    assert f"{len(expected)} problem(s):" in out
    assert "FAILED" in out


def test_good_folder_exits_zero(capsys):
    assert main(["examples/zq-star"]) == 0
    assert "OK: 1 folder(s), 6 image(s) seen, 6 usable, 0 problem(s)" in capsys.readouterr().out


def test_command_line(tmp_path, cli):
    d = bad_concept(tmp_path)
    r = cli("validate", str(d))
    assert r.returncode == 1, r.stderr
    assert "02.png: unreadable image" in r.stdout and "07.png: symlink" in r.stdout
    assert cli("validate", "--help").returncode == 0


def test_a_broken_concept_yaml_hides_no_other_problem(tmp_path, capsys):
    """Missing class_word, malformed YAML, no concept.yaml at all: the images and captions are checked
    all the same, and every problem is one line naming its file (YAML errors with their line)."""
    folders = {}
    for name, yaml_text in {
        "no-class-word": "name: a\ncategory: object\ntrigger: zqa\n",
        "malformed": "name: b\ncategory: [object\ntrigger: zqb\nclass_word: toy\n",
        "no-yaml": None,
    }.items():
        d = folders[name] = tmp_path / name
        d.mkdir()
        if yaml_text is not None:
            (d / "concept.yaml").write_text(yaml_text)
        Image.new("RGB", (32, 32), (len(name), 0, 0)).save(d / "good.png")
        (d / "good.txt").write_text(f"zq{name[-1]} toy")
        Image.new("RGB", (8, 8), (len(name), 1, 0)).save(d / "tiny.png")  # too small
        (d / "tiny.txt").write_text("zqx toy")
        Image.new("RGB", (32, 32), (len(name), 2, 0)).save(d / "bare.png")  # no caption
    sub = folders["no-yaml"] / "red"  # without concept.yaml, sub-folders are checked as sub-classes
    sub.mkdir()
    Image.new("RGB", (32, 32), (0, 0, 3)).save(sub / "r.png")
    (sub / "r.txt").write_bytes(b"caf\x92")
    (folders["no-class-word"] / "wrong.txt").write_text("toy without trigger")
    Image.new("RGB", (32, 32), (0, 0, 4)).save(folders["no-class-word"] / "wrong.png")

    assert main([str(d) for d in folders.values()]) == 1
    out = capsys.readouterr().out
    problems = [line for line in out.splitlines() if line.startswith("  - ")]
    for d in folders.values():
        assert any(f"{d / 'tiny.png'}: image is 8x8" in p for p in problems), out
        assert any(f"{d / 'bare'}.*: image without caption" in p for p in problems), out
    assert any(
        f"{folders['no-class-word'] / 'concept.yaml'}: field 'class_word' missing" in p for p in problems
    )
    assert any(f"{folders['no-class-word'] / 'wrong.txt'}: caption does not start" in p for p in problems)
    [yaml_line] = [p for p in problems if "malformed" in p and "not valid YAML" in p]
    assert f"{folders['malformed'] / 'concept.yaml'}:3:" in yaml_line  # the line where the flow ends
    assert any(f"{folders['no-yaml'] / 'concept.yaml'}: missing; write it" in p for p in problems)
    assert any(f"{sub / 'r.txt'}: not UTF-8" in p for p in problems)
    assert f"{len(problems)} problem(s):" in out  # one line per problem, nothing spills over
    assert all(line.startswith(("  - ", "OK", "FAILED")) or line.endswith(":") for line in out.splitlines())
