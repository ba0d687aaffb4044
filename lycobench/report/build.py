"""Building a report: everything it reads is keyed, the tables and the analysis are written, then the
figures, the SHAP models, the image grids, metrics.md and index.html."""

from __future__ import annotations

import json
from pathlib import Path

from ..store import content_key, file_sha256, scan
from .cache import SOURCE, Cache, write_if_changed, write_parquet_if_changed
from .figures import draw_figures
from .grids import contact_sheets
from .load import categories_of, load_metrics
from .published import RECORD, provenance, write_record
from .shap_figures import shap_models
from .tables import markdown_report, summary_table


def source_key() -> str:
    """This code and the metric directions: a change in either rebuilds the report."""
    from .. import analysis
    from ..config import FINDINGS_DIR
    from ..metrics import METRICS

    packages = (Path(__file__).parent, Path(analysis.__file__).parent)
    files = [f for pkg in packages for f in sorted(pkg.glob("*.py"))]
    files += sorted(FINDINGS_DIR.glob("*.yaml"))  # the claims every report tests
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
            "source": source_key(),
            "manifest": file_sha256(manifest) if manifest.is_file() else None,
            "runs": runs,
            "categories": categories_of(finished),
            "unfinished": [[u[k] for k in ("cell", "seed", "status", "cause", "error")] for u in unfinished],
        }
    )


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
    SOURCE[0] = source_key() + ("+compact" if compact else "")

    metrics, raw, notes = load_metrics(finished)
    metrics = (
        metrics.sort_values(["cell", "seed", "step", "leaf", "prompt_type", "metric"], ignore_index=True)
        if len(metrics)
        else metrics
    )
    cache.table("metrics.csv", metrics.to_csv(index=False))
    from .. import metric_validity

    validity = metric_validity.compute(sweep_dir)  # encoder metrics vs the oracle (world sweeps; else empty)
    metric_validity.write(sweep_dir, out, validity)
    cache.made("metrics_validity.csv")
    summary = summary_table(metrics) if len(metrics) else metrics
    cache.table("summary.csv", summary.to_csv(index=False))
    failures = [
        {k: (str(v) if isinstance(v, Path) else v) for k, v in u.items() if k != "factors"}
        for u in unfinished
    ]
    write_if_changed(out / "failures.json", json.dumps(failures, indent=2, sort_keys=True) + "\n")
    cache.made("failures.json")

    result = analyse(raw, out, cache, notes, sweep_dir, finished, grid_types) if raw is not None else None
    if result is not None:
        result["validity"] = validity
    write_if_changed(out / "metrics.md", markdown_report(sweep_dir, finished, unfinished, summary, result))
    cache.made("metrics.md")
    from .page import render

    if result is not None:
        result["files"] = cache.files  # table name -> file written (gzipped in a compact report)
    prov = provenance(sweep_dir, finished, unfinished)
    write_if_changed(out / RECORD, write_record(out, sweep_dir, finished, unfinished, prov))
    cache.made(RECORD)
    page = render(sweep_dir.name, finished, unfinished, result, notes, compact=compact, provenance=prov)
    write_if_changed(out / "index.html", page)
    cache.made("index.html")
    cache.finish(key)
    return out, unfinished


def analyse(
    raw, out: Path, cache: Cache, notes: list[str], sweep_dir: Path, finished: list[dict], grid_types=None
) -> dict:
    """Scores, tables, SHAP models and figures; returns what the HTML page shows."""
    from .. import analysis as an

    for col in ("dim", "alpha", "factor", "lr"):
        raw[col] = raw[col].astype(float)
    unknown = sorted(m for m, d in an.directions(raw["metric"].unique()).items() if d is None)
    if unknown:
        notes.append(
            f"metric(s) {', '.join(unknown)}: no direction in lycobench.metrics.METRICS; kept raw, not ranked"
        )
    raw, merged = an.drop_repeated_levels(raw)
    notes.extend(merged)
    leaf = an.rank_normalise(raw)
    runs = raw[~raw["is_base"]]
    if runs[["cell", "seed", "step"]].drop_duplicates().shape[0] < 2:
        notes.append(
            "one checkpoint in this folder: scores rank checkpoints against each other, so they need two or "
            "more (every score is empty); the raw values are in metrics.csv and summary.csv"
        )
    scores = an.aggregate(leaf)
    write_parquet_if_changed(out / "scores.parquet", scores)
    cache.made("scores.parquet")
    configs = an.config_table(runs)
    summary = an.seed_summary(scores)
    crit = an.criteria_scores(scores)
    t1 = an.table1(crit, an.table1_configs(configs))
    pairs = an.paired_comparisons(leaf, an.comparison_pairs(configs))
    best = an.best_checkpoints(crit)
    alarms = an.overfitting_alarms(crit)
    corr = an.correlations(leaf)
    learning = an.concept_learning(raw)
    last_learned = an.learned_at_last(raw, sorted(configs.loc[configs["is_default"], "cell"]))
    findings = an.findings_table(scores, configs, an.load_claims())
    t1_check = an.table1_agreement(crit, configs)
    tables = {
        "findings.csv": findings,
        "table1_vs_paper.csv": t1_check,
        "configs.csv": configs,
        "summary_ci.csv": summary,
        "criteria.csv": crit,
        "table1.csv": t1,
        "paired.csv": pairs,
        "best_checkpoints.csv": best,
        "overfitting.csv": alarms,
        "correlations.csv": corr.reset_index() if len(corr) else corr,
        "concept_learning.csv": learning,
        "concept_learning_last.csv": last_learned,
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
        "learned_at_last": last_learned,
        "learning_warning": an.learning_warning(learning),
        "no_oracle": an.leaves_without_oracle(raw),
        "findings": findings,
        "table1_check": t1_check,
        "figures": [],  # (section, title, path under report/, caption, note)
        "skipped": [],  # (section, title, why)
    }
    result["shap"] = shap_models(scores, configs, out, cache, result)
    draw_figures(scores, summary, configs, corr, out, cache, result)
    result["grids"] = contact_sheets(sweep_dir, finished, out, cache, grid_types=grid_types, notes=notes)
    return result
