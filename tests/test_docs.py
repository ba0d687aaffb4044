"""The documentation and the published JSON: no machine paths in tracked docs/ and benchmarks/ JSON, and
every Markdown file that the repository cites is in the repository."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The world's measurement files (docs/world-check*.json, docs/world-candidates/) record the folders their
# models were read from; their owner scrubs them with the world's redesign. Every other tracked JSON is checked.
NOT_YET: tuple[str, ...] = ()
MACHINE_PATH = re.compile(r"(?:^|[\s=:'\"(,;])(?:/|~/|[A-Za-z]:[\\/])[A-Za-z0-9_.-]")
MD_REF = re.compile(r"(?<![\w/.-])((?:[\w.-]+/)*[\w-]+\.md)\b")


def tracked(*patterns: str) -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "--", *patterns], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        pytest.skip("not a git checkout: the tracked files are unknown")
    return [f for f in out.stdout.splitlines() if (ROOT / f).is_file()]


def machine_paths(obj, where: str = "") -> list[str]:
    """Every key or string value of a JSON document that holds an absolute path, as 'where: value'."""
    if isinstance(obj, dict):
        found = [f"{where}: key {k!r}" for k in obj if MACHINE_PATH.search(str(k))]
        return found + [hit for k, v in obj.items() for hit in machine_paths(v, f"{where}/{k}")]
    if isinstance(obj, list):
        return [hit for i, v in enumerate(obj) for hit in machine_paths(v, f"{where}[{i}]")]
    return [f"{where}: {obj!r}"] if isinstance(obj, str) and MACHINE_PATH.search(obj) else []


def test_the_path_finder_finds_paths_and_nothing_else():
    doc = {
        "a": "/root/results/x",
        "b": {"c": ["model.path=/work/base", "results_dir=<empty tmp>"]},
        "d": "C:\\runs",
        "e": "~/weights",
        "unit": "steps/s (steps per CPU-second)",
        "ratio": "1/3 of images/s",
        "f": "python -m lycobench sweep sweep=quick results_dir=<empty tmp>",
    }
    assert machine_paths(doc) == ["/a: '/root/results/x'", "/b/c[0]: 'model.path=/work/base'",
                                  "/d: 'C:\\\\runs'", "/e: '~/weights'"]  # fmt: skip


def test_no_machine_paths_in_the_published_json():
    files = [
        f for f in tracked("docs/*.json", "docs/**/*.json", "benchmarks/*.json") if not f.startswith(NOT_YET)
    ]
    assert "benchmarks/latest.json" in files
    found = [
        hit for f in files for hit in machine_paths(json.loads((ROOT / f).read_text(encoding="utf-8")), f)
    ]
    assert found == [], "absolute paths: write them relative to the repository, or leave the field out"


def test_every_cited_markdown_file_is_in_the_repository():
    texts = [
        f
        for f in tracked("*.md", "*.py", "*.yaml", "*.txt", "*.toml", "Makefile")
        if not f.startswith(("results/", "lycobench/world/weights/"))
    ]
    names = {Path(f).name for f in tracked("*.md")}
    missing = []
    for f in texts:
        text = (ROOT / f).read_text(encoding="utf-8", errors="replace")
        for ref in set(MD_REF.findall(text)):
            if "/" in ref:
                ok = (ROOT / ref).is_file() or (ROOT / f).parent.joinpath(ref).is_file()
            else:  # a bare name: a Markdown file of the repository (tests name their own fixtures)
                ok = ref in names or f.startswith("tests/")
            if not ok:
                missing.append(f"{f}: {ref}")
    assert len(texts) > 50 and "docs/paper-protocol.md" in tracked("docs/*.md")
    assert missing == []


def test_every_relative_link_of_the_documentation_resolves():
    link = re.compile(r"\]\(([^)#\s]+)")
    pages = [f for f in tracked("*.md") if not f.startswith("results/")]
    broken = [
        f"{f}: {target}"
        for f in pages
        for target in link.findall((ROOT / f).read_text(encoding="utf-8"))
        if not target.startswith(("http:", "https:", "mailto:"))
        and not (ROOT / f).parent.joinpath(target).exists()
    ]
    assert "README.md" in pages and broken == []
