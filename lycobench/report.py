"""Rebuild a sweep's report from its files alone: metrics tables (CSV, Markdown) and the failed cells."""

from __future__ import annotations

import json
from pathlib import Path

from .store import atomic_write_text, read_json


def scan(sweep_dir: Path) -> tuple[list[dict], list[dict]]:
    """(finished runs, unfinished runs) found on disk; each entry has cell, seed, run dir, status, cause."""
    from .cell import STAGES

    finished, unfinished = [], []
    expected = _expected_cells(sweep_dir)
    seen = set()
    for run_json in sorted((sweep_dir / "runs").glob("*/seed=*/run.json")):
        root = run_json.parent
        info = read_json(run_json)
        cell, seed = info["cell"], int(info["seed"])
        seen.add((cell, seed))
        entry = {"cell": cell, "seed": seed, "root": root, "factors": info.get("factors", {})}
        markers_ok = all(_marker_ok(root, s, info.get("keys", {}).get(s)) for s in STAGES)
        if (root / "FAILED").is_file():
            text = (root / "FAILED").read_text(encoding="utf-8")
            cause = text.splitlines()[0].removeprefix("cause: ") if text else "bug"
            last = [ln for ln in text.strip().splitlines() if ln.strip()]
            unfinished.append(
                {**entry, "status": "failed", "cause": cause, "error": last[-1] if last else ""}
            )
        elif markers_ok:
            finished.append(entry)
        else:
            unfinished.append(
                {**entry, "status": "incomplete", "cause": "interrupted or running", "error": ""}
            )
    for cell, seed in sorted(expected - seen):
        unfinished.append(
            {
                "cell": cell,
                "seed": seed,
                "root": None,
                "status": "pending",
                "cause": "not started",
                "error": "",
            }
        )
    return finished, unfinished


def _marker_ok(root: Path, stage: str, key: str | None) -> bool:
    from .store import is_done

    return key is not None and is_done(root / ".done" / f"{stage}.json", key, root)


def _expected_cells(sweep_dir: Path) -> set[tuple[str, int]]:
    manifest = sweep_dir / "manifest.json"
    if not manifest.is_file():
        return set()
    m = read_json(manifest)
    return {(c, int(s)) for c in m["sweep"]["configs"] for s in m["sweep"]["seeds"]}


def summary_table(df):
    """Mean and std over seeds of each metric, averaged over leaves, per configuration x checkpoint x prompt type."""
    per_seed = df.groupby(["cell", "seed", "step", "prompt_type", "metric"], as_index=False)["value"].mean()
    agg = (
        per_seed.groupby(["cell", "step", "prompt_type", "metric"])["value"]
        .agg(["mean", "std", "count"])
        .reset_index()
    )
    return agg.rename(columns={"count": "n_seeds"})


def markdown(df, floatfmt: str = ".4f") -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in df.itertuples(index=False):
        cells = [format(v, floatfmt) if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def build_report(sweep_dir: Path) -> tuple[Path, list[dict]]:
    """Write report/ under the sweep folder; returns (report dir, unfinished runs)."""
    import pandas as pd

    sweep_dir = Path(sweep_dir)
    if not (sweep_dir / "runs").is_dir() and not (sweep_dir / "manifest.json").is_file():
        raise FileNotFoundError(
            f"{sweep_dir} is not a sweep folder (no manifest.json, no runs/): pass results/<sweep>"
        )
    finished, unfinished = scan(sweep_dir)
    out = sweep_dir / "report"
    frames = []
    for r in finished:
        m = pd.read_parquet(r["root"] / "metrics.parquet")
        m.insert(0, "seed", r["seed"])
        m.insert(0, "cell", r["cell"])
        for k, v in r["factors"].items():
            m[f"factor_{k}"] = v
        frames.append(m)
    metrics = (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(columns=["cell", "seed", "step", "prompt_type", "metric", "value"])
    )
    metrics = (
        metrics.sort_values(["cell", "seed", "step", "leaf", "prompt_type", "metric"], ignore_index=True)
        if len(metrics)
        else metrics
    )
    _write_if_changed(out / "metrics.csv", metrics.to_csv(index=False))
    summary = summary_table(metrics) if len(metrics) else metrics
    _write_if_changed(out / "summary.csv", summary.to_csv(index=False))
    md = [
        f"# Sweep report: {sweep_dir.name}\n",
        f"{len(finished)} run(s) finished, {len(unfinished)} not finished.\n",
    ]
    if unfinished:
        md.append("\n## Not finished\n\n")
        md.append(
            markdown(
                pd.DataFrame(
                    [{k: u[k] for k in ("cell", "seed", "status", "cause", "error")} for u in unfinished]
                )
            )
        )
    md.append("\n## Metrics (mean over leaves, mean and std over seeds; step 0 = base model)\n\n")
    md.append(markdown(summary) if len(summary) else "no finished runs yet\n")
    _write_if_changed(out / "metrics.md", "".join(md))
    failures = [
        {k: (str(v) if isinstance(v, Path) else v) for k, v in u.items() if k != "factors"}
        for u in unfinished
    ]
    _write_if_changed(out / "failures.json", json.dumps(failures, indent=2, sort_keys=True) + "\n")
    return out, unfinished


def _write_if_changed(path: Path, text: str) -> None:
    """Identical content is not rewritten, so rebuilding an unchanged report touches no file."""
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return
    atomic_write_text(path, text)
