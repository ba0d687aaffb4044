"""The SLURM launcher of `hydra/launcher=slurm` and `slurm_gpu`: Hydra's submitit launcher, plus what a
sweep needs on a real cluster.

- Finished cells submit no job: the array holds only the cells with an unfinished stage.
- A failing cell fails its task too (Hydra's launcher reports it COMPLETED otherwise, hydra#1928).
- The submitting process watches the queue with squeue (submitit asks sacct, which many clusters and
  every accounting-free one cannot answer), prints progress, and sees tasks that SLURM ended without a
  result (cancelled, out of memory, timed out too often): a killed cell is marked FAILED with the cause.
- The jobs are recorded in the sweep folder for `status` and for the next launch.

A requeued task (preemption, `scontrol requeue`, a time limit reached with max_num_timeout left) runs the
same cell again from the top: the stages finished on disk are skipped and training resumes from its last
checkpoint, so at most the interrupted stage is redone.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as SubmititSlurmLauncher
from omegaconf import OmegaConf

from ..config import compose, compose_cell, split_overrides, sweep_dir_of
from ..store import STAGES, RunDir, atomic_write_text
from . import queue, record
from .progress import Progress


class TaskFailed(RuntimeError):
    """A SLURM task of the sweep ended without finishing its cell."""


class SweepSlurmLauncher(SubmititSlurmLauncher):
    def __call__(self, *args, **kwargs) -> JobReturn:  # on the compute node
        ret = super().__call__(*args, **kwargs)
        if ret.status == JobStatus.FAILED:  # the cell wrote FAILED; SLURM would say COMPLETED without this
            raise ret._return_value
        return ret

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[JobReturn]:
        sweep_dir = sweep_dir_of(self.config)
        cells = [_cell_of(o) for o in job_overrides]
        todo = unfinished(job_overrides)
        returns: list[JobReturn | None] = [
            None if i in todo else JobReturn(list(o), status=JobStatus.COMPLETED, _return_value="skipped")
            for i, o in enumerate(job_overrides)
        ]
        if not todo:
            return returns  # type: ignore[return-value]
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        executor = self._executor()
        params = [
            (
                list(job_overrides[i]),
                "hydra.sweep.dir",
                initial_job_idx + i,
                f"job_id_for_{i}",
                Singleton.get_state(),
            )
            for i in todo
        ]
        jobs = executor.map_array(self, *zip(*params))
        job_id = jobs[0].job_id.split("_")[0]
        record.add_job(sweep_dir, job_id, {j.job_id: cells[i] for j, i in zip(jobs, todo)})
        skipped = len(job_overrides) - len(todo)
        print(
            f"lycobench: submitted SLURM job {job_id}: {len(todo)} task(s), one per unfinished cell"
            + (f" ({skipped} finished cell(s) submit no job)" if skipped else "")
            + f"; logs in {jobs[0].paths.folder.parent}; {queue.cancel_hint(job_id)}",
            file=sys.stderr,
            flush=True,
        )
        try:
            results = Watch(job_id, jobs, [cells[i] for i in todo], sweep_dir).run()
        except KeyboardInterrupt:
            print(
                f"\nlycobench: stopped watching; SLURM job {job_id} goes on ({queue.cancel_hint(job_id)}). "
                "Rerun the same command once it has ended: finished cells are kept.",
                file=sys.stderr,
            )
            raise
        for i, ret in zip(todo, results):
            returns[i] = ret
        return returns  # type: ignore[return-value]

    def _executor(self):
        """submitit's executor with this preset's parameters (as Hydra's launcher builds it)."""
        import submitit
        from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

        params = dict(self.params)
        executor = submitit.AutoExecutor(
            cluster="slurm",
            folder=params.pop("submitit_folder"),
            slurm_max_num_timeout=params.pop("max_num_timeout"),
        )
        common = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{k if k in common else f"slurm_{k}": v for k, v in params.items()})
        return executor


def _cell_of(overrides: Sequence[str]) -> tuple[str, int]:
    _, selectors = split_overrides(list(overrides))
    return selectors.get("cell", "null"), int(selectors.get("seed", -1))


def unfinished(job_overrides: Sequence[Sequence[str]]) -> list[int]:
    """Indices of the jobs whose cell has a stage that is not done (judged as the job itself would)."""
    from ..cell import Cell
    from ..data import load_concepts

    bases, composed, concepts, todo = {}, {}, {}, []
    for i, overrides in enumerate(job_overrides):
        common, selectors = split_overrides(list(overrides))
        name = selectors.get("cell")
        if name in (None, "null"):  # a custom cell: the job decides
            todo.append(i)
            continue
        key = tuple(common)
        if key not in bases:
            bases[key] = compose(common)
        if (key, name) not in composed:
            composed[key, name] = compose_cell(common, name, None, base=bases[key])
        cfg = composed[key, name].copy()
        cfg.seed = int(selectors.get("seed", cfg.seed))
        specs = tuple(cfg.concepts)
        if specs not in concepts:
            concepts[specs] = load_concepts(list(specs))
        cell = Cell(cfg, sweep_dir_of(cfg), concepts[specs])
        if not all(cell.done(s) for s in STAGES):
            todo.append(i)
    return todo


class Watch:
    """Polls the queue until every task of the array has ended; returns one JobReturn per task."""

    def __init__(self, job_id: str, jobs: list, cells: list[tuple[str, int]], sweep_dir: Path):
        self.job_id, self.jobs, self.cells, self.sweep_dir = job_id, jobs, cells, sweep_dir
        self.progress = Progress(job_id, len(jobs))
        self.t0 = time.monotonic()

    def run(self) -> list[JobReturn]:
        ended: dict[int, JobReturn] = {}
        unlisted: dict[int, int] = {}  # polls that found a task ended but its result not (yet) written
        restarts: dict[str, int] = {}
        warned = False
        while len(ended) < len(self.jobs):
            try:
                states = queue.task_states([self.job_id])
            except RuntimeError as e:  # a busy controller: ask again later
                if not warned:
                    print(f"lycobench: {e}; retrying", file=sys.stderr)
                    warned = True
                states = None
            kinds = {}
            for i, job in enumerate(self.jobs):
                task = None if states is None else states.get(job.job_id)
                state = task.state if task else None
                if task:
                    restarts[job.job_id] = task.restarts
                if i in ended:
                    kinds[job.job_id] = _kind(ended[i])
                    continue
                if states is None or state in queue.ACTIVE:
                    kinds[job.job_id] = "pending" if state in queue.WAITING else "running"
                    continue
                outcome = _result(job)
                if outcome is None and state != "CANCELLED":  # the result file may still be on its way
                    unlisted[i] = unlisted.get(i, 0) + 1
                    if unlisted[i] < 3:
                        kinds[job.job_id] = "running"
                        continue
                ended[i] = self._job_return(i, outcome, state)
                kinds[job.job_id] = _kind(ended[i])
            self.progress.update(kinds, sum(restarts.values()))
            if len(ended) < len(self.jobs):
                self._sleep()
        return [ended[i] for i in range(len(self.jobs))]

    def _sleep(self) -> None:
        """Until the next squeue (every 2 s at first, every 30 s after 5 minutes), or until a task
        writes its result (a file check each second, cheaper than asking the controller)."""
        wait = min(30.0, max(2.0, (time.monotonic() - self.t0) / 10))
        results = sum(j.paths.result_pickle.exists() for j in self.jobs)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            time.sleep(1.0)
            if sum(j.paths.result_pickle.exists() for j in self.jobs) != results:
                return

    def _job_return(self, i: int, outcome, state: str | None) -> JobReturn:
        job, (cell, seed) = self.jobs[i], self.cells[i]
        what = f"SLURM task {job.job_id} ({cell} seed={seed})"
        if outcome is not None and outcome[0] == "success":
            return outcome[1]
        if outcome is not None:  # the cell raised: it wrote FAILED itself
            last = [ln for ln in str(outcome[1]).strip().splitlines() if ln.strip()]
            error: Exception = TaskFailed(f"{what} failed: {last[-1] if last else 'no traceback'}")
        elif state == "CANCELLED":
            error = TaskFailed(f"{what} was cancelled; rerun the same command to resume")
        else:
            ended = f"ended {state or 'out of the queue'} without a result (log: {job.paths.stderr})"
            self._mark_failed(cell, seed, queue.CAUSES.get(state or "", "slurm"), f"{what} {ended}")
            error = TaskFailed(f"{what} {ended}")
        return JobReturn([f"cell={cell}", f"seed={seed}"], status=JobStatus.FAILED, _return_value=error)

    def _mark_failed(self, cell: str, seed: int, cause: str, message: str) -> None:
        """SLURM killed the task before the cell could write FAILED: write it, for status and the report."""
        rd = RunDir.of(self.sweep_dir, cell, seed)
        if rd.run_json.is_file():
            atomic_write_text(rd.failed, f"cause: {cause}\n\n{message}\n")


def _result(job):
    """("success", JobReturn) or ("error", traceback) once the task wrote its result file, else None."""
    from submitit.core.utils import pickle_load

    path = job.paths.result_pickle
    if not path.exists():
        return None
    try:
        return pickle_load(path)
    except (EOFError, OSError):  # being written
        return None


def _kind(ret: JobReturn) -> str:
    if ret.status == JobStatus.COMPLETED:
        return "done"
    return "cancelled" if "was cancelled" in str(ret._return_value) else "failed"
