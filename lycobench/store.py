"""The on-disk contract: run-directory layout, atomic writes, content keys and completion markers.

Stages meet on disk. A stage is done only when its marker exists, names the same key (the hash of
everything that determines its output) and every file it lists is still there with the recorded size.
Markers are written last, through a temp file and ``os.replace``, so a kill at any moment leaves
either a complete stage or no marker at all.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

STAGES = ("train", "generate", "evaluate")  # the stages of a run, in order; each leaves a marker
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.=-]{0,127}$")


def safe_name(name: str, what: str = "name") -> str:
    """Reject names that could escape the results folder once joined into a path."""
    if not SAFE_NAME.match(name) or ".." in name:
        raise ValueError(
            f"{what} {name!r} is not a safe file name: use letters, digits, '_', '-', '.', '=' "
            "(no path separators, no '..', at most 128 characters)"
        )
    return name


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def content_key(obj: Any, length: int = 16) -> str:
    """A short stable hash of any JSON-able object (dict order does not matter)."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:length]


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def weights_identity(path: Path) -> dict:
    """Size and hashes of the first and last MiB of each file under ``path`` (or of the file): cheap, changes
    with the weights, and the same in any clone (no modification times)."""
    files = sorted(q for q in path.rglob("*") if q.is_file()) if path.is_dir() else [path]
    out = {}
    for f in files:
        with open(f, "rb") as fh:
            head = fh.read(1 << 20)
            fh.seek(max(0, f.stat().st_size - (1 << 20)))
            tail = fh.read()
        out[str(f.relative_to(path)) if path.is_dir() else f.name] = [
            f.stat().st_size,
            hashlib.sha256(head + tail).hexdigest()[:16],
        ]
    return out


_KILL_COUNTS: dict[str, int] = {}


def kill_point(site: str) -> None:
    """Test hook: LYCOBENCH_KILL="<site>:<n>" SIGKILLs this process at the n-th pass through ``site``.

    Sites: ``write`` (temp file written, not yet renamed), ``replace`` (just renamed into place),
    ``marker`` (a stage's outputs complete, its marker not yet written).
    """
    spec = os.environ.get("LYCOBENCH_KILL")
    if not spec:
        return
    want, _, n = spec.partition(":")
    if want == site:
        _KILL_COUNTS[site] = _KILL_COUNTS.get(site, 0) + 1
        if _KILL_COUNTS[site] == int(n or 1):
            import signal

            os.kill(os.getpid(), signal.SIGKILL)


def atomic_write_with(path: Path, write: Callable[[Path], None]) -> Path:
    """Run ``write(tmp_path)`` on a temp file beside ``path``, fsync it, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        kill_point("write")
        os.replace(tmp, path)
        kill_point("replace")
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    return atomic_write_with(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def atomic_write_parquet(path: Path, df) -> Path:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return atomic_write_bytes(path, buf.getvalue())


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


# --- completion markers -------------------------------------------------------------------------


class RunDir:
    """Paths of one run: ``<results>/<sweep>/runs/<cell>/seed=<s>/``."""

    def __init__(self, root: Path):
        self.root = Path(root)

    @classmethod
    def of(cls, sweep_dir: Path, cell: str, seed: int) -> RunDir:
        return cls(Path(sweep_dir) / "runs" / safe_name(cell, "cell name") / f"seed={int(seed)}")

    config = property(lambda self: self.root / "config.yaml")
    run_json = property(lambda self: self.root / "run.json")
    train_log = property(lambda self: self.root / "train_log.csv")
    checkpoints = property(lambda self: self.root / "checkpoints")
    train_state = property(lambda self: self.root / "train_state.safetensors")  # while training is unfinished
    legacy_train_state = property(lambda self: self.root / "train_state.pt")  # older versions: never read
    images = property(lambda self: self.root / "images")
    images_parquet = property(lambda self: self.root / "images.parquet")
    metrics_parquet = property(lambda self: self.root / "metrics.parquet")
    failed = property(lambda self: self.root / "FAILED")
    done_dir = property(lambda self: self.root / ".done")

    def checkpoint(self, step: int) -> Path:
        return self.checkpoints / f"step-{int(step)}.safetensors"

    def marker(self, stage: str) -> Path:
        return self.done_dir / f"{stage}.json"


def write_marker(marker: Path, key: str, files: list[Path], base: Path, extra: dict | None = None) -> None:
    """Record that a stage with ``key`` produced ``files``; called only after every file is in place."""
    kill_point("marker")
    entries = {str(Path(f).relative_to(base)): Path(f).stat().st_size for f in files}
    atomic_write_json(marker, {"key": key, "files": entries, **(extra or {})})


def is_done(marker: Path, key: str, base: Path, released_ok: bool = False) -> bool:
    """A stage is done when its marker names this key and every listed file exists with its size. With
    ``released_ok``, files the marker records as released (``release``) count as there."""
    try:
        info = read_json(marker)
    except (FileNotFoundError, json.JSONDecodeError):
        return False
    if info.get("key") != key:
        return False
    released = info.get("released", {}) if released_ok else {}
    for rel, size in info.get("files", {}).items():
        if rel in released:
            continue
        p = base / rel
        if not p.is_file() or p.stat().st_size != size:
            return False
    return True


def run_done(root: Path, keys: dict) -> bool:
    """Every stage of the run at ``root`` is done for ``keys``, released files counting as there: a finished
    run stays finished after ``release``, as a whole (any stage to redo needs its inputs back)."""
    return all(
        keys.get(s) is not None and is_done(RunDir(root).marker(s), keys[s], root, released_ok=True)
        for s in STAGES
    )


def release(root: Path, stage: str, files: list[Path]) -> int:
    """Delete ``files`` (listed by ``stage``'s marker) from a finished run, recording them in the marker as
    released; returns the bytes freed. The marker is rewritten first, so a kill leaves the files listed
    as released but still there, which is consistent either way."""
    marker = RunDir(root).marker(stage)
    info = read_json(marker)
    listed = info.get("files", {})
    rels = [str(Path(f).relative_to(root)) for f in files]
    unknown = [r for r in rels if r not in listed]
    if unknown:
        raise ValueError(f"{marker}: does not list {unknown[0]}; only a stage's own files can be released")
    released = dict(info.get("released", {}))
    released.update({r: listed[r] for r in rels})
    atomic_write_json(marker, {**info, "released": released})
    freed = 0
    for r in rels:
        p = Path(root) / r
        if p.is_file():
            freed += p.stat().st_size
            p.unlink()
    return freed


def find_donor(results_dir: Path, stage: str, key: str, exclude: Path) -> Path | None:
    """A run of any sweep under ``results_dir`` whose ``stage`` is done with this very key and still holds
    all its files (none released): its output is the output this run would compute, so it can be adopted
    instead of recomputed (a paper sweep after the default study shares ten trainings with it)."""
    for marker in sorted(Path(results_dir).glob(f"*/runs/*/seed=*/.done/{stage}.json")):
        root = marker.parent.parent
        if root.resolve() == Path(exclude).resolve():
            continue
        try:
            info = read_json(marker)
        except (OSError, json.JSONDecodeError):
            continue
        if info.get("key") == key and not info.get("released") and is_done(marker, key, root):
            return root
    return None


def adopt(donor: Path, root: Path, stage: str) -> None:
    """Give run ``root`` the files of ``donor``'s finished ``stage`` (hard links where the file system allows,
    else copies), then its marker, last: a kill leaves the stage undone, never half adopted. Files are
    only ever replaced whole (atomic writes), so sharing an inode is safe."""
    marker = RunDir(donor).marker(stage)
    info = read_json(marker)
    for rel in info["files"]:
        src, dst = Path(donor) / rel, Path(root) / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(f".{dst.name}.tmp")
        tmp.unlink(missing_ok=True)
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copy2(src, tmp)
        os.replace(tmp, dst)
    atomic_write_json(RunDir(root).marker(stage), info)


# --- scanning a sweep's runs --------------------------------------------------------------------


def scan(sweep_dir: Path) -> tuple[list[dict], list[dict]]:
    """(finished runs, unfinished runs) found on disk; each entry has cell, seed, run dir, status, cause."""
    finished, unfinished = [], []
    expected = _expected_cells(sweep_dir)
    seen = set()
    for run_json in sorted((sweep_dir / "runs").glob("*/seed=*/run.json")):
        root = run_json.parent
        info = read_json(run_json)
        cell, seed = info["cell"], int(info["seed"])
        seen.add((cell, seed))
        entry = {
            "cell": cell,
            "seed": seed,
            "root": root,
            "factors": info.get("factors", {}),
            "keys": info.get("keys") or {},
        }
        markers_ok = run_done(root, entry["keys"])
        if (root / "FAILED").is_file():
            text = (root / "FAILED").read_text(encoding="utf-8")
            cause = text.splitlines()[0].removeprefix("cause: ") if text else "bug"
            lines = [ln for ln in text.strip().splitlines() if ln.strip()]
            # the one-line summary the cell wrote, else (older FAILED files) the traceback's last line
            error = next(
                (ln[7:] for ln in lines[1:2] if ln.startswith("error: ")), lines[-1] if lines else ""
            )
            unfinished.append({**entry, "status": "failed", "cause": cause, "error": error})
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
    return key is not None and is_done(root / ".done" / f"{stage}.json", key, root)


def _expected_cells(sweep_dir: Path) -> set[tuple[str, int]]:
    manifest = sweep_dir / "manifest.json"
    if not manifest.is_file():
        return set()
    m = read_json(manifest)
    return {(c, int(s)) for c in m["sweep"]["configs"] for s in m["sweep"]["seeds"]}


def evaluated_runs(sweep_dir: Path) -> list[tuple[Path, str, int]]:
    """(run folder, cell, seed) of every run whose metrics are current: an evaluate marker valid for the
    evaluate key its run.json records, and no FAILED (metrics left from settings since changed are not
    read), whatever its other stages say (cell and seed from run.json, else from the folder names)."""
    out = []
    for path in sorted(Path(sweep_dir).glob("runs/*/seed=*/metrics.parquet")):
        root = path.parent
        info = read_json(root / "run.json") if (root / "run.json").is_file() else {}
        key = (info.get("keys") or {}).get("evaluate")
        if (root / "FAILED").is_file() or not _marker_ok(root, "evaluate", key):
            continue
        out.append(
            (root, info.get("cell", root.parent.name), int(info.get("seed", root.name.removeprefix("seed="))))
        )
    return out


def stage_seconds(root: Path) -> dict[str, float] | None:
    """The seconds each stage of a run took (run.json's ``seconds``), None when there is no record."""
    try:
        return read_json(Path(root) / "run.json").get("seconds") or {}
    except (OSError, ValueError):
        return None


def run_seconds(root: Path) -> float | None:
    """The seconds a run's stages took (the sum of run.json's ``seconds``), None when not recorded."""
    seconds = stage_seconds(root)
    return None if seconds is None else float(sum(seconds.values()))
