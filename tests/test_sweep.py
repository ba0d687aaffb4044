"""The smoke sweep end to end through the CLI: contract on disk, failure isolation, resume, determinism."""

import json

import pandas as pd
import pytest

from conftest import lycobench

CELLS = [("lora", 23), ("lora-dim4", 23), ("lora", 24), ("lora-dim4", 24)]


def snapshot(sweep_dir):
    """mtime and size of every result file (Hydra's logs/ excluded: they are logs, not results)."""
    return {
        str(p.relative_to(sweep_dir)): (p.stat().st_mtime_ns, p.stat().st_size)
        for p in sweep_dir.rglob("*")
        if p.is_file() and "logs" not in p.relative_to(sweep_dir).parts
    }


def metrics_of(sweep_dir):
    frames = []
    for cell, seed in CELLS:
        m = pd.read_parquet(sweep_dir / "runs" / cell / f"seed={seed}" / "metrics.parquet")
        frames.append(m.assign(cell=cell, seed=seed))
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def failed_then_resumed(tmp_path_factory):
    """A smoke sweep where one cell fails, then the same command rerun without the fault, then again."""
    results = tmp_path_factory.mktemp("results")
    args = ("sweep", "sweep=smoke", f"results_dir={results}")
    first = lycobench(*args, env={"LYCOBENCH_FAULT": "train:lora:24"})
    sweep_dir = results / "smoke"
    after_first = snapshot(sweep_dir)
    second = lycobench(*args)
    after_second = snapshot(sweep_dir)
    third = lycobench(*args)
    after_third = snapshot(sweep_dir)
    return dict(dir=sweep_dir, runs=(first, second, third), snaps=(after_first, after_second, after_third))


def test_failing_cell_writes_failed_and_the_others_complete(failed_then_resumed):
    first = failed_then_resumed["runs"][0]
    assert first.returncode == 1, first.stderr[-2000:]
    assert "lora seed=24: failed (injected)" in first.stderr
    snap = failed_then_resumed["snaps"][0]
    assert "runs/lora/seed=24/FAILED" in snap
    for cell, seed in CELLS:
        if (cell, seed) != ("lora", 24):
            assert f"runs/{cell}/seed={seed}/metrics.parquet" in snap
    assert not any(k.startswith("runs/lora/seed=24/checkpoints/") for k in snap)


def test_on_disk_contract(failed_then_resumed):
    d = failed_then_resumed["dir"]
    manifest = json.loads((d / "manifest.json").read_text())
    assert manifest["sweep"]["name"] == "smoke" and manifest["versions"]["torch"]
    run = d / "runs" / "lora" / "seed=23"
    for name in ("config.yaml", "run.json", "train_log.csv", "images.parquet", "metrics.parquet"):
        assert (run / name).is_file(), name
    log = pd.read_csv(run / "train_log.csv")
    assert list(log["step"]) == list(range(1, len(log) + 1)) and log["loss"].gt(0).all()
    # the lr each step used: the smoke recipe's 2 warm-up steps run at 1/2 and 2/2 of it, then it stays
    assert (
        log["lr"].iloc[0] == pytest.approx(log["lr"].iloc[-1] / 2) and log["lr"].iloc[1] == log["lr"].iloc[-1]
    )
    ends = log.groupby("epoch")[
        "step"
    ].max()  # checkpoints at the ends of epochs 2 and 4 (conf/train/smoke.yaml)
    steps = [int(ends[2]), int(ends[4])]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == sorted(
        f"step-{s}.safetensors" for s in steps
    )
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "done" and info["factors"]["algo"] == "lora" and info["provenance"]["versions"]
    images = pd.read_parquet(run / "images.parquet")
    assert set(images["step"]) == {0, *steps}  # step 0: the base model, from the shared cache
    # base images live in results_dir/cache, shared by every sweep there
    assert images.query("step == 0")["path"].str.startswith("../cache/base-images/").all()
    assert (images.query("step > 0")["path"].map(lambda p: (d / p).is_file())).all()
    # the same prompt and image index get the same seed at every checkpoint and for the base model
    seeds = images.groupby(["leaf", "prompt_type", "index"])["seed"].nunique()
    assert (seeds == 1).all()
    metrics = pd.read_parquet(run / "metrics.parquet")
    assert {"step", "leaf", "prompt_type", "metric", "encoder", "level", "value"} <= set(metrics.columns)
    assert metrics["value"].notna().all()
    report = d / "report"
    assert (report / "metrics.csv").is_file() and (report / "summary.csv").is_file()
    assert "| cell | step |" in (report / "metrics.md").read_text()
    assert not any(p.name.endswith(".tmp") for p in d.rglob("*")), "no temp file left behind"


def test_rerun_redoes_only_the_failed_cell(failed_then_resumed):
    second = failed_then_resumed["runs"][1]
    assert second.returncode == 0, second.stderr[-2000:]
    before, after = failed_then_resumed["snaps"][:2]
    rewritten = {k for k in before if k in after and after[k] != before[k]}
    assert all(
        k.startswith("runs/lora/seed=24/") or k.startswith("report/") or k == "manifest.json"
        for k in rewritten
    ), rewritten
    assert "runs/lora/seed=24/metrics.parquet" in after and "runs/lora/seed=24/FAILED" not in after
    # base images came from the cache: none was made again
    assert not any(k.startswith("cache/base-images/") for k in rewritten)


def test_rerun_of_a_finished_sweep_rewrites_nothing(failed_then_resumed):
    third = failed_then_resumed["runs"][2]
    assert third.returncode == 0, third.stderr[-2000:]
    assert "report:" in third.stdout
    before, after = failed_then_resumed["snaps"][1:]
    assert before == after
    assert "all 4 runs are done already" in third.stderr  # and no job was launched
    assert "skipped" not in third.stdout + third.stderr


def test_report_command_rebuilds_from_files(failed_then_resumed, tmp_path):
    d = failed_then_resumed["dir"]
    import shutil

    copy = tmp_path / "smoke"
    shutil.copytree(d, copy)
    shutil.rmtree(copy / "report")
    r = lycobench("report", str(copy))
    assert r.returncode == 0, r.stderr
    assert (copy / "report" / "metrics.csv").read_text() == (d / "report" / "metrics.csv").read_text()
    # a failed run makes the report exit non-zero and name it
    (copy / "runs" / "lora" / "seed=23" / "FAILED").write_text("cause: bug\n\nRuntimeError: boom\n")
    r = lycobench("report", str(copy))
    assert r.returncode == 1 and "lora seed=23: failed (bug)" in r.stderr


def test_run_command_skips_a_finished_cell(failed_then_resumed):
    d = failed_then_resumed["dir"]
    r = lycobench("run", "sweep=smoke", "cell=lora-dim4", "seed=23", f"results_dir={d.parent}")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "skipped" in r.stdout + r.stderr


def test_a_fresh_sweep_gives_identical_metrics(failed_then_resumed, local_smoke):
    """Determinism on CPU, including the cell that failed once and was resumed."""
    pd.testing.assert_frame_equal(metrics_of(failed_then_resumed["dir"]), metrics_of(local_smoke))


def test_the_parallel_launcher_gives_identical_metrics(failed_then_resumed, tmp_path):
    """Hydra's joblib launcher (2 workers, a torch thread each) against the sequential runs above."""
    r = lycobench("sweep", "sweep=smoke", "hydra/launcher=local_parallel", f"results_dir={tmp_path}")
    assert r.returncode == 0, r.stderr[-2000:]
    pd.testing.assert_frame_equal(metrics_of(failed_then_resumed["dir"]), metrics_of(tmp_path / "smoke"))


def test_idle_loky_workers_are_released_before_the_report():
    # joblib keeps loky workers alive for reuse; the sweep shuts them down once its jobs are done. This
    # reads loky's module-level executor: if a joblib upgrade moves it, the workers survive and this fails.
    import os

    from joblib import Parallel, delayed

    from lycobench.sweep import release_idle_workers

    pids = set(Parallel(n_jobs=2, backend="loky")(delayed(os.getpid)() for _ in range(4)))
    assert os.getpid() not in pids and all(_alive(p) for p in pids)
    release_idle_workers()
    assert not any(_alive(p) for p in pids)
    release_idle_workers()  # twice, or under another launcher: nothing to do


def _alive(pid: int) -> bool:
    from pathlib import Path

    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(") ")[-1][0] != "Z"  # a zombie has exited


def test_cells_the_model_declares_twins_are_not_run_and_the_manifest_says_why(tmp_path):
    from lycobench.sweep import preflight, write_manifest

    common = ["sweep=smoke", f"results_dir={tmp_path}", "+model.twin_cells={lora-dim4: lora, absent: lora}"]
    cfg, cells, _ = preflight(common)
    assert list(cells) == ["lora"] and list(cfg.sweep.configs) == ["lora"]
    assert dict(cfg.sweep.twins) == {"lora-dim4": "lora"}  # a twin of a cell the sweep lacks is ignored
    manifest = json.loads(write_manifest(cfg, common).read_text())
    assert list(manifest["sweep"]["configs"]) == ["lora"] and manifest["sweep"]["twins"] == {
        "lora-dim4": "lora"
    }
    cfg, cells, _ = preflight(["sweep=smoke", f"results_dir={tmp_path}"])  # no declaration: every cell runs
    assert list(cells) == ["lora", "lora-dim4"] and "twins" not in cfg.sweep


def test_a_cell_running_elsewhere_is_left_to_it(tmp_path):
    """Two launches on the same run folder: the second finds the run's lock taken and does nothing (it
    would otherwise delete the first one's temp files, checkpoints and images)."""
    import fcntl

    from lycobench.cell import Cell
    from lycobench.config import compose_cell, sweep_dir_of

    cfg = compose_cell(["sweep=smoke", f"results_dir={tmp_path}"], "lora", 23)
    cell = Cell(cfg, sweep_dir_of(cfg))
    cell.rd.root.mkdir(parents=True)
    with open(cell.rd.root / ".lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the other launch
        assert cell.run() == "busy"
    assert not cell.rd.run_json.exists() and not cell.rd.checkpoints.exists()  # nothing touched


def test_a_finished_runs_record_is_made_to_agree_after_an_abandoned_attempt(failed_then_resumed, tmp_path):
    """An attempt with other settings rewrote run.json and failed; the original settings are asked again:
    every marker is still valid, so nothing runs, and the record says done again (it said failed)."""
    import shutil

    results = tmp_path / "results"
    shutil.copytree(failed_then_resumed["dir"], results / "smoke", symlinks=True)
    root = results / "smoke" / "runs" / "lora" / "seed=23"
    info = json.loads((root / "run.json").read_text())
    abandoned = {**info, "status": "failed", "keys": {k: "0" * 16 for k in info["keys"]}}
    (root / "run.json").write_text(json.dumps(abandoned))
    (root / "FAILED").write_text("cause: interrupted\n")
    status = lycobench("status", str(results / "smoke"))
    assert "lora" in status.stdout and "failed" in status.stdout
    rerun = lycobench("sweep", "sweep=smoke", f"results_dir={results}")
    assert rerun.returncode == 0, rerun.stderr
    assert json.loads((root / "run.json").read_text())["keys"] == info["keys"]
    assert not (root / "FAILED").exists() and "all 4 runs are done already" in rerun.stderr


def test_a_rerun_that_redoes_only_the_evaluation_keeps_the_earlier_stages_times(
    failed_then_resumed, tmp_path
):
    import shutil

    results = tmp_path / "results"
    shutil.copytree(failed_then_resumed["dir"].parent, results, symlinks=True)  # with the shared cache
    root = results / "smoke" / "runs" / "lora-dim4" / "seed=23"
    before = json.loads((root / "run.json").read_text())["seconds"]
    assert set(before) == {"train", "generate", "evaluate"}
    (root / ".done" / "evaluate.json").unlink()  # as when the evaluation's settings change
    assert lycobench("sweep", "sweep=smoke", f"results_dir={results}").returncode == 0
    after = json.loads((root / "run.json").read_text())["seconds"]
    assert {k: after[k] for k in ("train", "generate")} == {k: before[k] for k in ("train", "generate")}
    assert "evaluate" in after
