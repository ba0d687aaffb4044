"""A training finished by another sweep of the same results folder (same train key) is adopted, not redone."""

import json
import shutil

import pandas as pd

from lycobench.store import find_donor

from conftest import lycobench


def test_a_second_sweep_adopts_the_trainings_it_shares(local_smoke, tmp_path):
    results = tmp_path / "results"
    shutil.copytree(local_smoke.parent, results)
    r = lycobench("sweep", "sweep=smoke", "sweep.name=again", f"results_dir={results}")
    assert r.returncode == 0, r.stderr[-3000:]
    runs = sorted((results / "again" / "runs").glob("*/seed=*/run.json"))
    assert len(runs) == 4
    for run_json in runs:
        info = json.loads(run_json.read_text())
        rel = f"smoke/runs/{info['cell']}/seed={info['seed']}"
        assert info["status"] == "done" and info["reused"] == {"train": rel}
        donor, root = results / rel, run_json.parent
        ckpts = sorted((root / "checkpoints").glob("*.safetensors"))
        assert ckpts and all(c.stat().st_ino == (donor / "checkpoints" / c.name).stat().st_ino for c in ckpts)
        # generation and evaluation ran here, on the adopted checkpoints, and agree with the donor's
        pd.testing.assert_frame_equal(
            pd.read_parquet(root / "metrics.parquet"), pd.read_parquet(donor / "metrics.parquet")
        )
    # a rerun of the second sweep does nothing and keeps saying where its trainings came from
    assert lycobench("sweep", "sweep=smoke", "sweep.name=again", f"results_dir={results}").returncode == 0
    assert all("reused" in json.loads(p.read_text()) for p in runs)

    # a donor whose checkpoints were pruned (released) cannot give them
    key = json.loads((results / "smoke/runs/lora/seed=23/.done/train.json").read_text())["key"]
    elsewhere = tmp_path / "elsewhere"
    assert find_donor(results, "train", key, exclude=elsewhere) is not None
    for sweep in ("smoke", "again"):
        assert lycobench("prune", str(results / sweep), "--checkpoints-only").returncode == 0
    assert find_donor(results, "train", key, exclude=elsewhere) is None
