"""report/index.html: one static page with the summary tables, the figures and the image grids.

Every link is relative to report/ (figures and grids are files inside it, tables are CSV files beside
it), so the page works wherever the sweep folder is copied or served. No script, no external asset.
"""

from __future__ import annotations

from html import escape

import numpy as np
import pandas as pd

from ..analysis import (
    CATBOOST_PARAMS,
    EXTRA,
    LEARNED,
    OVERFIT_TOL,
    R2_RELIABLE,
    learned_at_last_sentence,
    no_oracle_note,
    scatter_pairs_for,
)
from ..metrics import METRICS
from .findings_section import attribution_section, findings_section
from .gallery import gallery_css, grids_section
from .headline import executive_summary, provenance_block, ranking
from .html_parts import anchor, ci, fmt, table

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5em auto;max-width:1400px;padding:0 1em;color:#222}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em} h3{margin-top:1.4em}
table{border-collapse:collapse;margin:.6em 0;font-size:13px} th,td{border:1px solid #ddd;padding:3px 6px;text-align:right}
th{background:#f3f3f3;position:sticky;top:0} td.l,th.l{text-align:left} tr:nth-child(even) td{background:#fafafa}
.box{border:1px solid #d33;background:#fff4f4;padding:.6em 1em;margin:1em 0}
.note{color:#666;font-size:13px} .bad{color:#b00000;font-weight:600} .good{color:#126b12}
.figs{display:flex;flex-wrap:wrap;gap:18px} figure{margin:0;max-width:100%} figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:12px;color:#444;max-width:720px} small{color:#777} nav a{margin-right:1em}
.scroll{overflow-x:auto;max-height:600px;overflow-y:auto}
.prov{font-size:12px;color:#444;background:#f6f6f6;padding:.4em .8em} .summary{border:1px solid #8ab;background:#f4f9fc;padding:.6em 1em;margin:1em 0}
"""


def _better(name: str) -> str:
    """Which way the metric improves, for reading raw (unnormalised) differences."""
    m = METRICS.get(name)
    return "" if m is None else ("higher" if m.higher_is_better else "lower")


def _label(r) -> str:
    return f"{r['metric']}({r['prompt_type']})"


def render(
    sweep: str,
    finished: list[dict],
    unfinished: list[dict],
    result: dict | None,
    notes: list[str],
    compact: bool = False,
    provenance: dict | None = None,
) -> str:
    """The page; ``compact`` leaves out the every-column tables (they are in summary_ci.csv);
    ``provenance``: where the numbers come from, shown first."""
    parts = [
        # an empty icon: without one a browser asks the server for /favicon.ico, a 404 on every load
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><link rel='icon' href='data:,'>",
        f"<title>lycobench report: {escape(sweep)}</title>"
        f"<style>{CSS}{gallery_css((result or {}).get('grids') or [])}</style></head><body>",
        f"<h1>lycobench report: {escape(sweep)}</h1>",
        provenance_block(provenance),
        f"<p>{len(finished)} run(s) finished, {len(unfinished)} not finished. Scores are the paper's rank "
        "normalisation: per leaf and metric column among all checkpoints of the sweep, 1 = best, 0 = worst; "
        "the base model is shown at the place it would take as one more checkpoint. Brackets: 95% t-interval "
        "over the training seeds' means (a seed counts once; with 2-3 seeds it is wide by design).</p>",
    ]
    if unfinished:
        rows = pd.DataFrame(
            [{k: u[k] for k in ("cell", "seed", "status", "cause", "error")} for u in unfinished]
        )
        parts.append(
            "<div class='box'><b>Runs not finished</b> (left out of every number below):"
            + table(rows, left=("cell", "status", "cause", "error"))
            + "</div>"
        )
    if result is None:
        parts.append("<p>No finished run yet: nothing to analyse.</p></body></html>\n")
        return "".join(parts)
    parts.append(executive_summary(result))
    skipped = result["skipped"]
    if notes or skipped:
        items = [f"<li>{escape(n)}</li>" for n in notes]
        items += [f"<li>{escape(s)}: {escape(t)}: {escape(w)}</li>" for s, t, w in skipped]
        parts.append(
            f"<details><summary>Notes ({len(items)})</summary><ul class='note'>{''.join(items)}</ul></details>"
        )
    if result.get("learning_warning"):
        parts.append(f"<div class='box'><b>Concepts not learned:</b> {escape(result['learning_warning'])} "
                     "<a href='#learning'>Details</a>.</div>")  # fmt: skip
    sections = [
        ("findings", "Does this study reproduce the paper's findings?", findings_section(result)),
        ("ranking", "Ranking of algorithms", ranking(result)),
        ("learning", "Were the concepts learned?", _learning(result)),
        ("configs", "Configurations", _configs(result)),
        ("summary", "Scores per category", _summary(result, every_column=not compact)),
        ("best", "Best checkpoints and overfitting alarms", _best(result)),
        ("paired", "Paired comparisons", _paired(result)),
        ("shap", "CatBoost + SHAP", _shap(result)),
        ("scatter", "Scatter panels", _figs(result, "Scatter panels")),
        ("pareto", "Pareto fronts", _figs(result, "Pareto fronts")),
        ("curves", "Metric curves over checkpoints", _figs(result, "Metric curves")),
        ("corr", "Correlations", _figs(result, "Correlations")),
        ("grids", "Image grids", grids_section(result)),
        ("files", "Files", _files(result)),
    ]
    parts.append("<nav>" + "".join(f"<a href='#{a}'>{escape(t)}</a>" for a, t, _ in sections) + "</nav>")
    for a, t, body in sections:
        parts.append(f"<h2 id='{a}'>{escape(t)}</h2>{body}")
    parts.append("</body></html>\n")
    return "".join(parts)


def _learning(result: dict) -> str:
    t = result.get("learning")
    missing = no_oracle_note(result.get("no_oracle"))
    if t is None or t.empty:
        return f"<p class='note'>{escape(missing)}</p>" if missing else (
            "<p class='note'>Needs the oracle (world sweeps, <code>encoders=world</code>).</p>")  # fmt: skip
    return (
        (f"<p class='note'>{escape(missing)}</p>" if missing else "")
        + "<p>Per leaf, the oracle's concept detection on the trigger prompts: the median and best over every "
        "trained checkpoint (and which one was best), the share of checkpoints that learned the leaf (detection "
        f"&ge; {LEARNED:.0%}), and the median at each run's last checkpoint; <i>images</i>: trigger images "
        "behind one rate (with few, a single checkpoint's rate is noisy) "
        f"({_link(result, 'concept_learning.csv')}).</p>"
        + table(t, left=("leaf", "best_cell"))
        + _learned_at_last(result)
    )


def _learned_at_last(result: dict) -> str:
    t = result.get("learned_at_last")
    if t is None or t.empty:
        return ""
    return (
        f"<p>{escape(learned_at_last_sentence(t))} Per run, the leaves learned at the last checkpoint "
        f"(detection &ge; {LEARNED:.0%}) and the rates of those missed "
        f"({_link(result, 'concept_learning_last.csv')}):</p>" + table(t, left=("cell", "missed"))
    )


def _configs(result: dict) -> str:
    c = result["configs"].copy()
    c["cell"] = [f"<a id='cfg-{anchor(x)}'></a>{escape(x)}" for x in c["cell"]]
    extras = [x for x in c.columns if x.startswith(EXTRA)]
    c = c.rename(columns={x: x.removeprefix(EXTRA) for x in extras})
    extras = [x.removeprefix(EXTRA) for x in extras]
    cols = ["cell", "algo", "target", "dim", "alpha", "factor", "lr", *extras, "is_default", "varied"]
    cols += ["capacity_level", "lr_level", "in_shap_fit", "exclude_reason"]
    return (
        "<p>Factor levels for the SHAP model follow the paper (section 7): capacity 1 = the algorithm's default, "
        "2, 3... = larger; native fine-tuning one level above all (then folded into the algorithm); LR level 2 = "
        "the default lr, 1 / 3 = lower / higher.</p>"
        + table(c[cols], left=("cell", "algo", "target", "varied", "exclude_reason"), raw_html=("cell",))
    )


def _headline(result: dict) -> set[tuple[str, str]]:
    """The paper's plotted metric columns: the criteria and the scatter pairs."""
    cols = {c for v in result["criteria_def"].values() for c in v}
    return cols | {c for pair in scatter_pairs_for(result["scores"]) for c in pair}


def _wide(g: pd.DataFrame, link: str) -> pd.DataFrame:
    """Configuration x epoch rows, one column per metric column: score [CI] and the raw mean."""
    g = g.copy()
    g["column"] = g["metric"] + "(" + g["prompt_type"] + ")"
    several = g.groupby(["metric", "prompt_type"])[["encoder", "level"]].transform("nunique").max(axis=1) > 1
    g.loc[several, "column"] += "[" + g["encoder"] + "," + g["level"] + "]"
    g["cellv"] = [
        f"{ci(sc, lo, hi)}<br><small>raw {fmt(rw, 4)}</small>"
        for sc, lo, hi, rw in zip(g["score"], g["score_lo"], g["score_hi"], g["raw"])
    ]
    wide = g.pivot_table(index=["cell", "epoch"], columns="column", values="cellv", aggfunc="first")
    wide = wide.reset_index().fillna("–")  # a column the base model (or a configuration) lacks
    wide.columns.name = None
    wide["epoch"] = wide["epoch"].map(lambda e: f"{e:g}")
    wide["cell"] = [
        f"<a href='#grids-{anchor(link)}'>{escape(c)}</a>" if c != "base" else "<b>base model</b>"
        for c in wide["cell"]
    ]
    return wide


def _summary(result: dict, every_column: bool = True) -> str:
    s = result["summary"]
    s = s[s["scope"].isin(["category", "all"])]
    head = _headline(result)
    is_head = np.array([(m, p) in head for m, p in zip(s["metric"], s["prompt_type"])], dtype=bool)
    out = []
    for group in sorted(s["group"].unique(), key=lambda g: (g == "all", g)):
        in_group = (s["group"] == group).to_numpy()
        link = "all" if group == "all" else group
        title = "all categories (mean over categories: a lycobench addition)" if group == "all" else group
        out.append(f"<h3 id='summary-{anchor(group)}'>{escape(title)}</h3>")
        main = s[in_group & is_head]
        if len(main):
            wide = _wide(main, link)
            out.append(table(wide, left=("cell",), raw_html=tuple(wide.columns)))
        if every_column:
            rest = s[in_group]
            n_cols = rest[["metric", "prompt_type", "encoder", "level"]].drop_duplicates().shape[0]
            wide = _wide(rest, link)
            out.append(
                f"<details><summary>every metric column ({n_cols})</summary>"
                + table(wide, left=("cell",), raw_html=tuple(wide.columns))
                + "</details>"
            )
    return (
        "<p>Normalised score (mean over seeds, 95% t-interval over seeds) and the raw metric (mean over "
        "leaves and seeds) per configuration and checkpoint epoch, for the metric columns the paper plots; "
        f"every other column is {'one click away' if every_column else 'in the full table'}. A "
        f"configuration's name links to its images. Full table: {_link(result, 'summary_ci.csv')}; every score and raw value per leaf, class, category and "
        "checkpoint: <a href='scores.parquet'>scores.parquet</a>.</p>" + "".join(out)
    )


def _best(result: dict) -> str:
    b, a = result["best"], result["alarms"]
    parts = [
        "<p>Best checkpoint: the epoch with the highest mean of the criteria's normalised scores (seed means); "
        "and where each criterion peaks.</p>",
        table(b, left=("group", "cell")),
        "<p>Overfitting alarm: between two consecutive checkpoints, fidelity rises while controllability, "
        f"diversity or preservation falls (each by more than {OVERFIT_TOL} on the normalised scale).</p>",
        table(a, left=("group", "cell", "falling")) if len(a) else "<p class='good'>No alarm.</p>",
    ]
    return "".join(parts)


def _paired(result: dict) -> str:
    p = result["paired"]
    if p.empty:
        return "<p class='note'>No pair of configurations shares seeds and leaves.</p>"
    wanted = {(m, t) for cols in result["criteria_def"].values() for m, t in cols}
    keep = np.array([(m, t) in wanted for m, t in zip(p["metric"], p["prompt_type"])], dtype=bool)
    q = p[p["epoch"].isna().to_numpy() & keep].copy()
    q["column"] = [_label(r) for r in q.to_dict("records")]
    q["mean diff [CI]"] = [ci(m, lo, hi) for m, lo, hi in zip(q["mean_diff"], q["ci_lo"], q["ci_hi"])]
    q["better"] = [_better(m) for m in q["metric"]]
    cols = [
        "a",
        "b",
        "kind",
        "column",
        "mean diff [CI]",
        "d_z",
        "win_rate",
        "raw_diff",
        "better",
        "n_units",
        "n_seeds",
    ]
    return (
        "<p>a vs b on the same leaves, prompts, generation seeds and training seeds, pooled over checkpoints; "
        "the difference is in normalised score (positive: a better). d_z = mean / sd of the paired "
        "differences; win rate = share of units where a is better; raw_diff = mean a - b in the metric's own "
        "unit and sign, so for a metric whose <i>better</i> is lower a negative raw_diff favours a. "
        "Criterion metrics only here; every metric "
        f"and every epoch: {_link(result, 'paired.csv')}.</p>"
        + table(q[cols], left=("a", "b", "kind", "column"), raw_html=("mean diff [CI]",))
    )


def _shap(result: dict) -> str:
    t = result.get("shap")
    parts = [
        f"<p>One CatBoostRegressor ({CATBOOST_PARAMS['iterations']} iterations, lr {CATBOOST_PARAMS['learning_rate']}, "
        f"seed {CATBOOST_PARAMS['random_seed']}) per category and metric column on the "
        "normalised category scores of every checkpoint in the fit set, with the paper's five features; "
        "R² is cross-validated with folds grouped by training seed. A model whose cross-validated R² is "
        f"below {R2_RELIABLE} explains too little: its attributions are marked unreliable. "
        f"{_link(result, 'shap/summary.csv')}</p>"
    ]
    if t is not None and len(t):
        v = t.copy()
        v["column"] = [_label(r) for r in v.to_dict("records")]
        v["reliable"] = [
            "<span class='good'>yes</span>" if r else "<span class='bad'>no</span>" for r in v["reliable"]
        ]
        cols = ["category", "column", "n_rows", "r2_cv", "r2_train", "n_folds", "reliable", "note"]
        parts.append(table(v[cols], left=("category", "column", "note"), raw_html=("reliable",)))
    parts.append(attribution_section(result))
    parts.append(_figs(result, "SHAP"))
    return "".join(parts)


def _figs(result: dict, section: str) -> str:
    figs = [f for f in result["figures"] if f[0] == section]
    skipped = [s for s in result["skipped"] if s[0] == section]
    parts = []
    if figs:
        parts.append("<div class='figs'>")
        for _, title, path, caption, note in figs:
            cap = escape(title) + (f"<br>{escape(caption)}" if caption else "")
            if note:
                cap += f"<br><span class='{'bad' if 'unreliable' in note else 'note'}'>{escape(note)}</span>"
            parts.append(
                f"<figure><a href='{escape(path)}'><img src='{escape(path)}' alt='{escape(title)}' loading='lazy'></a><figcaption>{cap}</figcaption></figure>"
            )
        parts.append("</div>")
    for _, title, why in skipped:
        parts.append(f"<p class='note'>Skipped {escape(title)}: {escape(why)}</p>")
    if not figs and not skipped:
        parts.append("<p class='note'>Nothing to show.</p>")
    return "".join(parts)


def _files(result: dict) -> str:
    files = [
        ("findings.csv", "the paper's claims: verdict, effect, 95% CI and pairs, pooled and per category"),
        ("table1_vs_paper.csv", "Table 1 against the paper's: Kendall tau with its bootstrap CI over seeds"),
        ("scores.parquet", "every normalised score and raw value: leaf, class, category and all scopes"),
        ("summary_ci.csv", "means over seeds with 95% t-intervals over seeds"),
        ("configs.csv", "configurations, defaults, factor levels, SHAP fit set"),
        ("criteria.csv", "criterion scores per checkpoint"),
        ("table1.csv", "the Table-1 ranking"),
        ("paired.csv", "paired comparisons, every metric and epoch"),
        ("best_checkpoints.csv", "best checkpoint per configuration"),
        ("overfitting.csv", "overfitting alarms"),
        ("pareto.csv", "Pareto front members"),
        ("correlations.csv", "correlation matrix of normalised scores"),
        ("concept_learning.csv", "oracle concept detection per leaf: were the concepts learned?"),
        (
            "concept_learning_last.csv",
            "per default configuration and seed: the leaves its last checkpoint learned",
        ),
        ("shap/summary.csv", "SHAP model fit quality and mean |SHAP| per feature"),
        (
            "shap/importance.csv",
            "per model and feature: mean |SHAP|, refits beating the planted null, real or why not",
        ),
        ("metrics.csv", "every raw metric row of every finished run"),
        ("summary.csv", "raw metric means per configuration and step"),
        ("failures.json", "runs not finished"),
    ]
    return "<ul>" + "".join(f"<li>{_link(result, f)}: {escape(d)}</li>" for f, d in files) + "</ul>"


def _link(result: dict, name: str) -> str:
    """A link to a table, under the name it was written as (``.csv.gz`` in a compact report)."""
    f = escape(result.get("files", {}).get(name, name))
    return f"<a href='{f}'>{f}</a>"
