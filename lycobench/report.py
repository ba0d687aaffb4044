"""Rebuild a sweep's report from its files alone: metric tables, the paper's analysis (normalised scores,
CIs, paired comparisons, CatBoost + SHAP), figures, image grids and report/index.html; lists the runs that
did not finish.

Rebuilding is cheap when nothing changed: the whole report is keyed by the content of its inputs (and this
code), and every figure and SHAP model by the content of its own inputs, in report/.cache.json.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import sys
from pathlib import Path

from .store import atomic_write_text, content_key, file_sha256, read_json, scan


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


# --- loading ---------------------------------------------------------------------------------------------


def _epochs(root: Path) -> dict[int, float]:
    """step -> epoch of each checkpoint, from train_log.csv (a checkpoint is the last step of its epoch)."""
    import pandas as pd

    log = root / "train_log.csv"
    if not log.is_file():
        return {}
    t = pd.read_csv(log, usecols=["step", "epoch"])
    return {int(s): float(e) for s, e in zip(t["step"], t["epoch"])}


def _categories(finished: list[dict]) -> dict[str, str]:
    """concept -> category, read from the concept definitions named in each run's config.yaml."""
    import yaml

    from .analysis import category_of_leaves

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser: ~10x faster
    specs: list[str] = []
    for r in finished:
        cfg = r["root"] / "config.yaml"
        if cfg.is_file():
            specs += list(
                (yaml.load(cfg.read_text(encoding="utf-8"), Loader=loader) or {}).get("concepts") or []
            )
        info = read_json(r["root"] / "run.json")
        specs += list(info.get("provenance", {}).get("concepts", []))
    return category_of_leaves(list(dict.fromkeys(specs)))


def load_metrics(finished: list[dict]):
    """(metrics.csv frame, leaf-level raw frame for the analysis, notes). In the raw frame the base model
    (step 0, present in every run) appears once per model, as cell 'base'."""
    import numpy as np
    import pandas as pd

    from .analysis import EXTRA, FACTORS, ID

    notes: list[str] = []
    legacy, frames = [], []
    categories = _categories(finished)
    for r in finished:
        m = pd.read_parquet(r["root"] / "metrics.parquet")
        lg = m.copy()
        lg.insert(0, "seed", r["seed"])
        lg.insert(0, "cell", r["cell"])
        for k, v in r["factors"].items():
            lg[f"factor_{k}"] = v
        legacy.append(lg)
        epochs = _epochs(r["root"])
        steps = sorted(int(s) for s in m["step"].unique() if s > 0)
        ckpt = {s: i + 1 for i, s in enumerate(steps)}
        if any(s not in epochs for s in steps):
            notes.append(
                f"{r['root']}/train_log.csv: no epoch for some checkpoints; using checkpoint numbers"
            )
            epochs = {s: float(i) for s, i in ckpt.items()}
        m = m.assign(cell=r["cell"], seed=r["seed"])
        m["epoch"] = m["step"].map({**epochs, 0: 0.0}).astype(float)
        m["checkpoint"] = m["step"].map(ckpt).fillna(0).astype(int)
        for f in FACTORS:
            m[f] = r["factors"].get(f)
        for k, v in r["factors"].items():
            if k not in FACTORS:
                m[EXTRA + k] = v
        frames.append(m)
    metrics = (
        pd.concat(legacy, ignore_index=True)
        if legacy
        else pd.DataFrame(columns=["cell", "seed", "step", "leaf", "prompt_type", "metric", "value"])
    )
    if not frames:
        return metrics, None, notes
    raw = pd.concat(frames, ignore_index=True)
    for col, default in (("encoder", ""), ("level", ""), ("n", np.nan)):
        if col not in raw:
            raw[col] = default
    raw["concept"] = raw["leaf"].str.split(".", n=1).str[0]
    raw["subclass"] = raw["leaf"].str.split(".", n=1).str[1]
    if "category" not in raw:
        raw["category"] = raw["concept"].map(categories)
    unknown = sorted(raw.loc[raw["category"].isna(), "concept"].unique())
    if unknown:
        notes.append(
            f"category unknown for concept(s) {', '.join(unknown)} (concept.yaml not found): shown as 'unknown'"
        )
        raw["category"] = raw["category"].fillna("unknown")
    keys = ["model", "leaf", "concept", "subclass", "category", *ID]
    base = raw[raw["step"] == 0]
    spread = base.groupby(keys, dropna=False)["value"].agg(["min", "max"])
    if ((spread["max"] - spread["min"]) > 1e-6).any():
        notes.append("base-model values differ between runs (different images or encoders?): averaged")
    base = base.groupby(keys, dropna=False).agg(value=("value", "mean"), n=("n", "first")).reset_index()
    base = base.assign(cell="base", seed=pd.NA, step=0, epoch=0.0, checkpoint=0)
    for f in FACTORS:
        if f != "model":
            base[f] = "base" if f == "algo" else None
    runs = raw[raw["step"] > 0]
    raw = pd.concat([base, runs], ignore_index=True)
    raw["is_base"] = raw["cell"] == "base"
    raw["seed"] = raw["seed"].astype("Int64")
    extras = sorted(c for c in raw.columns if c.startswith(EXTRA))
    cols = ["cell", "seed", "step", "epoch", "checkpoint", "is_base", *FACTORS, *extras]
    cols += ["leaf", "concept", "subclass"]
    cols += ["category", *ID, "n", "value"]
    raw = raw[cols].sort_values(
        ["is_base", "cell", "seed", "step", "leaf", *ID],
        ascending=[False, True, True, True, True, True, True, True, True],
    )
    return metrics, raw.reset_index(drop=True), notes


# --- caching -----------------------------------------------------------------------------------------------

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
            _write_bytes_if_changed(self.out / written, gzip.compress(text.encode(), 9, mtime=0))
        else:
            _write_if_changed(self.out / written, text)
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
        _write_if_changed(self.path, json.dumps(self.new, indent=1, sort_keys=True) + "\n")


def _palette_pngs(out: Path, names) -> None:
    """Compact form of the figures: 256-colour palette PNGs (about a quarter of the bytes for plots and
    image grids); figures already in palette form are left as they are, so a rebuild rewrites nothing."""
    from PIL import Image

    from .store import atomic_write_bytes

    for name in sorted(n for n in names if n.endswith(".png") and (out / n).is_file()):
        with Image.open(out / name) as im:
            if im.mode == "P":
                continue
            pal = im.convert("RGB").quantize(256, method=Image.Quantize.FASTOCTREE)
        buf = io.BytesIO()
        pal.save(buf, "PNG", optimize=True)
        atomic_write_bytes(out / name, buf.getvalue())


def _source_key() -> str:
    """This code and the metric directions: a change in either rebuilds the report."""
    from . import analysis, html_report, plots
    from .metrics import METRICS

    files = [Path(m.__file__) for m in (analysis, plots, html_report)] + [Path(__file__)]
    return content_key(
        {
            "code": [file_sha256(f) for f in files],
            "directions": {k: m.higher_is_better for k, m in sorted(METRICS.items())},
        }
    )


def report_key(sweep_dir: Path, finished: list[dict], unfinished: list[dict]) -> str:
    """Content key of everything the report reads."""
    runs = []
    for r in finished:
        files = ("metrics.parquet", "images.parquet", "train_log.csv", "config.yaml", "run.json")
        runs.append(
            [r["cell"], r["seed"]]
            + [file_sha256(r["root"] / f) if (r["root"] / f).is_file() else None for f in files]
        )
    manifest = sweep_dir / "manifest.json"
    return content_key(
        {
            "source": _source_key(),
            "manifest": file_sha256(manifest) if manifest.is_file() else None,
            "runs": runs,
            "categories": _categories(finished),
            "unfinished": [[u[k] for k in ("cell", "seed", "status", "cause", "error")] for u in unfinished],
        }
    )


def frame_key(*frames, extra=None) -> str:
    """Content key of data frames (values, row order, column names) plus anything JSON-able."""
    import pandas as pd

    def one(f):
        if f is None:
            return None
        rows = pd.util.hash_pandas_object(f.reset_index(drop=True), index=False).to_numpy()
        return [list(map(str, f.columns)), content_key(rows.tobytes().hex())]

    parts = [one(f) for f in frames]
    return content_key({"frames": parts, "extra": extra, "source": _SOURCE[0]})


_SOURCE = [""]


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", str(text)).strip("_") or "x"


# --- the report ---------------------------------------------------------------------------------------------


def build_report(
    sweep_dir: Path,
    out: Path | None = None,
    grid_types: tuple[str, ...] | None = None,
    compact: bool = False,
) -> tuple[Path, list[dict]]:
    """Write report/ under the sweep folder (or ``out``); returns (report dir, unfinished runs).
    ``grid_types``: the prompt types that get image grids (default: every type). ``compact``: the form
    to publish (tables over 256 KB gzipped, palette PNGs, the page without its every-column tables)."""
    sweep_dir = Path(sweep_dir)
    if not (sweep_dir / "runs").is_dir() and not (sweep_dir / "manifest.json").is_file():
        raise FileNotFoundError(
            f"{sweep_dir} is not a sweep folder (no manifest.json, no runs/): pass results/<sweep>"
        )
    finished, unfinished = scan(sweep_dir)
    out = Path(out) if out is not None else sweep_dir / "report"
    cache = Cache(out, compact)
    key = report_key(sweep_dir, finished, unfinished)
    key += (f"+grids={','.join(grid_types)}" if grid_types else "") + ("+compact" if compact else "")
    if cache.complete(key):
        return out, unfinished
    # the form is part of every figure's key: switching it redraws them (palette vs full colour)
    _SOURCE[0] = _source_key() + ("+compact" if compact else "")

    metrics, raw, notes = load_metrics(finished)
    metrics = (
        metrics.sort_values(["cell", "seed", "step", "leaf", "prompt_type", "metric"], ignore_index=True)
        if len(metrics)
        else metrics
    )
    cache.table("metrics.csv", metrics.to_csv(index=False))
    from . import validity

    validity.write(sweep_dir, out)  # encoder metrics vs the oracle (world sweeps; a header otherwise)
    cache.made("metrics_validity.csv")
    summary = summary_table(metrics) if len(metrics) else metrics
    cache.table("summary.csv", summary.to_csv(index=False))
    failures = [
        {k: (str(v) if isinstance(v, Path) else v) for k, v in u.items() if k != "factors"}
        for u in unfinished
    ]
    _write_if_changed(out / "failures.json", json.dumps(failures, indent=2, sort_keys=True) + "\n")
    cache.made("failures.json")

    result = analyse(raw, out, cache, notes, sweep_dir, finished, grid_types) if raw is not None else None
    _write_if_changed(out / "metrics.md", _markdown_report(sweep_dir, finished, unfinished, summary, result))
    cache.made("metrics.md")
    from .html_report import render

    if result is not None:
        result["files"] = cache.files  # table name -> file written (gzipped in a compact report)
    page = render(sweep_dir.name, finished, unfinished, result, notes, compact=compact)
    _write_if_changed(out / "index.html", page)
    cache.made("index.html")
    cache.finish(key)
    return out, unfinished


def _markdown_report(sweep_dir, finished, unfinished, summary, result) -> str:
    import pandas as pd

    md = [
        f"# Sweep report: {sweep_dir.name}\n",
        f"{len(finished)} run(s) finished, {len(unfinished)} not finished. Open index.html for the full report.\n",
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
    if result is not None and len(result["table1"]):
        t = result["table1"].pivot(index="criterion", columns="cell", values="rank").reset_index()
        md.append("\n## Ranking of the algorithms per criterion (Table 1 style; higher = better)\n\n")
        md.append(markdown(t, ".1f"))
    if result is not None and len(result["learning"]):
        md.append("\n## Were the concepts learned? (oracle concept detection on trigger prompts)\n\n")
        if result["learning_warning"]:
            md.append(f"**Warning:** {result['learning_warning']}\n\n")
        md.append(markdown(result["learning"], ".3g"))
    md.append("\n## Metrics (mean over leaves, mean and std over seeds; step 0 = base model)\n\n")
    md.append(markdown(summary) if len(summary) else "no finished runs yet\n")
    return "".join(md)


def _progress(text: str) -> None:
    print(f"lycobench: report: {text}", file=sys.stderr, flush=True)


def analyse(
    raw, out: Path, cache: Cache, notes: list[str], sweep_dir: Path, finished: list[dict], grid_types=None
) -> dict:
    """Scores, tables, SHAP models and figures; returns what the HTML page shows."""
    from . import analysis as an

    for col in ("dim", "alpha", "factor", "lr"):
        raw[col] = raw[col].astype(float)
    unknown = sorted(m for m, d in an.directions(raw["metric"].unique()).items() if d is None)
    if unknown:
        notes.append(
            f"metric(s) {', '.join(unknown)}: no direction in lycobench.metrics.METRICS; kept raw, not ranked"
        )
    leaf = an.rank_normalise(raw)
    scores = an.aggregate(leaf)
    _write_parquet_if_changed(out / "scores.parquet", scores)
    cache.made("scores.parquet")
    runs = raw[~raw["is_base"]]
    configs = an.config_table(runs)
    summary = an.seed_summary(scores)
    crit = an.criteria_scores(scores)
    t1 = an.table1(crit, an.table1_configs(configs))
    pairs = an.paired_comparisons(leaf, an.comparison_pairs(configs))
    best = an.best_checkpoints(crit)
    alarms = an.overfitting_alarms(crit)
    corr = an.correlations(leaf)
    learning = an.concept_learning(raw)
    tables = {
        "configs.csv": configs,
        "summary_ci.csv": summary,
        "criteria.csv": crit,
        "table1.csv": t1,
        "paired.csv": pairs,
        "best_checkpoints.csv": best,
        "overfitting.csv": alarms,
        "correlations.csv": corr.reset_index() if len(corr) else corr,
        "concept_learning.csv": learning,
    }
    for name, df in tables.items():
        cache.table(name, df.to_csv(index=False, float_format="%.6g"))
    result = {
        "criteria_def": an.criteria_for(scores),
        "scores": scores,
        "configs": configs,
        "summary": summary,
        "criteria": crit,
        "table1": t1,
        "paired": pairs,
        "best": best,
        "alarms": alarms,
        "learning": learning,
        "learning_warning": an.learning_warning(learning),
        "figures": [],  # (section, title, path under report/, caption, note)
        "skipped": [],  # (section, title, why)
    }
    result["shap"] = _shap(scores, configs, out, cache, result)
    _figures(scores, summary, configs, corr, out, cache, result)
    result["grids"] = _grids(sweep_dir, finished, out, cache, grid_types=grid_types)
    return result


def _write_parquet_if_changed(path: Path, df) -> None:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    _write_bytes_if_changed(path, buf.getvalue())


def _shap(scores, configs, out: Path, cache: Cache, result: dict):
    """One CatBoost + SHAP model per (category, metric column), cached by the content of its rows."""
    import pandas as pd

    from . import analysis as an
    from .plots import Skip, beeswarm

    rows = an.shap_rows(scores, configs)
    rows = rows[rows["higher_is_better"].notna()]
    if rows.empty:
        result["skipped"].append(("SHAP", "CatBoost + SHAP", "no checkpoint in the SHAP fit set"))
        return pd.DataFrame()
    jobs = []
    for (category, *col), g in rows.groupby(["category", *an.ID], sort=True):
        column = dict(zip(an.ID, col))
        name = f"shap/{slug(category)}/{slug('-'.join(str(c) for c in col))}"
        g = g.sort_values(["cell", "seed", "step"])
        key = frame_key(g[["cell", "seed", "step", "score", *an.FEATURES]], extra=an.CATBOOST_PARAMS)
        jobs.append((category, column, name, g, key))
    fitted = _fit_missing([j for j in jobs if not cache.fresh(f"{j[2]}.json", j[4])])
    results = []
    for category, column, name, _g, key in jobs:
        label = f"{column['metric']}({column['prompt_type']})"
        if name in fitted:
            res = fitted[name]
            _write_if_changed(out / f"{name}.json", _dump_shap(res))
        else:
            res = _load_shap(out / f"{name}.json")
        results.append(res)
        title = f"{category}: {label}"
        if res.shap is None:
            result["skipped"].append(("SHAP", title, res.note))
            continue
        if not cache.fresh(f"{name}.png", key):
            try:
                beeswarm(res, title, out / f"{name}.png")
            except Skip as e:
                result["skipped"].append(("SHAP", title, str(e)))
                continue
        result["figures"].append(("SHAP", title, f"{name}.png", _r2_caption(res), res.note))
    table = an.shap_table(results)
    cache.table("shap/summary.csv", table.to_csv(index=False, float_format="%.6g"))
    return table


def _fit_missing(jobs: list) -> dict:
    """CatBoost + SHAP fits not in the cache, on every core: each fit is single-threaded and seeded, and
    CatBoost releases the GIL while fitting, so threads give the same models in a fraction of the time."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    from . import analysis as an

    done: dict = {}

    def fit(job):
        category, column, name, g, _ = job
        res = an.fit_shap(g, category, column)
        done[name] = res
        _progress(
            f"CatBoost + SHAP {len(done)}/{len(jobs)}: {category} / {column['metric']}({column['prompt_type']})"
        )
        return res

    with ThreadPoolExecutor(max_workers=max(1, min(len(jobs), os.cpu_count() or 1))) as pool:
        list(pool.map(fit, jobs))
    return done


def _r2_caption(res) -> str:
    cv = "n/a" if res.n_folds == 0 else f"{res.r2_cv:.2f}"
    return f"R² cross-validated by seed: {cv}; training R²: {res.r2_train:.2f}; n = {len(res.y)} checkpoints"


def _dump_shap(res) -> str:
    import math

    def num(x):
        return None if x is None or (isinstance(x, float) and math.isnan(x)) else x

    obj = {
        "category": res.category,
        "column": res.column,
        "r2_train": num(res.r2_train),
        "r2_cv": num(res.r2_cv),
        "n_folds": res.n_folds,
        "n": res.n,
        "note": res.note,
        "expected": num(res.expected),
    }
    if res.shap is not None:
        obj["X"] = {c: [num(v) for v in res.X[c].tolist()] for c in res.X.columns}
        obj["shap"] = [[round(float(v), 10) for v in row] for row in res.shap]
        obj["y"] = [float(v) for v in res.y]
        obj["rows"] = [[c, int(s), int(st)] for c, s, st in res.rows]
    return json.dumps(obj, sort_keys=True) + "\n"


def _load_shap(path: Path):
    import numpy as np
    import pandas as pd

    from .analysis import CAT_FEATURES, ShapResult

    obj = read_json(path)
    nan = float("nan")
    res = ShapResult(obj["category"], obj["column"])
    res.r2_train = nan if obj["r2_train"] is None else obj["r2_train"]
    res.r2_cv = nan if obj["r2_cv"] is None else obj["r2_cv"]
    res.n_folds, res.note, res.n = obj["n_folds"], obj["note"], obj.get("n", 0)
    res.expected = nan if obj.get("expected") is None else obj["expected"]
    if "shap" in obj:
        res.X = pd.DataFrame(obj["X"])
        for c in res.X.columns:
            if c not in CAT_FEATURES:
                res.X[c] = res.X[c].astype(float)
        res.shap = np.array(obj["shap"], float)
        res.y = np.array(obj["y"], float)
        res.rows = [tuple(r) for r in obj["rows"]]
    return res


def _figures(scores, summary, configs, corr, out: Path, cache: Cache, result: dict) -> None:
    """Scatter panels and Pareto fronts per category and epoch, metric curves per category, the
    correlation heatmap; each skipped with a note when its metrics are absent."""
    from functools import partial

    import numpy as np
    import pandas as pd

    from . import analysis as an
    from . import plots

    listed: list[tuple] = []  # (section, title, name, caption, note), in page order
    todo: dict[str, partial] = {}  # figures whose inputs changed: name -> drawing call

    def draw(section, title, name, key, fn, caption="", note=""):
        listed.append((section, title, name, caption, note))
        if not cache.fresh(name, key):
            todo[name] = partial(fn, path=out / name)

    cats = sorted(scores.loc[scores["scope"] == "category", "group"].unique())
    columns = an.curve_columns(scores)
    epochs = sorted(e for e in scores["epoch"].dropna().unique() if e > 0)
    style = configs[["cell", "algo", "varied"]]
    fronts = []
    for cat in cats:
        pts = {
            (x, y): (an.point_estimates(scores, cat, *x), an.point_estimates(scores, cat, *y))
            for x, y in an.scatter_pairs_for(scores)
        }
        missing = [
            f"{y[0]}({y[1]}) vs {x[0]}({x[1]})" for (x, y), (px, py) in pts.items() if px.empty or py.empty
        ]
        note = f"not measured in this sweep: {'; '.join(missing)}" if missing else ""
        if len(missing) == len(pts):
            result["skipped"].append(("Scatter panels", cat, note))
        else:
            for e in epochs:
                at = {
                    k: (px[px["epoch"].isin([0, e])], py[py["epoch"].isin([0, e])])
                    for k, (px, py) in pts.items()
                }
                title = f"{cat}, epoch {e:g}: seed x class means, error bars std/sqrt(n)"
                name = f"plots/scatter/{slug(cat)}-epoch{e:g}.png"
                frames = [f for pair in at.values() for f in pair]
                draw(
                    "Scatter panels", f"{cat}, epoch {e:g}", name, frame_key(*frames, style),
                    partial(plots.scatter_panels, at, configs, title), note=note,
                )  # fmt: skip
        front = an.pareto_table(pts)
        if len(front):
            fronts.append(front.assign(category=cat))
            name = f"plots/pareto/{slug(cat)}.png"
            title = f"{cat}: every configuration x epoch (seed means); dashed: Pareto front"
            draw(
                "Pareto fronts", cat, name, frame_key(front, style),
                partial(plots.pareto_panels, front, configs, title), note=note,
            )  # fmt: skip
        curves = summary[(summary["scope"] == "category") & (summary["group"] == cat)]
        curves = curves.merge(scores[["metric", "higher_is_better"]].drop_duplicates("metric"), on="metric")
        keep = np.array([c in columns for c in zip(curves["metric"], curves["prompt_type"])], dtype=bool)
        c = curves[keep]
        title = f"{cat}: the paper's criteria over checkpoints (raw; mean over seeds, 95% bootstrap CI)"
        draw(
            "Metric curves", cat, f"plots/curves/{slug(cat)}.png",
            frame_key(c, style), partial(plots.metric_curves, c, configs, title),
        )  # fmt: skip
    if fronts:
        table = pd.concat(fronts, ignore_index=True)
        cache.table("pareto.csv", table.to_csv(index=False, float_format="%.6g"))
    draw(
        "Correlations", "all metric columns", "plots/correlation.png", frame_key(corr.reset_index()),
        partial(plots.correlation_heatmap, corr, "Pearson correlation of normalised scores (leaf level, no aggregation)"),
    )  # fmt: skip
    skipped = _draw_all(todo)
    for section, title, name, caption, note in listed:
        if name in skipped:
            cache.new.pop(name, None)
            result["skipped"].append((section, title, skipped[name]))
        else:
            result["figures"].append((section, title, name, caption, note))


def _draw_one(call) -> str | None:
    from .plots import Skip

    try:
        call()
    except Skip as e:
        return str(e)
    return None


def _draw_all(calls: dict) -> dict[str, str]:
    """Draw figures in worker processes, one per core (matplotlib is not thread-safe; each figure is
    independent and written atomically); returns {name: why} for the figures that had nothing to show."""
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor

    workers = min(len(calls), os.cpu_count() or 1)
    if workers <= 1:
        results = [_draw_one(c) for c in calls.values()]
    else:  # fork: the workers inherit the loaded modules, nothing is imported twice
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            results = list(pool.map(_draw_one, calls.values(), chunksize=4))
    return {name: why for name, why in zip(calls, results) if why is not None}


def _grids(
    sweep_dir: Path, finished: list[dict], out: Path, cache: Cache, per_cell: int = 3, grid_types=None
) -> list[dict]:
    """Contact sheets per leaf x prompt type: the base model, then every configuration (its first finished
    seed) at every checkpoint, on the first ``per_cell`` images of the prompt file (same prompts, same
    generation seeds in every cell)."""
    import pandas as pd

    from .plots import Skip, image_grid

    first: dict[str, dict] = {}
    for r in sorted(finished, key=lambda r: (r["cell"], r["seed"])):
        first.setdefault(r["cell"], r)
    if not first:
        return []
    frames = []
    for cell, r in first.items():
        im = pd.read_parquet(r["root"] / "images.parquet")
        epochs = _epochs(r["root"])
        im["epoch"] = im["step"].map({**epochs, 0: 0.0}).astype(float)
        gen_key = read_json(r["root"] / "run.json").get("keys", {}).get("generate")
        frames.append(im.assign(cell=cell, seed_run=r["seed"], gen_key=gen_key))
    images = pd.concat(frames, ignore_index=True)
    if grid_types:
        images = images[images["prompt_type"].isin(list(grid_types))]
    grids = []
    for (leaf, ptype), g in images.groupby(["leaf", "prompt_type"], sort=True):
        idx = sorted(g.loc[g["step"] == 0, "index"].unique())[:per_cell]
        if not idx:
            idx = sorted(g["index"].unique())[:per_cell]
        g = g[g["index"].isin(idx)]
        epochs = sorted(e for e in g["epoch"].dropna().unique() if e > 0)
        base = g[g["step"] == 0].drop_duplicates("index").set_index("index")
        base_imgs = [_img(sweep_dir, base, i) for i in idx]
        columns = [f"epoch {e:g}" for e in epochs]
        rows = []
        for cell in sorted(first):
            c = g[g["cell"] == cell]
            cells = []
            for e in epochs:
                at = c[c["epoch"] == e].drop_duplicates("index").set_index("index")
                cells.append([_img(sweep_dir, at, i) for i in idx])
            rows.append((f"{cell} (seed {first[cell]['seed']})", cells))
        name = f"grids/{slug(leaf)}/{slug(ptype)}.png"
        key = content_key(
            {
                "base": [_rel(p, sweep_dir) for p in base_imgs],
                "columns": columns,
                "rows": [[lab, [[_rel(p, sweep_dir) for p in ps] for ps in cells]] for lab, cells in rows],
                "gen": sorted(set(g["gen_key"].dropna())),
                "source": _SOURCE[0],
            }
        )
        if not cache.fresh(name, key):
            try:
                image_grid(base_imgs, columns, rows, out / name)
            except Skip:
                cache.new.pop(name, None)
                continue
        prompts = (
            base.reset_index()[["index", "prompt", "seed"]]
            if len(base)
            else g.drop_duplicates("index")[["index", "prompt", "seed"]]
        )
        grids.append(
            {"leaf": leaf, "prompt_type": ptype, "path": name, "prompts": prompts.to_dict("records")}
        )
    return grids


def _rel(p: Path | None, sweep_dir: Path) -> str | None:
    """Paths in cache keys are relative, so a copied sweep folder keeps its cache."""
    return None if p is None else str(p.relative_to(sweep_dir))


def _img(sweep_dir: Path, frame, i) -> Path | None:
    return sweep_dir / frame.loc[i, "path"] if i in frame.index else None


def _write_if_changed(path: Path, text: str) -> None:
    """Identical content is not rewritten, so rebuilding an unchanged report touches no file."""
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return
    atomic_write_text(path, text)


def _write_bytes_if_changed(path: Path, data: bytes) -> None:
    from .store import atomic_write_bytes

    if path.is_file() and path.read_bytes() == data:
        return
    atomic_write_bytes(path, data)
