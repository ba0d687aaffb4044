"""What a report says about where it comes from, and the record that lets a published report stand alone.

``provenance`` is the block at the top of the page: date, git sha, lycobench version, base model (and the
hash of its manifest), machine, sweep, run time. ``write_record`` writes ``sweep.json`` beside the page:
the sweep's manifest without machine paths, the provenance, and every run's state at build time, so
``status`` can read a published report (results/reference/<sweep>) that has no run folders.
"""

from __future__ import annotations

import datetime
import re
from pathlib import Path

from ..config import PROJECT_ROOT
from ..store import STAGES, read_json, run_seconds, stage_seconds

RECORD = "sweep.json"
FORMAT = "lycobench.published-report/1"
_ABSOLUTE = re.compile(r"^(/|~|[A-Za-z]:[\\/])")


def public(obj, sweep_dir: Path):
    """``obj`` with machine paths removed: an absolute path inside the checkout becomes relative to it, one
    inside the sweep folder ``<sweep>/...``, any other ``<local>/<its name>``."""
    if isinstance(obj, dict):
        return {k: public(v, sweep_dir) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [public(v, sweep_dir) for v in obj]
    if not isinstance(obj, str) or not _ABSOLUTE.match(obj):
        return obj
    p = Path(obj).expanduser()
    for root, label in ((Path(sweep_dir).resolve(), "<sweep>"), (PROJECT_ROOT, "")):
        if p.is_relative_to(root):
            rel = p.relative_to(root).as_posix()
            return f"{label}/{rel}" if label else (rel or ".")
    return f"<local>/{p.name}"


def provenance(sweep_dir: Path, finished: list[dict], unfinished: list[dict]) -> dict:
    """Where the numbers come from; fields a sweep did not record are 'not recorded'."""
    manifest = _manifest(sweep_dir)
    missing = "not recorded"
    versions = manifest.get("versions", {})
    machine = manifest.get("machine", {})
    model = manifest.get("base_model") or {}
    # a run's time counts when every stage's time was recorded (runs that only redid their evaluation
    # before the times were kept lost the rest); the report says how many runs the sum covers
    whole = [r for r in finished if set(STAGES) <= set(stage_seconds(r["root"]) or {})]
    seconds = [s for s in (run_seconds(r["root"]) for r in whole) if s]
    return {
        "sweep": manifest.get("sweep", {}).get("name", Path(sweep_dir).name),
        "built": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "git": manifest.get("git", missing),
        "lycobench": versions.get("lycobench", missing),
        "torch": versions.get("torch", missing),
        "base_model": model.get("name") or manifest.get("config", {}).get("model", {}).get("name", missing),
        "base_model_manifest_sha256": model.get("manifest_sha256") or missing,
        "machine": (
            f"{machine.get('platform', '?')}, {machine.get('cpus', '?')} CPUs"
            + (f", {machine['device']}" if machine.get("device") else "")
            if machine
            else missing
        ),
        "runs": f"{len(finished)} finished, {len(unfinished)} not finished",
        "run_seconds": round(sum(seconds), 1) if seconds else None,
        "run_seconds_runs": f"{len(seconds)} of {len(finished)} finished runs",
    }


def write_record(out: Path, sweep_dir: Path, finished: list[dict], unfinished: list[dict], prov: dict) -> str:
    """The text of ``sweep.json`` (written by the caller with the report's other files)."""
    import json

    runs = [
        {
            "cell": r["cell"],
            "seed": r["seed"],
            "state": "done",
            "cause": "",
            "seconds": run_seconds(r["root"]),
        }
        for r in finished
    ]
    runs += [
        {"cell": u["cell"], "seed": u["seed"], "state": u["status"], "cause": u["cause"], "error": u["error"]}
        for u in unfinished
    ]
    manifest = _manifest(sweep_dir)
    manifest.get("machine", {}).pop("host", None)
    record = {
        "format": FORMAT,
        "provenance": prov,
        "manifest": public(manifest, sweep_dir),
        "runs": sorted(runs, key=lambda r: (r["cell"], r["seed"])),
    }
    return json.dumps(record, indent=1, sort_keys=True, default=str) + "\n"


def read_record(folder: Path) -> dict | None:
    """The record of a published report folder, or None when ``folder`` holds none."""
    path = Path(folder) / RECORD
    if not path.is_file():
        return None
    record = read_json(path)
    if record.get("format") != FORMAT:
        raise ValueError(f"{path}: not a published-report record ({FORMAT}); rebuild the report")
    return record


def _manifest(sweep_dir: Path) -> dict:
    path = Path(sweep_dir) / "manifest.json"
    return read_json(path) if path.is_file() else {}
