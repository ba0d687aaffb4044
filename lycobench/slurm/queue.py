"""What the SLURM queue says: task states through squeue, which works without an accounting database
(finished tasks stay listed for the cluster's MinJobAge, 5 minutes by default)."""

from __future__ import annotations

import shutil
import subprocess

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


def task_states(job_ids: list[str], timeout: float = 60) -> dict[str, tuple[str, str]]:
    """{"<job>_<task>": (state, reason)} of every task of these array jobs that the queue still lists.

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
        "--format=%i|%T|%r",
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


def parse_squeue(text: str) -> dict[str, tuple[str, str]]:
    states = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 3 and parts[0]:
            task, state, reason = parts
            states[task] = (state.split()[0], reason)  # "CANCELLED by 0" -> CANCELLED
    return states


def cancel_hint(job_id: str) -> str:
    return f"watch it with `squeue -j {job_id}`, stop it with `scancel {job_id}`"
