"""The Hydra application: one job = one cell (configuration x seed), composed and run from disk state."""

from __future__ import annotations

import logging
import os
import sys

import hydra
from omegaconf import DictConfig

from .config import CONF_DIR, compose_cell, split_overrides, sweep_dir_of


def quiet_libraries() -> None:
    """Offline by default, and no per-component chatter from the libraries: lycobench reports progress."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    logging.getLogger("LyCORIS").setLevel(logging.WARNING)
    try:
        import diffusers
        import transformers

        diffusers.utils.logging.set_verbosity_error()
        diffusers.utils.logging.disable_progress_bar()
        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except ImportError:
        pass


def configure_threads() -> int:
    """Split the machine's cores among parallel workers (joblib's n_jobs), unless LYCOBENCH_THREADS says;
    a SLURM task uses the CPUs it was given (the node may have many more)."""
    import torch
    from hydra.core.hydra_config import HydraConfig

    threads = os.environ.get("LYCOBENCH_THREADS") or os.environ.get("SLURM_CPUS_PER_TASK")
    if threads is None:
        n_jobs = HydraConfig.get().launcher.get("n_jobs") or 1
        n_jobs = os.cpu_count() if n_jobs < 0 else n_jobs
        threads = max(1, (os.cpu_count() or 1) // n_jobs)
    torch.set_num_threads(int(threads))
    return int(threads)


def run_job(cfg: DictConfig) -> str:
    from hydra.core.hydra_config import HydraConfig

    from .cell import Cell
    from .store import STAGES

    common, _ = split_overrides(list(HydraConfig.get().overrides.task))
    cell_cfg = compose_cell(common, cfg.cell, int(cfg.seed), base=cfg)
    cell = Cell(cell_cfg, sweep_dir_of(cell_cfg))
    if all(cell.done(s) for s in STAGES):
        cell.record_done()
        logging.getLogger("lycobench").info(
            "[%s seed=%s] done already: skipped", cell_cfg.cell, cell_cfg.seed
        )
        return "skipped"
    quiet_libraries()
    configure_threads()
    try:
        return cell.run()
    except Exception as e:
        from hydra.types import RunMode

        from .cell import classify, one_line

        if HydraConfig.get().mode != RunMode.RUN or classify(e) != "data":
            raise  # a sweep's launcher collects failures; a bug shows its traceback
        # `run` refused its input: one line, no traceback (FAILED holds it); run_command exits 1
        print(f"lycobench: error: {one_line(e)} (details: {cell.rd.failed})", file=sys.stderr)
        raise SystemExit(1) from None


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def hydra_entry(cfg: DictConfig) -> str:
    return run_job(cfg)
