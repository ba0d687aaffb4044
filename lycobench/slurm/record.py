"""The SLURM jobs a sweep submitted, on disk (<sweep>/logs/slurm-jobs.json), so that `status` can name
the task of every queued or running cell and a second launch can see that the first one is still busy.
A log, not a result: the report never reads it."""

from __future__ import annotations

import time
from pathlib import Path

from ..store import atomic_write_json, read_json
from . import queue


def path_of(sweep_dir: Path) -> Path:
    return Path(sweep_dir) / "logs" / "slurm-jobs.json"


def read(sweep_dir: Path) -> list[dict]:
    """Every submission, oldest first: {"job", "submitted", "tasks": {"<job>_<i>": [cell, seed]}}."""
    try:
        return list(read_json(path_of(sweep_dir)).get("jobs", []))
    except (FileNotFoundError, ValueError):
        return []


def add_job(sweep_dir: Path, job_id: str, tasks: dict[str, tuple[str, int]]) -> None:
    jobs = read(sweep_dir)
    jobs.append(
        {
            "job": str(job_id),
            "submitted": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "tasks": {t: [c, int(s)] for t, (c, s) in tasks.items()},
        }
    )
    atomic_write_json(path_of(sweep_dir), {"jobs": jobs})


def latest_tasks(sweep_dir: Path) -> dict[tuple[str, int], str]:
    """(cell, seed) -> the SLURM task that last ran it."""
    out = {}
    for job in read(sweep_dir):
        for task, (cell, seed) in job["tasks"].items():
            out[(cell, int(seed))] = task
    return out


def active_jobs(sweep_dir: Path) -> list[str]:
    """The sweep's jobs that still have a task queued or running (an unanswered query counts as busy:
    launching twice onto the same run folders is worse than waiting)."""
    jobs = [j["job"] for j in read(sweep_dir)]
    if not jobs:
        return []
    try:
        states = queue.task_states(jobs)
    except RuntimeError:
        return jobs if queue.available() else []
    return sorted({t.split("_")[0] for t, task in states.items() if task.state in queue.ACTIVE})


def cell_states(sweep_dir: Path) -> dict[tuple[str, int], tuple[str, queue.Task]]:
    """(cell, seed) -> (task id, its Task) for the cells whose last task the queue still lists;
    empty when there is no record or no answer (status then says what the run folders say)."""
    tasks = latest_tasks(sweep_dir)
    if not tasks or not queue.available():
        return {}
    try:
        states = queue.task_states(sorted({t.split("_")[0] for t in tasks.values()}))
    except RuntimeError:
        return {}
    return {cell: (t, states[t]) for cell, t in tasks.items() if t in states}
