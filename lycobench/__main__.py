"""Command line: python -m lycobench {sweep,run,report,world} ..."""

from __future__ import annotations

import sys

USAGE = """usage: python -m lycobench <command> [args]

commands:
  sweep [overrides]     run the selected sweep (Hydra multirun over configuration x seed), then the report
  run [overrides]       run one cell: cell=<configuration of the sweep> seed=<s>, or the groups as composed
  report <sweep-dir>    rebuild results/<sweep>/report/ from the files alone; exits 1 if runs are not finished
  world <command>       the embedded world (export, oracle-check, ...)
  validate <folder>...  check concept folders and print every problem
  metrics               the metric cards: formula, direction, encoder, conventions
  status <sweep-dir>    done / running / failed / pending runs
  prune <sweep-dir>     delete what finished runs no longer need (checkpoints, images no sheet shows)

`python -m lycobench <command> --help` for details.
"""

OVERRIDES_HELP = """
overrides (Hydra syntax, key=value):
  sweep=<name>          conf/sweep/<name>.yaml (options: {sweep})
  results_dir=<path>    where results go (default ./results); a sweep writes results_dir/<sweep name>/
  <group>=<option>      choose a config group option:
{groups}
  <group>.<key>=<value> change one setting, e.g. train.epochs=10 generate.steps=25 adapter.lr=1e-4
  hydra/launcher=local_parallel  cells in parallel worker processes on this machine (2 by default:
                        hydra.launcher.n_jobs=4; joblib underneath); the quick and paper sweeps use it
  hydra/launcher=slurm           one SLURM array task per unfinished cell, on CPUs (docs/sweeps.md)
  hydra/launcher=slurm_gpu       the same with one GPU per task (hydra.launcher.partition=<name>)

Finished stages are skipped on a rerun; a failing cell writes FAILED and the others go on.
"""


# Commands implemented in their own modules: name -> "module:function(argv) -> exit code".
EXTERNAL = {
    "world": "lycobench.world.cli:main",
    "validate": "lycobench.input_check:main",
    "metrics": "lycobench.metric_cards:main",
    "status": "lycobench.status:main",
    "prune": "lycobench.prune:main",
}


def overrides_help() -> str:
    from .config import GROUPS, group_options

    groups = "\n".join(f"    {g:<10} {', '.join(group_options(g))}" for g in GROUPS if g != "sweep")
    return OVERRIDES_HELP.format(sweep=", ".join(group_options("sweep")), groups=groups)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if argv else 2
    command, args = argv[0], argv[1:]
    if command == "world" and args[:1] == ["check"]:  # a calibration: above the stages, not in the world
        from .calibrate.cli import main as check_main

        return check_main(args[1:])
    wants_help = any(a in ("-h", "--help") for a in args)
    if command == "sweep":
        if wants_help:
            print(
                "usage: python -m lycobench sweep [overrides]\n\nRuns every configuration x seed of the sweep, then writes the report."
            )
            print(overrides_help())
            return 0
        from .sweep import sweep_command

        return _guard(sweep_command, args)
    if command == "run":
        if wants_help:
            print(
                "usage: python -m lycobench run [cell=<name>] [seed=<s>] [overrides]\n\nRuns one cell (train, generate, evaluate) into results_dir/<sweep>/runs/<cell>/seed=<s>/."
            )
            print(overrides_help())
            return 0
        from .sweep import run_command

        return _guard(run_command, args)
    if command == "report":
        opts = dict(a.removeprefix("--").split("=", 1) for a in args if a.startswith("--") and "=" in a)
        flags = {a.removeprefix("--") for a in args if a.startswith("--") and "=" not in a} - {"help"}
        paths = [a for a in args if not a.startswith("-")]
        if wants_help or len(paths) != 1 or set(opts) - {"out", "grids"} or flags - {"compact"}:
            print(
                "usage: python -m lycobench report <results-dir>/<sweep> [--out=DIR] [--grids=TYPE,TYPE] [--compact]\n\n"
                "Rebuilds report/ (index.html, scores.parquet, tables, SHAP, plots, image grids) from the run folders alone.\n"
                "--out: write it elsewhere (a self-contained folder); --grids: image grids for these prompt types only;\n"
                "--compact: the form to publish (tables over 256 KB as .csv.gz, 256-colour PNGs, no every-column tables).\n"
                "Exits 1 when some runs failed or are not finished, and lists them."
            )
            return 0 if wants_help else 2
        from .sweep import report_command

        return _guard(report_command, paths[0], opts.get("out"), opts.get("grids"), "compact" in flags)
    if command in EXTERNAL:
        import importlib

        module, func = EXTERNAL[command].split(":")
        return getattr(importlib.import_module(module), func)(args)
    print(f"unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
    return 2


def _guard(fn, *args) -> int:
    """Input errors end with their message and exit code 2, not a traceback."""
    from .data import InputError

    try:
        return fn(*args)
    except (InputError, FileNotFoundError, KeyError, ValueError) as e:
        print(f"lycobench: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
