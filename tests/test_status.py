"""`status` on a synthetic sweep folder: every state, causes, the time estimate; launcher presets compose."""

import json
import os
import shutil

import pytest

from lycobench.status import summarize
from lycobench.store import RunDir, write_marker

from conftest import lycobench


def make_sweep(tmp_path):
    d = tmp_path / "s"
    manifest = {"sweep": {"name": "s", "seeds": [1, 2], "configs": {"a": [], "b": []}}}
    d.mkdir()
    (d / "manifest.json").write_text(json.dumps(manifest))

    def run(cell, seed, **info):
        rd = RunDir.of(d, cell, seed)
        rd.root.mkdir(parents=True)
        keys = {s: f"k-{s}" for s in ("train", "generate", "evaluate")}
        rd.run_json.write_text(json.dumps({"cell": cell, "seed": seed, "keys": keys, **info}))
        return rd, keys

    rd, keys = run("a", 1, seconds={"train": 30, "generate": 20, "evaluate": 10})  # done
    (rd.root / "metrics.parquet").write_bytes(b"x")
    for s in keys:
        write_marker(rd.marker(s), keys[s], [rd.root / "metrics.parquet"], rd.root)
    rd, _ = run("a", 2)  # failed
    rd.failed.write_text("cause: nan\n\nTraceback ...\nTrainingDiverged: loss is nan at step 3\n")
    run("b", 1, owner={"host": os.uname().nodename, "pid": os.getpid()})  # running: this process is alive
    # b seed 2: never started -> pending
    return d


def test_states_causes_and_eta(tmp_path):
    s = summarize(make_sweep(tmp_path))
    states = {(r["cell"], r["seed"]): r["state"] for r in s["rows"]}
    assert states == {("a", 1): "done", ("a", 2): "failed", ("b", 1): "running", ("b", 2): "pending"}
    failed = next(r for r in s["rows"] if r["state"] == "failed")
    assert failed["cause"] == "nan" and "loss is nan" in failed["error"]
    assert s["eta_seconds"] == pytest.approx(60 * 2)  # two runs left at the mean 60 s of the finished one


def test_status_command(tmp_path):
    r = lycobench("status", str(make_sweep(tmp_path)))
    assert r.returncode == 1  # a run failed
    assert "1 done" in r.stdout and "1 failed" in r.stdout and "1 pending" in r.stdout
    assert "nan: TrainingDiverged" in r.stdout and "time left" in r.stdout
    assert lycobench("status", str(tmp_path / "nope")).returncode == 2


@pytest.mark.parametrize("launcher", ["local_parallel", "slurm", "slurm_gpu"])
def test_launcher_presets_compose(launcher):
    from hydra import compose, initialize_config_dir

    from lycobench.config import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"hydra/launcher={launcher}"], return_hydra_config=True)
    launcher_cfg = cfg.hydra.launcher
    if launcher == "local_parallel":
        assert launcher_cfg.n_jobs == 2 and "joblib" in launcher_cfg._target_.lower()
    else:  # lycobench's SLURM launcher (Hydra's submitit launcher underneath), requeues allowed
        assert launcher_cfg._target_ == "hydra_plugins.lycobench_launcher.slurm.SlurmLauncher"
        assert launcher_cfg.max_num_timeout == 3
        assert launcher_cfg.gpus_per_node == (1 if launcher == "slurm_gpu" else None)


def test_status_of_a_folder_made_by_run(tmp_path):
    """`run` writes runs/ but no manifest.json (no sweep declared its cells): status reads it all the same."""
    d = make_sweep(tmp_path)
    (d / "manifest.json").unlink()
    r = lycobench("status", str(d))
    assert r.returncode == 1, r.stderr  # the failed run
    assert "1 done" in r.stdout and "1 failed" in r.stdout and "pending" not in r.stdout


def test_status_names_the_runs_a_rerun_would_redo(local_smoke, tmp_path):
    """A finished run whose settings changed since (here: the sweep's generation steps) is 'stale', with
    the stage a rerun redoes it from; marker-only reading (--fast) still calls it done."""
    shutil.copytree(local_smoke.parent, tmp_path / "results")
    d = tmp_path / "results" / "smoke"
    r = lycobench("status", str(d))
    assert r.returncode == 0 and "4 done" in r.stdout and "stale" not in r.stdout, r.stdout + r.stderr
    manifest = json.loads((d / "manifest.json").read_text())
    manifest["overrides"] = [*manifest["overrides"], "generate.steps=3"]
    (d / "manifest.json").write_text(json.dumps(manifest))
    r = lycobench("status", str(d))
    assert "4 stale" in r.stdout and r.stdout.count("a rerun redoes it from generate") == 4, r.stdout
    assert "time left" in r.stdout and "unknown" not in r.stdout  # the stale runs' own times
    assert "4 done" in lycobench("status", "--fast", str(d)).stdout
