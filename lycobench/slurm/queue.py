"""What the SLURM queue says: task states through squeue, which works without an accounting database
(finished tasks stay listed for the cluster's MinJobAge, 5 minutes by default)."""

from __future__ import annotations

import shutil
import subprocess
from typing import NamedTuple

# States of a task that will still run or is running (a requeued task passes through REQUEUED and
# PENDING again); every other state is final.
WAITING = {"PENDING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "SPECIAL_EXIT", "RESV_DEL_HOLD", "SUSPENDED"}
RUNNING = {"CONFIGURING", "RUNNING", "COMPLETING", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED"}
ACTIVE = WAITING | RUNNING
# The failure cause a cell gets when SLURM ended its task before lycobench could say why.
CAUSES = {
    "OUT_OF_MEMORY": "oom",
    "TIMEOUT": "timeout",
    "DEADLINE": "timeout",
    "PREEMPTED": "preempted",
    "NODE_FAIL": "node_fail",
    "BOOT_FAIL": "node_fail",
    "FAILED": "slurm",
}


def available() -> bool:
    return shutil.which("squeue") is not None


class Task(NamedTuple):
    state: str  # RUNNING, PENDING, COMPLETED, ...
    reason: str  # why it waits ("Resources", "Priority", "BeginTime" after a requeue) or "None"
    restarts: int  # how many times it was requeued


def task_states(job_ids: list[str], timeout: float = 60) -> dict[str, Task]:
    """{"<job>_<task>": Task} for every task of these jobs that the queue still lists ("<job>" for a job
    of one task: submitit submits no array then).

    A job the controller no longer knows is left out; a controller that does not answer raises
    RuntimeError (a transient error: callers retry rather than conclude anything)."""
    if not job_ids:
        return {}
    if not available():
        raise RuntimeError("squeue is not installed: this machine is not a SLURM submit host")
    cmd = [
        "squeue",
        "--noheader",
        "--array",
        "--states=all",
        f"--Format={FORMAT}",
        "--jobs",
        ",".join(job_ids),
    ]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise RuntimeError(f"squeue did not answer within {timeout:.0f} s") from e
    if out.returncode != 0:
        if "Invalid job id" in out.stderr:  # every job has left the controller's memory
            return {}
        raise RuntimeError(f"squeue failed: {out.stderr.strip() or out.returncode}")
    return parse_squeue(out.stdout)


FORMAT = "JobArrayID:|,State:|,Reason:300|,RestartCnt:|"


def parse_squeue(text: str) -> dict[str, Task]:
    states = {}
    for line in text.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) >= 4 and parts[0]:
            task, state, reason, restarts = parts[:4]
            states[task] = Task(state.split()[0], reason, int(restarts) if restarts.isdigit() else 0)
    return states


def cancel_hint(job_id: str) -> str:
    return f"watch it with `squeue -j {job_id}`, stop it with `scancel {job_id}`"
