"""`python -m lycobench status <sweep-dir>`: done / running / failed / pending runs, causes, time left."""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import socket
import sys
from pathlib import Path

from .store import read_json, run_seconds


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def classify_unfinished(entry: dict) -> str:
    """An incomplete run is 'running' when its process is alive on this host, else 'interrupted'."""
    root = entry.get("root")
    if entry["status"] != "incomplete" or root is None:
        return entry["status"]
    info = read_json(Path(root) / "run.json")
    owner = info.get("owner", {})
    if owner.get("host") == socket.gethostname() and owner.get("pid") and pid_alive(int(owner["pid"])):
        return "running"
    if owner.get("host") not in (None, socket.gethostname()):
        return "running?"  # on another machine: cannot tell from here
    return "interrupted"


def summarize(sweep_dir: Path, check_settings: bool = False) -> dict:
    """``check_settings``: also compare each finished run's stage keys with what the sweep's configuration
    gives today (``mark_stale``): composes the sweep, loads no model."""
    from .store import scan

    finished, unfinished = scan(sweep_dir)
    rows = [
        {
            "cell": f["cell"],
            "seed": f["seed"],
            "state": "done",
            "cause": "",
            "seconds": run_seconds(f["root"]),
        }
        for f in finished
    ]
    for u in unfinished:
        state = classify_unfinished(u)
        cause = u["cause"] if state in ("failed",) else ""
        rows.append(
            {
                "cell": u["cell"],
                "seed": u["seed"],
                "state": state,
                "cause": cause,
                "error": u.get("error", ""),
                "seconds": None,
            }
        )
    with_slurm_jobs(sweep_dir, rows)
    if check_settings:
        mark_stale(sweep_dir, rows, finished)
    done_secs = [r["seconds"] for r in rows if r["state"] in ("done", "stale") and r["seconds"]]
    left = sum(
        1 for r in rows if r["state"] in ("pending", "queued", "interrupted", "running", "running?", "stale")
    )
    eta = (sum(done_secs) / len(done_secs)) * left if done_secs else None
    counts = {}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    return {
        "rows": sorted(rows, key=lambda r: (r["cell"], r["seed"])),
        "counts": counts,
        "eta_seconds": eta,
        "left": left,
    }


def mark_stale(sweep_dir: Path, rows: list[dict], finished: list[dict]) -> None:
    """A finished run whose recorded stage keys differ from those the sweep's configuration gives now
    (conf/, concepts, templates, model or encoder files changed since) is 'stale': a rerun of the sweep
    redoes it from the first stage whose key changed. Without this, status would call 'done' what the
    next rerun recomputes."""
    from .cell import Cell
    from .store import STAGES
    from .sweep import preflight

    path = sweep_dir / "manifest.json"
    manifest = read_json(path) if path.is_file() else {}  # `run` writes no manifest: nothing to compose
    if "overrides" not in manifest:
        return
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # the sweep's own notes (twins) are not status
            cfg, cells, concepts = preflight(list(manifest["overrides"]))
    except Exception as e:  # noqa: BLE001 - any configuration error: say so, keep the marker view
        print(f"lycobench: settings not checked (the sweep does not compose now: {e})", file=sys.stderr)
        return
    recorded = {(f["cell"], f["seed"]): f["keys"] for f in finished}  # as scan read them from run.json
    for r in rows:
        key = (r["cell"], r["seed"])
        if r["state"] != "done" or r["cell"] not in cells:
            continue
        seeded = cells[r["cell"]].copy()
        seeded.seed = int(r["seed"])
        now = Cell(seeded, sweep_dir, concepts.get(tuple(seeded.concepts))).keys
        changed = [s for s in STAGES if now[s] != recorded.get(key, {}).get(s)]
        if changed:
            r["state"] = "stale"
            r["cause"] = f"{changed[0]} settings changed since it ran: a rerun redoes it from {changed[0]}"


def with_slurm_jobs(sweep_dir: Path, rows: list[dict]) -> None:
    """Unfinished runs of a sweep launched on SLURM: their task and its state as squeue reports it. A
    waiting task makes the run 'queued', a running one 'running' (whatever its folder says)."""
    from .slurm import queue
    from .slurm.record import cell_states

    if all(r["state"] == "done" for r in rows):
        return
    states = cell_states(sweep_dir)
    for r in rows:
        task = states.get((r["cell"], r["seed"]))
        if task is None or r["state"] == "done":
            continue
        job, (state, reason, restarts) = task
        waiting = state in queue.WAITING
        r["slurm"] = f"SLURM {job} {state}" + (
            f" ({reason})" if waiting and reason not in ("", "None") else ""
        )
        r["slurm"] += f", requeued {restarts}x" if restarts else ""
        if state in queue.ACTIVE:
            r["state"] = "queued" if waiting else "running"


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown (no finished run yet)"
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="python -m lycobench status",
        description=__doc__.split(":", 1)[1].strip()
        + " Also reads a published report folder (results/reference/<sweep>): the runs as they were when it "
        "was built.",
    )
    p.add_argument("sweep_dir", help="results/<sweep>, or a published report folder")
    p.add_argument(
        "--fast",
        action="store_true",
        help="read the runs' markers only; skip composing the sweep to find runs whose settings changed "
        "since they finished (stale: a rerun redoes them)",
    )
    args = p.parse_args(argv)
    sweep_dir = Path(args.sweep_dir)
    # `run` writes runs/ without a manifest (it runs no sweep): its folder is read the same way
    if (sweep_dir / "manifest.json").is_file() or (sweep_dir / "runs").is_dir():
        s = summarize(sweep_dir, check_settings=not args.fast)
        print(f"{sweep_dir}: " + ", ".join(f"{n} {state}" for state, n in sorted(s["counts"].items())))
    else:
        from .report.published import RECORD, read_record

        try:
            record = read_record(sweep_dir)
        except ValueError as e:
            print(f"lycobench: error: {e}", file=sys.stderr)
            return 2
        if record is None:
            print(
                f"lycobench: error: {sweep_dir} has neither manifest.json nor runs/ (a results folder) nor "
                f"{RECORD} (a published report): pass results/<sweep> or a report folder",
                file=sys.stderr,
            )
            return 2
        s = summarize_record(record)
        prov = record["provenance"]
        print(
            f"{sweep_dir}: published report of sweep {prov['sweep']!r} (built {prov['built']}, git "
            f"{prov['git']}); the runs as they were then: "
            + ", ".join(f"{n} {state}" for state, n in sorted(s["counts"].items()))
        )
    for r in s["rows"]:
        extra = f"  {r['cause']}: {r.get('error', '')}" if r["state"] == "failed" else ""
        extra = f"  {r['cause']}" if r["state"] == "stale" else extra
        secs = f"  {r['seconds']:.0f}s" if r["seconds"] else ""
        job = f"  {r['slurm']}" if r.get("slurm") else ""
        print(f"  {r['state']:<12} {r['cell']} seed={r['seed']}{secs}{job}{extra}")
    if s["left"]:
        print(
            f"time left (sequential, from the mean time of finished runs): {fmt_duration(s['eta_seconds'])}"
        )
    return 1 if s["counts"].get("failed") else 0


def summarize_record(record: dict) -> dict:
    """``summarize``'s answer for a published report, from the run states it recorded."""
    rows = [
        {**r, "seconds": r.get("seconds") if r["state"] == "done" else None, "error": r.get("error", "")}
        for r in record["runs"]
    ]
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    return {"rows": rows, "counts": counts, "eta_seconds": None, "left": 0}
