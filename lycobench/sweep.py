"""The sweep command: preflight, manifest, Hydra multirun over (configuration x seed), report.

Hydra launches the jobs (any launcher: basic, joblib, submitit); results live on disk, keyed by cell
and seed, so a relaunch, a requeue or another launcher finds the finished work and skips it.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path

from omegaconf import OmegaConf, open_dict

from .config import (
    PROJECT_ROOT,
    check_collisions,
    compose,
    compose_cell,
    quote_overrides,
    split_overrides,
    sweep_dir_of,
)
from .slurm.record import active_jobs
from .store import atomic_write_text

log = logging.getLogger("lycobench")


def git_sha() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=5
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=5
        )
        sha = out.stdout.strip() or "unknown"
        return sha + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def preflight(common: list[str]):
    """Compose every cell and validate every input before any compute; returns the sweep config and the
    composed configuration of every cell (first seed)."""
    from .data import load_concepts
    from .evaluate import preflight as check_evaluation

    cfg = compose(common)
    check_collisions(common, cfg)
    if not cfg.sweep.configs or not cfg.sweep.seeds:
        raise ValueError(f"conf/sweep/{cfg.sweep.name}.yaml declares no configurations or no seeds")
    drop_twins(cfg)
    concept_sets, generate_cfgs, cells = set(), {}, {}
    for cell in cfg.sweep.configs:
        cells[cell] = cell_cfg = compose_cell(common, cell, int(cfg.sweep.seeds[0]), base=cfg)
        concept_sets.add(tuple(cell_cfg.concepts))
        generate_cfgs.setdefault(
            (tuple(cell_cfg.concepts), OmegaConf.to_yaml(cell_cfg.generate, resolve=True)), cell_cfg.generate
        )
    concepts = {specs: load_concepts(list(specs)) for specs in concept_sets}
    check_prompts(generate_cfgs, concepts)
    check_evaluation(cfg)  # metric configuration and encoder weight files; loads no model
    return cfg, cells, concepts


def drop_twins(cfg) -> dict:
    """Cells the model declares twins of another cell of the sweep (``model.twin_cells``: they build the
    very same network there) are not run: a duplicate would cost its training and enter every comparison
    as a built-in zero. They leave ``sweep.configs`` and are recorded in ``sweep.twins`` (the manifest)."""
    declared = OmegaConf.select(cfg, "model.twin_cells", default=None) or {}
    twins = {c: t for c, t in declared.items() if c in cfg.sweep.configs and t in cfg.sweep.configs}
    if twins:
        with open_dict(cfg):
            for c in twins:
                del cfg.sweep.configs[c]
            cfg.sweep.twins = twins
        same = ", ".join(f"{c} (= {t})" for c, t in twins.items())
        print(
            f"lycobench: not run, the same network as another cell on {cfg.model.name}: {same}",
            file=sys.stderr,
        )
    return twins


def pending(cfg, cells: dict, concepts: dict | None = None) -> list[str]:
    """The configurations with an unfinished seed, judged from the run folders' markers (no model is
    loaded): a rerun of a finished sweep launches no job at all. Each job checks its markers again.
    ``concepts``: preflight's loaded concepts per concept list (loaded again when absent)."""
    from .cell import Cell
    from .store import STAGES

    out = []
    for name, cell_cfg in cells.items():
        for seed in cfg.sweep.seeds:
            seeded = cell_cfg.copy()
            seeded.seed = int(seed)
            loaded = (concepts or {}).get(tuple(seeded.concepts))
            cell = Cell(seeded, sweep_dir_of(seeded), loaded)
            if all(cell.done(s) for s in STAGES):
                cell.record_done()  # its record may still describe an abandoned attempt with other settings
            elif name not in out:
                out.append(name)
    return out


def check_prompts(generate_cfgs: dict, concepts: dict) -> None:
    """Every cell's prompt plan can be built (template files exist and parse), before any compute."""
    from .data import all_leaves
    from .prompts import plan_for

    for (specs, _), gcfg in generate_cfgs.items():
        plan_for(gcfg, all_leaves(concepts[specs]))


def write_manifest(cfg, common: list[str]) -> Path:
    """results/<sweep>/manifest.json: the resolved sweep, versions, code and machine. Rewritten only on change."""
    from .cell import versions
    from .models import base_model_record

    path = sweep_dir_of(cfg) / "manifest.json"
    resolved = OmegaConf.to_container(cfg, resolve=True)
    resolved.pop("hydra", None)
    manifest = {
        "sweep": resolved["sweep"],
        "overrides": common,
        "config": resolved,
        "versions": versions(),
        "git": git_sha(),
        "base_model": base_model_record(cfg.model),
        "machine": {"host": socket.gethostname(), "platform": platform.platform(), "cpus": os.cpu_count()},
    }
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        atomic_write_text(path, text)
    return path


def launch(common: list[str], cfg, names: list[str]) -> None:
    """Hydra multirun over the configurations ``names`` x seeds; raises SystemExit when a job failed."""
    from .hydra_app import hydra_entry

    cells = ",".join(names)
    seeds = ",".join(str(int(s)) for s in cfg.sweep.seeds)
    argv = [*common, f"cell={cells}", f"seed={seeds}", "--multirun"]
    old = sys.argv
    sys.argv = ["lycobench", *argv]
    try:
        hydra_entry()
    finally:
        sys.argv = old
        release_idle_workers()


def release_idle_workers() -> None:
    """Shut down the worker processes joblib's loky backend (the local_parallel launcher) keeps alive
    after the last job for reuse: each still holds that job's models and caches (~1 GB on the world),
    memory the report that follows needs (with them, the quick sweep's process tree peaked at 4.7 GB).
    Reads loky's module-level executor; a no-op under other launchers."""
    loky = sys.modules.get("joblib.externals.loky.reusable_executor")
    executor = getattr(loky, "_executor", None)
    if executor is not None:
        executor.shutdown(wait=True, kill_workers=True)


def sweep_command(overrides: list[str]) -> int:
    from .report import build_report

    common, selectors = split_overrides(quote_overrides(overrides))
    if selectors:
        print(
            f"error: the sweep chooses cells itself; drop {', '.join(f'{k}=' for k in selectors)} "
            "(use `python -m lycobench run cell=<name> seed=<s>` for one cell)",
            file=sys.stderr,
        )
        return 2
    cfg, cells, concepts = preflight(common)
    sweep_dir = sweep_dir_of(cfg)
    busy = active_jobs(sweep_dir)
    if busy:  # two launches on the same run folders would undo each other's work
        print(
            f"error: SLURM job(s) {', '.join(busy)} of this sweep are still queued or running: wait for them "
            f"(squeue -j {','.join(busy)}) or cancel them (scancel {' '.join(busy)}), then run this again",
            file=sys.stderr,
        )
        return 2
    write_manifest(cfg, common)
    n = len(cfg.sweep.configs) * len(cfg.sweep.seeds)
    print(
        f"lycobench: sweep {cfg.sweep.name!r}: {len(cfg.sweep.configs)} configurations x {len(cfg.sweep.seeds)} seeds = {n} runs -> {sweep_dir}",
        file=sys.stderr,
    )
    todo = pending(cfg, cells, concepts)
    if not todo:
        print(f"lycobench: all {n} runs are done already", file=sys.stderr)
    try:
        if todo:
            launch(common, cfg, todo)
    except SystemExit as e:
        if e.code not in (0, None):
            print(
                "lycobench: some runs failed or were cancelled; the others completed (see the report)",
                file=sys.stderr,
            )
    report_dir, unfinished = build_report(sweep_dir)
    print(f"lycobench: report: {report_dir / 'index.html'}")
    if unfinished:
        print(f"lycobench: {len(unfinished)} run(s) not finished:", file=sys.stderr)
        for u in unfinished:
            print(
                f"  {u['cell']} seed={u['seed']}: {u['status']} ({u['cause']}) {u['error']}", file=sys.stderr
            )
        return 1
    return 0


def run_command(overrides: list[str]) -> int:
    """One cell through Hydra's single-run mode; the cell's configuration comes from the sweep file.

    Its inputs are checked first, as a sweep's are (exit 2, nothing written); then it says where the
    run goes, runs it (exit 1 if it fails: FAILED in the run folder says why) and how to read it."""
    from .cell import external_adapter_key
    from .data import load_concepts
    from .evaluate import preflight as check_evaluation
    from .hydra_app import hydra_entry
    from .store import RunDir

    overrides = quote_overrides(overrides)
    common, selectors = split_overrides(overrides)
    cfg = compose(common)
    cell = selectors.get("cell")
    if cell in (None, "null"):
        cell = None
    cell_cfg = compose_cell(common, cell, int(selectors.get("seed", cfg.seed)), base=cfg)
    concepts = load_concepts(list(cell_cfg.concepts))  # every problem of every folder, one error
    check_prompts({(tuple(cell_cfg.concepts), ""): cell_cfg.generate}, {tuple(cell_cfg.concepts): concepts})
    check_evaluation(cell_cfg)
    external_adapter_key(cell_cfg)  # adapter=external: the file exists and is a .safetensors file
    sweep_dir = sweep_dir_of(cell_cfg)
    root = RunDir.of(sweep_dir, cell_cfg.cell, cell_cfg.seed).root
    print(f"lycobench: run {cell_cfg.cell} seed={cell_cfg.seed} -> {root}", file=sys.stderr)
    old = sys.argv
    sys.argv = ["lycobench", *overrides]
    try:
        hydra_entry()
    except SystemExit as e:
        if e.code not in (0, None):
            return int(e.code) if isinstance(e.code, int) else 1
    finally:
        sys.argv = old
    print(
        f"lycobench: results: {root}\n"
        f"  report: python -m lycobench report {sweep_dir}\n"
        f"  status: python -m lycobench status {sweep_dir}"
    )
    return 0


def report_command(
    sweep_dir: str, out: str | None = None, grids: str | None = None, compact: bool = False
) -> int:
    from .report import build_report
    from .report.published import read_record

    folder = Path(sweep_dir)
    record = (
        None if (folder / "manifest.json").is_file() or (folder / "runs").is_dir() else read_record(folder)
    )
    if record is not None:  # a published report: nothing to rebuild from, say what is there
        prov = record["provenance"]
        print(
            f"lycobench: report: {folder / 'index.html'} is a published report of sweep {prov['sweep']!r} "
            f"(built {prov['built']}, git {prov['git']}, {prov['runs']}); it is rebuilt from its sweep "
            "folder: python -m lycobench report results/<sweep> --out=DIR"
        )
        return 0
    grid_types = tuple(t for t in grids.split(",") if t) if grids else None
    report_dir, unfinished = build_report(Path(sweep_dir), Path(out) if out else None, grid_types, compact)
    print(f"lycobench: report: {report_dir / 'index.html'}")
    for u in unfinished:
        print(
            f"  not finished: {u['cell']} seed={u['seed']}: {u['status']} ({u['cause']}) {u['error']}",
            file=sys.stderr,
        )
    return 1 if unfinished else 0
