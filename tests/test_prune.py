"""prune: a finished run loses its checkpoints and unshown images, stays finished (skipped, reported), and a
stage that has to run again first brings back what it reads."""

import shutil

import pandas as pd
import pytest

from lycobench.report.grids import shown_indices
from lycobench.store import is_done, read_json, run_done

from conftest import lycobench

CELLS = ("lora", "lora-dim4")
SEEDS = (23, 24)


@pytest.fixture
def sweep(local_smoke, tmp_path):
    shutil.copytree(local_smoke.parent, tmp_path / "results")  # with the shared cache beside the sweep
    return tmp_path / "results" / "smoke"


def runs(sweep_dir):
    return [sweep_dir / "runs" / c / f"seed={s}" for c in CELLS for s in SEEDS]


def mtimes(root):
    return {p.name: p.stat().st_mtime_ns for p in (root / "metrics.parquet", root / "images.parquet")}


def rerun(sweep_dir, *overrides):
    r = lycobench("sweep", "sweep=smoke", f"results_dir={sweep_dir.parent}", *overrides)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def test_prune_keeps_what_the_report_reads_and_the_runs_stay_finished(sweep):
    before = {root: mtimes(root) for root in runs(sweep)}
    r = lycobench("prune", str(sweep))
    assert r.returncode == 0, r.stderr
    assert "freed" in r.stdout and "of 4 runs" in r.stdout
    for root in runs(sweep):
        assert not list((root / "checkpoints").glob("*.safetensors"))
        images = pd.read_parquet(root / "images.parquet")
        own = images[images["step"] > 0]
        on_disk = {p for p in own["path"] if (sweep / p).is_file()}
        shown = set()
        for _, g in images.groupby(["leaf", "prompt_type"]):
            shown |= set(g.loc[g["index"].isin(shown_indices(g)), "path"]) & set(own["path"])
        assert on_disk == shown and 0 < len(shown) < len(own)
        released = read_json(root / ".done" / "generate.json")["released"]
        assert len(released) == len(own) - len(shown)
        keys = read_json(root / "run.json")["keys"]
        assert run_done(root, keys)
        assert not is_done(root / ".done" / "train.json", keys["train"], root)  # strictly, it is not
    status = lycobench("status", str(sweep))
    assert status.returncode == 0 and "4 done" in status.stdout, status.stdout

    rerun(sweep)  # nothing to do: nothing is retrained, regenerated or re-evaluated
    for root in runs(sweep):
        assert mtimes(root) == before[root]
        assert not list((root / "checkpoints").glob("*.safetensors"))

    report = lycobench("report", str(sweep))
    assert report.returncode == 0, report.stderr[-2000:]
    sheets = list((sweep / "report" / "grids").rglob("*.png"))
    assert sheets, "the report draws its sheets from the images prune kept"

    again = lycobench("prune", str(sweep))  # idempotent
    assert again.returncode == 0 and "freed 0.0 MiB (0 files of 0 runs)" in again.stdout


def test_a_stage_to_redo_brings_back_what_it_reads(sweep):
    """Another evaluation after a full prune: the images it reads are gone, so training and generation run
    again first; after --checkpoints-only the images are there and only the evaluation runs."""
    original = pd.read_parquet(runs(sweep)[0] / "metrics.parquet")
    assert lycobench("prune", str(sweep), "--checkpoints-only").returncode == 0
    root = runs(sweep)[0]
    images_before = mtimes(root)["images.parquet"]
    rerun(sweep, "sweep.seeds=[23]", "evaluate.params.copy_rate.threshold=0.9")
    assert not list((root / "checkpoints").glob("*.safetensors")), "training ran though the images were there"
    assert mtimes(root)["images.parquet"] == images_before

    assert lycobench("prune", str(sweep)).returncode == 0
    rerun(sweep, "sweep.seeds=[23]")  # the first evaluation again: images gone, so trained again first
    keys = read_json(root / "run.json")["keys"]
    for stage in ("train", "generate", "evaluate"):
        assert is_done(root / ".done" / f"{stage}.json", keys[stage], root)  # strictly: files all back
    assert "released" not in read_json(root / ".done" / "train.json")
    again = pd.read_parquet(root / "metrics.parquet")
    pd.testing.assert_frame_equal(again, original)  # retrained and regenerated: the same numbers


def test_prune_refuses_a_folder_without_runs(tmp_path):
    r = lycobench("prune", str(tmp_path))
    assert r.returncode == 2 and "has no runs/" in r.stderr
