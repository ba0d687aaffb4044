"""Atomic writes, completion markers and safe names: the on-disk contract."""

import pytest

from lycobench.store import (
    atomic_write_text,
    atomic_write_with,
    content_key,
    is_done,
    safe_name,
    write_marker,
)


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    p = tmp_path / "a" / "x.txt"
    atomic_write_text(p, "one")
    atomic_write_text(p, "two")
    assert p.read_text() == "two"
    assert [f.name for f in p.parent.iterdir()] == ["x.txt"]


def test_failed_write_keeps_the_old_file_and_no_temp(tmp_path):
    p = tmp_path / "x.txt"
    atomic_write_text(p, "old")

    def boom(tmp):
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        atomic_write_with(p, boom)
    assert p.read_text() == "old"
    assert [f.name for f in tmp_path.iterdir()] == ["x.txt"]


def test_marker_requires_same_key_and_intact_files(tmp_path):
    f = tmp_path / "out.bin"
    f.write_bytes(b"12345")
    marker = tmp_path / ".done" / "stage.json"
    assert not is_done(marker, "k1", tmp_path)
    write_marker(marker, "k1", [f], tmp_path)
    assert is_done(marker, "k1", tmp_path)
    assert not is_done(marker, "k2", tmp_path), "another configuration's output is not done"
    f.write_bytes(b"123")  # truncated
    assert not is_done(marker, "k1", tmp_path)
    f.unlink()
    assert not is_done(marker, "k1", tmp_path)


def test_corrupt_marker_is_not_done(tmp_path):
    marker = tmp_path / "m.json"
    marker.write_text('{"key": "k1", "fil')
    assert not is_done(marker, "k1", tmp_path)


def test_content_key_ignores_dict_order_only():
    assert content_key({"a": 1, "b": [1, 2]}) == content_key({"b": [1, 2], "a": 1})
    assert content_key({"a": 1}) != content_key({"a": 2})


@pytest.mark.parametrize("bad", ["../evil", "/abs", "a/b", "..", "", "x" * 200, ".hidden"])
def test_unsafe_names_are_rejected(bad):
    with pytest.raises(ValueError, match="not a safe file name"):
        safe_name(bad)


def test_safe_names_pass():
    assert safe_name("lora-dim4") == "lora-dim4"
    assert safe_name("seed=23") == "seed=23"


def test_evaluated_runs_reads_only_current_metrics(tmp_path):
    """Metrics count when the evaluate marker holds the evaluate key run.json records and no FAILED is
    there: metrics left from settings since changed (a newer attempt failed or was killed) are stale."""
    import json

    from lycobench.store import evaluated_runs

    def run(name, marker_key, record_key, failed=False):
        root = tmp_path / "runs" / name / "seed=23"
        (root / ".done").mkdir(parents=True)
        (root / "metrics.parquet").write_bytes(b"x")
        write_marker(root / ".done" / "evaluate.json", marker_key, [root / "metrics.parquet"], root)
        (root / "run.json").write_text(
            json.dumps({"cell": name, "seed": 23, "keys": {"evaluate": record_key}})
        )
        if failed:
            (root / "FAILED").write_text("cause: data\n")

    run("current", "k1", "k1")
    run("stale", "k1", "k2")  # settings changed since these metrics were made
    run("failed", "k1", "k1", failed=True)
    assert [(c, s) for _, c, s in evaluated_runs(tmp_path)] == [("current", 23)]
