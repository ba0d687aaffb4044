"""The report folder's cache (report/.cache.json), content keys of frames, and writes that leave unchanged
files untouched, so rebuilding an unchanged report rewrites nothing."""

from __future__ import annotations

import gzip
import io
import json
import re
import sys
from pathlib import Path

from ..store import atomic_write_text, content_key, read_json

MANAGED = ("plots", "shap", "grids")  # report/ sub-folders whose files are all made (and removed) here


COMPACT_GZIP_BYTES = 256 * 1024  # compact reports gzip tables above this size


class Cache:
    """report/.cache.json: artifact (path under report/) -> content key of its inputs. ``compact``: the
    publishing form (big tables gzipped, figures as palette PNGs), for a report kept in git."""

    def __init__(self, out: Path, compact: bool = False):
        self.out = out
        self.compact = compact
        self.files: dict[str, str] = {}  # table name -> the file written for it (``name`` or ``name.gz``)
        self.path = out / ".cache.json"
        try:
            self.old = read_json(self.path)
        except (FileNotFoundError, json.JSONDecodeError):
            self.old = {}
        self.new: dict[str, str] = {}

    def fresh(self, name: str, key: str) -> bool:
        """True when ``name`` exists and was made from the same inputs; records it either way."""
        self.new[name] = key
        return self.old.get(name) == key and (self.out / name).is_file()

    def made(self, name: str) -> None:
        """Record a file this build wrote without a key of its own (tables: cheap, rewritten on change)."""
        self.new[name] = ""

    def table(self, name: str, text: str) -> None:
        """Write a table (CSV text) as ``name``, or as ``name.gz`` when compact and large; the other form
        is removed, so a report never holds two versions of one table."""
        gz = self.compact and len(text) > COMPACT_GZIP_BYTES
        written, stale = (f"{name}.gz", name) if gz else (name, f"{name}.gz")
        if gz:  # mtime 0: the same table gives the same bytes
            write_bytes_if_changed(self.out / written, gzip.compress(text.encode(), 9, mtime=0))
        else:
            write_if_changed(self.out / written, text)
        (self.out / stale).unlink(missing_ok=True)
        self.files[name] = written
        self.made(written)

    def complete(self, key: str) -> bool:
        """The whole report was built from these inputs and every file it made is still there."""
        return self.old.get("__report__") == key and all(
            (self.out / n).is_file() for n in self.old if not n.startswith("__")
        )

    def finish(self, key: str) -> None:
        """Drop managed files this build did not make, then record the build."""
        for folder in MANAGED:
            for p in sorted((self.out / folder).rglob("*")) if (self.out / folder).is_dir() else []:
                if p.is_file() and str(p.relative_to(self.out)) not in self.new:
                    p.unlink()
        if self.compact:
            _palette_pngs(self.out, self.new)
        self.new["__report__"] = key
        write_if_changed(self.path, json.dumps(self.new, indent=1, sort_keys=True) + "\n")


def _palette_pngs(out: Path, names) -> None:
    """Compact form of the figures: 256-colour palette PNGs (about a quarter of the bytes for plots and
    image grids); figures already in palette form are left as they are, so a rebuild rewrites nothing."""
    from PIL import Image

    from ..store import atomic_write_bytes

    for name in sorted(n for n in names if n.endswith(".png") and (out / n).is_file()):
        with Image.open(out / name) as im:
            if im.mode == "P":
                continue
            pal = im.convert("RGB").quantize(256, method=Image.Quantize.FASTOCTREE)
        buf = io.BytesIO()
        pal.save(buf, "PNG", optimize=True)
        atomic_write_bytes(out / name, buf.getvalue())


def frame_key(*frames, extra=None) -> str:
    """Content key of data frames (values, row order, column names) plus anything JSON-able."""
    import pandas as pd

    def one(f):
        if f is None:
            return None
        rows = pd.util.hash_pandas_object(f.reset_index(drop=True), index=False).to_numpy()
        return [list(map(str, f.columns)), content_key(rows.tobytes().hex())]

    parts = [one(f) for f in frames]
    return content_key({"frames": parts, "extra": extra, "source": SOURCE[0]})


SOURCE = [""]


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", str(text)).strip("_") or "x"


def write_if_changed(path: Path, text: str) -> None:
    """Identical content is not rewritten, so rebuilding an unchanged report touches no file."""
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return
    atomic_write_text(path, text)


def write_bytes_if_changed(path: Path, data: bytes) -> None:
    from ..store import atomic_write_bytes

    if path.is_file() and path.read_bytes() == data:
        return
    atomic_write_bytes(path, data)


def write_parquet_if_changed(path: Path, df) -> None:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    write_bytes_if_changed(path, buf.getvalue())


def progress(text: str) -> None:
    """A progress line of the report on stderr."""
    print(f"lycobench: report: {text}", file=sys.stderr, flush=True)
