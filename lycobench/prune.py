"""prune: free the disk that a sweep's finished runs no longer need.

A finished run keeps its scores (metrics.parquet), its record (run.json, config.yaml, train_log.csv,
images.parquet) and the images the report's sheets show; its adapter checkpoints and the other generated
images are deleted and recorded as released in their stages' markers. The run stays finished: reruns skip
it and the report reads it. Any change that makes a stage run again (another metric, another sampler)
trains and generates that run again first, since the files its stages read are gone.
"""

from __future__ import annotations

import argparse
import fcntl
import sys
from pathlib import Path

from .store import RunDir, read_json, release, scan


def prunable(
    sweep_dir: Path, root: Path, keep_types: set[str] | None, checkpoints_only: bool
) -> dict[str, list[Path]]:
    """The files of a finished run that ``prune`` releases, by stage: its checkpoints and (unless
    ``checkpoints_only``) its own images except those the report's sheets show (of ``keep_types`` only,
    when given)."""
    import pandas as pd

    from .report.grids import shown_indices

    rd = RunDir(root)
    out = {"train": [], "generate": []}
    listed = read_json(rd.marker("train")).get("files", {})
    out["train"] = [root / rel for rel in listed if rel.startswith("checkpoints/") and (root / rel).is_file()]
    if checkpoints_only:
        return out
    images = pd.read_parquet(rd.images_parquet)
    keep = set()
    for (_leaf, ptype), g in images.groupby(["leaf", "prompt_type"]):
        if keep_types is None or ptype in keep_types:
            shown = set(shown_indices(g))
            keep |= set(g.loc[g["index"].isin(shown), "path"])
    own = images.loc[images["step"] > 0, "path"]
    out["generate"] = [sweep_dir / p for p in own if p not in keep and (sweep_dir / p).is_file()]
    return out


def prune_sweep(
    sweep_dir: Path, keep_types: set[str] | None = None, checkpoints_only: bool = False, dry_run: bool = False
) -> dict:
    """Prune every finished run of ``sweep_dir`` that no process is running; returns counts and bytes."""
    finished, _ = scan(sweep_dir)
    report = {"runs": 0, "busy": 0, "files": 0, "bytes": 0}
    for r in finished:
        root = r["root"]
        with open(root / ".lock", "a") as lock:
            try:  # the same lock a cell holds while it runs
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                report["busy"] += 1
                continue
            files = prunable(sweep_dir, root, keep_types, checkpoints_only)
            n = sum(len(v) for v in files.values())
            if not n:
                continue
            report["runs"] += 1
            report["files"] += n
            for stage, paths in files.items():
                if dry_run:
                    report["bytes"] += sum(p.stat().st_size for p in paths)
                elif paths:
                    report["bytes"] += release(root, stage, paths)
    return report


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="python -m lycobench prune", description=__doc__.split(":", 1)[1].strip()
    )
    p.add_argument("sweep_dir", help="results/<sweep>")
    p.add_argument(
        "--grids", metavar="TYPES",
        help="keep the shown images of these prompt types only, comma-separated (e.g. trigger,alter, as "
        "`report --grids`); default: every type's",
    )  # fmt: skip
    p.add_argument("--checkpoints-only", action="store_true", help="delete checkpoints, keep every image")
    p.add_argument("--dry-run", action="store_true", help="say what would be freed; delete nothing")
    args = p.parse_args(argv)
    sweep_dir = Path(args.sweep_dir)
    if not (sweep_dir / "runs").is_dir():
        print(f"lycobench: error: {sweep_dir} has no runs/: pass results/<sweep>", file=sys.stderr)
        return 2
    keep = {t.strip() for t in args.grids.split(",") if t.strip()} if args.grids else None
    r = prune_sweep(sweep_dir, keep, args.checkpoints_only, args.dry_run)
    verb = "would free" if args.dry_run else "freed"
    busy = f"; {r['busy']} run(s) being run left alone" if r["busy"] else ""
    print(f"{sweep_dir}: {verb} {r['bytes'] / 2**20:.1f} MiB ({r['files']} files of {r['runs']} runs){busy}")
    return 0
