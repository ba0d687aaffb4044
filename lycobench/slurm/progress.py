"""The submitting process's view of a SLURM sweep: one line whenever the task counts change (and once a
minute while they do not), with the time elapsed since submission."""

from __future__ import annotations

import sys
import time

KINDS = ("pending", "running", "done", "failed", "cancelled")


def elapsed(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


class Progress:
    def __init__(self, job_id: str, n_tasks: int, out=None, every_s: float = 60.0):
        self.job_id, self.n = job_id, n_tasks
        self.out = out if out is not None else sys.stderr
        self.every_s = every_s
        self.t0 = time.monotonic()
        self.last_line, self.last_t = "", float("-inf")

    def update(self, kinds: dict[str, str], requeued: int = 0) -> None:
        """``kinds``: task -> one of KINDS; ``requeued``: the requeues of all tasks so far."""
        counts = {k: sum(1 for v in kinds.values() if v == k) for k in KINDS}
        parts = [
            f"{counts[k]} {k}" for k in KINDS if counts[k] or k in ("pending", "running", "done", "failed")
        ]
        if requeued:
            parts.append(f"{requeued} requeue(s)")
        line = f"lycobench: SLURM job {self.job_id} ({self.n} tasks): " + ", ".join(parts)
        now = time.monotonic()
        if line != self.last_line or now - self.last_t >= self.every_s:
            print(f"{line}; {elapsed(now - self.t0)} elapsed", file=self.out, flush=True)
            self.last_line, self.last_t = line, now
