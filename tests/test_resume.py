"""Kill -9 a sweep anywhere, rerun the same command: only unfinished work is redone, and the results equal
an uninterrupted run's. Kill points: named sites of the write path (LYCOBENCH_KILL) and random times."""

import os
import random
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from lycobench.store import is_done, read_json

from conftest import ROOT, lycobench

ARGS = ("sweep", "sweep=smoke", "sweep.seeds=[23]")
CELLS = ["lora", "lora-dim4"]


def metrics(sweep_dir):
    return pd.concat(
        [
            pd.read_parquet(sweep_dir / "runs" / c / "seed=23" / "metrics.parquet").assign(cell=c)
            for c in CELLS
        ],
        ignore_index=True,
    )


def finished_cells(sweep_dir):
    """Cells whose three stage markers are valid, with the mtimes of every file they list."""
    out = {}
    for c in CELLS:
        root = sweep_dir / "runs" / c / "seed=23"
        if not (root / "run.json").is_file():
            continue
        keys = read_json(root / "run.json").get("keys", {})
        stages = ("train", "generate", "evaluate")
        if all(is_done(root / ".done" / f"{s}.json", keys.get(s), root) for s in stages):
            files = [root / rel for s in stages for rel in read_json(root / ".done" / f"{s}.json")["files"]]
            out[c] = {str(f): f.stat().st_mtime_ns for f in files}
    return out


def images(sweep_dir):
    """Every image of the run folders, by path: PNG bytes (pixels and provenance text chunks)."""
    return {
        str(p.relative_to(sweep_dir)): p.read_bytes() for p in sorted((sweep_dir / "runs").rglob("*.png"))
    }


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    results = tmp_path_factory.mktemp("reference")
    t0 = time.perf_counter()
    r = lycobench(*ARGS, f"results_dir={results}")
    assert r.returncode == 0, r.stderr[-3000:]
    sweep_dir = results / "smoke"
    return {"metrics": metrics(sweep_dir), "images": images(sweep_dir), "seconds": time.perf_counter() - t0}


def kill_at_time(results, fraction, seconds):
    env = {k: v for k, v in os.environ.items() if k not in ("LYCOBENCH_FAULT", "LYCOBENCH_KILL")}
    p = subprocess.Popen(
        [sys.executable, "-m", "lycobench", *ARGS, f"results_dir={results}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    time.sleep(fraction * seconds)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()


KILLS = [
    "write:1",
    "write:7",
    "write:40",
    "replace:3",
    "replace:25",
    "marker:1",
    "marker:2",
    "marker:4",
    "time:0.35",
    "time:0.7",
]


@pytest.mark.slow
@pytest.mark.parametrize("kill", KILLS)
def test_kill_then_rerun_redoes_only_unfinished_work(kill, reference, tmp_path):
    site, _, n = kill.partition(":")
    if site == "time":
        kill_at_time(tmp_path, float(n) * random.uniform(0.8, 1.2), reference["seconds"])
    else:
        r = lycobench(*ARGS, f"results_dir={tmp_path}", env={"LYCOBENCH_KILL": kill})
        assert r.returncode == -signal.SIGKILL, f"the kill point {kill} was never reached: {r.stderr[-2000:]}"
    sweep_dir = tmp_path / "smoke"
    before = finished_cells(sweep_dir) if sweep_dir.exists() else {}
    r = lycobench(*ARGS, f"results_dir={tmp_path}")
    assert r.returncode == 0, r.stderr[-3000:]
    after = finished_cells(sweep_dir)
    assert set(after) == set(CELLS)
    for cell, files in before.items():
        assert after[cell] == files, f"{cell} was finished before the rerun but its files were rewritten"
    pd.testing.assert_frame_equal(metrics(sweep_dir), reference["metrics"])
    assert images(sweep_dir) == reference["images"], "the resumed sweep's images are bit-identical"
    assert not list((sweep_dir / "runs").rglob(".*.tmp")), "temp files of the killed run are cleaned up"
