"""The smoke sweep on a live SLURM cluster (`make slurm`: scripts/local-slurm.sh, a real slurmctld and
slurmd on this machine), driven with real sbatch, scontrol requeue and scancel. One sweep folder goes
through four launches, each checked by the tests below:

  A. a fresh launch, one task at a time, cancelled with `scancel` once the first cell is finished;
  B. the same command again, with a fault injected into one cell, and another cell's task requeued in the
     middle of its training (`scontrol requeue`, its process killed at once: a preemption without grace);
  C. the same command again: only the failed cell runs; the sweep finishes;
  D. the same command again: nothing is submitted.

Without a cluster these tests skip (with LYCOBENCH_REQUIRE_SLURM=1, as in CI, they fail instead). The
parsing and the progress lines are tested without a cluster at the end of the file."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lycobench.slurm import queue, record
from lycobench.slurm.progress import Progress
from lycobench.store import read_json

from conftest import ROOT, lycobench

CELLS = [("lora", 23), ("lora", 24), ("lora-dim4", 23), ("lora-dim4", 24)]
FAULT = ("lora-dim4", 24)  # fails at the start of its evaluation in launch B
REQUEUED = ("lora-dim4", 23)  # its task is requeued in the middle of its training in launch B
# small tasks for a 2-core machine; the cluster's default partition
LAUNCHER = ["hydra/launcher=slurm", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1"]
TIMEOUT = 900


def cluster_problem() -> str | None:
    if shutil.which("sbatch") is None:
        return "SLURM is not installed"
    try:
        ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=30)
        if "UP" not in ping.stdout:
            return "no slurmctld answers"
        nodes = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return "the SLURM controller does not answer"
    if not any(s.rstrip("*") in ("idle", "mixed", "allocated") for s in nodes.stdout.split()):
        return f"no usable node (sinfo: {nodes.stdout.strip() or nodes.stderr.strip()})"
    return None


@pytest.fixture(scope="module")
def cluster():
    problem = cluster_problem()
    if problem:
        why = f"{problem}: start a local cluster with `make slurm` (scripts/local-slurm.sh start, as root)"
        if os.environ.get("LYCOBENCH_REQUIRE_SLURM") == "1":
            pytest.fail(why, pytrace=False)
        pytest.skip(why)


def run_dir(sweep: Path, cell: str, seed: int) -> Path:
    return sweep / "runs" / cell / f"seed={seed}"


def done(sweep: Path, cell: str, seed: int) -> bool:
    return (run_dir(sweep, cell, seed) / ".done" / "evaluate.json").is_file()


def files_of(sweep: Path, cell: str, seed: int) -> dict[str, tuple[int, int]]:
    """(inode, mtime) of every file of a run folder: a rewritten file changes both."""
    root = run_dir(sweep, cell, seed)
    return {
        str(p.relative_to(root)): (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file()
    }


def wait_for(what: str, predicate, proc: subprocess.Popen, timeout: float = TIMEOUT):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        value = predicate()
        if value:
            return value
        if proc.poll() is not None:
            raise AssertionError(
                f"the sweep ended (exit {proc.returncode}) before {what}: {proc.stderr.read()[-3000:]}"
            )
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def scontrol_job(task: str) -> dict[str, str]:
    out = subprocess.run(["scontrol", "show", "job", task], capture_output=True, text=True, check=True).stdout
    return dict(kv.split("=", 1) for kv in out.split() if "=" in kv)


class Launch:
    """One `python -m lycobench sweep` through SLURM, in a subprocess, watched while it runs."""

    def __init__(self, results: Path, *extra: str, env: dict | None = None):
        full_env = {k: v for k, v in os.environ.items() if k != "LYCOBENCH_FAULT"}
        full_env.update(env or {})
        self.jobs_before = len(record.read(results / "smoke"))
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "lycobench",
                "sweep",
                "sweep=smoke",
                f"results_dir={results}",
                *LAUNCHER,
                *extra,
            ],
            cwd=ROOT,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.sweep = results / "smoke"
        self.t0 = time.monotonic()

    def job(self) -> dict:
        """This launch's submission, once it is recorded."""
        return wait_for(
            "the job's submission",
            lambda: (record.read(self.sweep)[self.jobs_before :] or [None])[0],
            self.proc,
        )

    def finish(self) -> dict:
        out, err = self.proc.communicate(timeout=TIMEOUT)
        jobs = record.read(self.sweep)[self.jobs_before :]
        return {
            "rc": self.proc.returncode,
            "stdout": out,
            "stderr": err,
            "jobs": jobs,
            "seconds": time.monotonic() - self.t0,
        }


@pytest.fixture(scope="module")
def launches(cluster, tmp_path_factory):
    results = tmp_path_factory.mktemp("slurm")
    sweep = results / "smoke"
    out: dict = {"sweep": sweep}
    try:
        # A: one task at a time; cancel the whole job once the first cell is finished
        a = Launch(results, "hydra.launcher.array_parallelism=1")
        job = a.job()
        wait_for("the first finished cell", lambda: done(sweep, "lora", 23), a.proc)
        finished = [c for c in CELLS if done(sweep, *c)]
        subprocess.run(["scancel", job["job"]], check=True)
        out["A"] = a.finish()
        # their files once A has ended (a finished cell writes run.json after its last marker)
        out["finished_at_cancel"] = {c: files_of(sweep, *c) for c in finished}

        # B: a fault in one cell; another cell's task requeued while it trains
        b = Launch(results, env={"LYCOBENCH_FAULT": "evaluate:{}:{}".format(*FAULT)})
        job = b.job()

        def status_with_a_running_task():
            text = lycobench("status", str(sweep)).stdout
            return text if f"SLURM {job['job']}_" in text and "RUNNING" in text else None

        out["status_while_running"] = wait_for("a running task in status", status_with_a_running_task, b.proc)
        root = run_dir(sweep, *REQUEUED)

        def training_past_first_checkpoint():
            state, marker = root / "train_state.safetensors", root / ".done" / "train.json"
            if not state.is_file() or marker.is_file():
                return None
            pid = read_json(root / "run.json")["owner"]["pid"]
            return pid if _alive(pid) else None

        pid = wait_for(
            "the requeued cell's training to pass its first checkpoint",
            training_past_first_checkpoint,
            b.proc,
        )
        task = next(t for t, c in job["tasks"].items() if tuple(c) == REQUEUED)
        first_checkpoint = {
            k: v for k, v in files_of(sweep, *REQUEUED).items() if k.startswith("checkpoints/")
        }
        subprocess.run(["scontrol", "requeue", task], check=True)
        os.kill(
            pid, signal.SIGKILL
        )  # SLURM's SIGKILL after KillWait, sent at once (the task ignores SIGTERM)
        out["requeue"] = {
            "task": task,
            "checkpoints_at_requeue": first_checkpoint,
            "train_done_at_requeue": (root / ".done" / "train.json").is_file(),
        }
        out["B"] = b.finish()
        out["requeue"]["scontrol"] = scontrol_job(task)
        fault_task = next(t for t, c in out["B"]["jobs"][0]["tasks"].items() if tuple(c) == FAULT)
        out["fault_scontrol"] = scontrol_job(fault_task)
        out["status_after_fault"] = lycobench("status", str(sweep))
        out["failed_after_B"] = (run_dir(sweep, *FAULT) / "FAILED").read_text()
        out["done_after_B"] = {c for c in CELLS if done(sweep, *c)}
        out["after_B"] = {c: files_of(sweep, *c) for c in CELLS}

        # C: the same command: only the failed cell runs
        out["C"] = Launch(results).finish()
        out["after_C"] = {c: files_of(sweep, *c) for c in CELLS}
        # D: a finished sweep submits nothing
        out["D"] = Launch(results).finish()
        out["after_D"] = {c: files_of(sweep, *c) for c in CELLS}
    finally:
        for job in record.read(sweep):
            subprocess.run(["scancel", job["job"]], capture_output=True)
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def metrics_bytes(sweep: Path) -> dict:
    return {c: (run_dir(sweep, *c) / "metrics.parquet").read_bytes() for c in CELLS}


@pytest.mark.slurm
def test_the_sweep_through_slurm_writes_the_local_bits(launches, request):
    local_smoke = request.getfixturevalue("local_smoke")  # only once the cluster is known to be up
    assert launches["C"]["rc"] == 0, launches["C"]["stderr"][-3000:]
    assert metrics_bytes(launches["sweep"]) == metrics_bytes(local_smoke)
    images = lambda sweep: {  # noqa: E731
        str(p.relative_to(sweep)): p.read_bytes() for p in sorted((sweep / "runs").rglob("*.png"))
    }
    assert images(launches["sweep"]) == images(local_smoke)


@pytest.mark.slurm
def test_a_task_requeued_in_its_training_redoes_only_the_rest_of_it(launches):
    rq = launches["requeue"]
    assert not rq["train_done_at_requeue"], "the task was requeued in its training"
    assert rq["scontrol"]["Restarts"] == "1" and rq["scontrol"]["JobState"] == "COMPLETED"
    after = launches["after_B"][REQUEUED]
    # the checkpoint written before the requeue is the one the sweep ends with: training resumed after it
    assert rq["checkpoints_at_requeue"] and all(
        after[k] == v for k, v in rq["checkpoints_at_requeue"].items()
    )
    assert len([k for k in after if k.startswith("checkpoints/")]) == 2
    log = (run_dir(launches["sweep"], *REQUEUED) / "train_log.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in log] == list(range(1, len(log) + 1))
    assert "1 requeue(s)" in launches["B"]["stderr"]


@pytest.mark.slurm
def test_a_failing_cell_fails_alone_and_is_named(launches):
    b = launches["B"]
    assert b["rc"] == 1, b["stderr"][-3000:]
    assert launches["failed_after_B"].startswith("cause: injected")
    assert not (run_dir(launches["sweep"], *FAULT) / "FAILED").exists(), "gone once the cell finished"
    assert launches["done_after_B"] == set(CELLS) - {FAULT}, "every other cell finished"
    assert "lora-dim4 seed=24: failed (injected)" in b["stderr"]
    assert launches["fault_scontrol"]["JobState"] == "FAILED", "SLURM sees the failure too (hydra#1928)"
    status = launches["status_after_fault"]
    assert status.returncode == 1 and "failed" in status.stdout and "lora-dim4 seed=24" in status.stdout
    assert "injected" in status.stdout


@pytest.mark.slurm
def test_status_shows_the_slurm_task_of_queued_and_running_cells(launches):
    job = launches["B"]["jobs"][0]["job"]
    lines = [ln for ln in launches["status_while_running"].splitlines() if f"SLURM {job}_" in ln]
    assert lines, launches["status_while_running"]
    assert all(ln.split()[0] in ("queued", "running") for ln in lines), lines
    assert any("RUNNING" in ln for ln in lines) and any("PENDING" in ln for ln in lines), lines


@pytest.mark.slurm
def test_a_cancelled_sweep_resumes_and_finished_cells_submit_no_job(launches):
    a = launches["A"]
    assert a["rc"] != 0 and "cancelled" in a["stderr"], a["stderr"][-3000:]
    assert len(a["jobs"]) == 1 and len(a["jobs"][0]["tasks"]) == 4
    finished = launches["finished_at_cancel"]
    assert ("lora", 23) in finished and len(finished) < 4
    submitted_b = {tuple(c) for c in launches["B"]["jobs"][0]["tasks"].values()}
    assert submitted_b == set(CELLS) - set(finished)
    submitted_c = {tuple(c) for c in launches["C"]["jobs"][0]["tasks"].values()}
    assert submitted_c == {FAULT}
    assert "finished cell(s) submit no job" in launches["C"]["stderr"]
    for cell, files in finished.items():  # not one file of a finished cell was rewritten
        assert {k: launches["after_C"][cell][k] for k in files} == files
    # the failed cell redid its evaluation only: its checkpoints and images are those of launch B
    before, after = launches["after_B"][FAULT], launches["after_C"][FAULT]
    kept = [k for k in before if k.startswith(("checkpoints/", "images/")) or k == "images.parquet"]
    assert kept and all(after[k] == before[k] for k in kept)
    assert "metrics.parquet" in after and "metrics.parquet" not in before
    lines = [ln for ln in launches["C"]["stderr"].splitlines() if ln.startswith("lycobench: SLURM job")]
    assert lines and "1 done" in lines[-1] and "elapsed" in lines[-1]


@pytest.mark.slurm
def test_a_finished_sweep_submits_nothing_and_the_report_comes_from_the_submitter(launches):
    d = launches["D"]
    assert d["rc"] == 0 and d["jobs"] == [] and "all 4 runs are done already" in d["stderr"]
    assert launches["after_D"] == launches["after_C"]
    sweep = launches["sweep"]
    report = (sweep / "report" / "index.html").stat().st_mtime_ns
    assert report > max((run_dir(sweep, *c) / "metrics.parquet").stat().st_mtime_ns for c in CELLS)
    logs = list((sweep / "logs" / "sweep" / ".submitit").rglob("*_log.*"))
    assert logs and not any("report:" in p.read_text(errors="replace") for p in logs), "tasks build no report"


# --- without a cluster ------------------------------------------------------------------------------


def test_squeue_lines_are_parsed():
    pad = " " * 20  # squeue pads a field with a width to that width
    text = f"41_0|RUNNING|None{pad}|0|\n41_1|PENDING|BeginTime{pad}|1|\n41_2|CANCELLED by 0|None{pad}|0|\n42|COMPLETED|None|0|\n\n"
    assert queue.parse_squeue(text) == {
        "41_0": ("RUNNING", "None", 0),
        "41_1": ("PENDING", "BeginTime", 1),
        "41_2": ("CANCELLED", "None", 0),
        "42": ("COMPLETED", "None", 0),
    }
    assert {"PENDING", "REQUEUED", "RUNNING", "COMPLETING"} <= queue.ACTIVE
    assert not {"COMPLETED", "FAILED", "CANCELLED", "OUT_OF_MEMORY", "TIMEOUT"} & queue.ACTIVE


def test_progress_lines_count_tasks_and_requeues():
    import io

    out = io.StringIO()
    p = Progress("41", 3, out=out)
    p.update({"41_0": "running", "41_1": "pending", "41_2": "pending"})
    p.update({"41_0": "running", "41_1": "pending", "41_2": "pending"})  # unchanged: no new line
    p.update({"41_0": "pending", "41_1": "running", "41_2": "done"}, requeued=1)  # 41_0 went back
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("lycobench: SLURM job 41 (3 tasks): 2 pending, 1 running, 0 done, 0 failed;")
    assert "1 requeue(s)" in lines[1] and lines[1].endswith("elapsed")


def test_the_jobs_record_names_the_last_task_of_each_cell(tmp_path):
    record.add_job(tmp_path, "7", {"7_0": ("a", 1), "7_1": ("b", 1)})
    record.add_job(tmp_path, "9", {"9_0": ("b", 1)})
    assert record.latest_tasks(tmp_path) == {("a", 1): "7_0", ("b", 1): "9_0"}
    assert json.loads(record.path_of(tmp_path).read_text())["jobs"][1]["tasks"] == {"9_0": ["b", 1]}
