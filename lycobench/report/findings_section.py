"""The report's answers: which of the paper's findings this study reproduces (one line per claim), its
Table 1 against the paper's, and which SHAP attributions beat the planted null."""

from __future__ import annotations

import math
from html import escape

import pandas as pd

from ..analysis import BEAT_SHARE, CI_LEVEL, N_REFITS, headline, measure_columns, measured
from ..metrics import METRICS, paper_level
from .html_parts import fmt, table

MARK = {
    "reproduced": "<span class='good'>reproduced</span>",
    "contradicted": "<span class='bad'>contradicted</span>",
    "inconclusive": "<span class='note'>inconclusive</span>",
    "not tested": "<span class='note'>not tested</span>",
    "agrees": "<span class='good'>agrees</span>",
    "disagrees": "<span class='bad'>disagrees</span>",
    "unclear": "<span class='note'>unclear</span>",
}


def _effect(r) -> str:
    """effect [CI] (n pairs, seeds): the numbers and how many samples stand behind them."""
    if not r["n_pairs"]:
        return "–"
    e = f"{r['effect']:+.2f}"
    if not (isinstance(r["ci_lo"], float) and math.isnan(r["ci_lo"])):
        e += f" <small>[{r['ci_lo']:+.2f}, {r['ci_hi']:+.2f}]</small>"
    return e + f" <small>({int(r['n_pairs'])} pairs, {int(r['n_seeds'])} seeds)</small>"


# Below this agreement with its oracle counterpart across the sweep's checkpoints, an encoder metric is
# called a weak proxy: a verdict resting on it says little about what the oracle sees.
WEAK_PROXY = 0.3


def proxy_check(measure: str, result: dict) -> str:
    """How well the encoder metrics behind a claim's measure rank checkpoints as the oracle does: the
    agreement (Spearman, signed so that +1 = the two always prefer the same checkpoint) of the leaf-averaged
    values in the sweep's metrics_validity.csv, at the level the finding uses; '–' where no oracle
    counterpart was measured."""
    v = result.get("validity")
    scores = result.get("scores")
    if v is None or v.empty or scores is None:
        return "–"
    v = v[v["leaf"] == "all"]
    parts = []
    for metric, ptype in measure_columns(measure, measured(scores), result["criteria_def"]):
        rows = v[(v["proxy"] == metric) & (v["prompt_type"] == ptype)]
        if metric in METRICS and (rows["proxy_level"] == paper_level(metric, ptype)).any():
            rows = rows[rows["proxy_level"] == paper_level(metric, ptype)]  # the level the finding scores
        if rows.empty:
            continue
        head = f"{escape(metric)}({escape(ptype)}) vs {escape(rows['oracle'].iloc[0])}"
        if rows["agreement"].isna().all():
            parts.append(f"{head}: constant across checkpoints, no agreement to measure")
            continue
        r = rows.loc[rows["agreement"].idxmin()]  # the weakest encoder behind the column
        text = f"{head} ({escape(r['proxy_encoder'])}): agreement {r['agreement']:+.2f}, n {int(r['n'])}"
        parts.append(f"<span class='bad'>weak proxy: {text}</span>" if r["agreement"] < WEAK_PROXY else text)
    return "<br>".join(parts) or "–"


def counts_line(findings: pd.DataFrame) -> str:
    """'3 reproduced, 1 contradicted, ...' over the claims' pooled verdicts."""
    h = headline(findings)
    n = h["verdict"].value_counts()
    return ", ".join(f"{n[v]} {v}" for v in MARK if v in n)


def findings_section(result: dict) -> str:
    f = result.get("findings")
    if f is None or f.empty:
        return "<p class='note'>No claim to test.</p>"
    h = headline(f).copy()
    h["verdict"] = [MARK[v] for v in h["verdict"]]
    h["effect [CI]"] = [_effect(r) for r in h.to_dict("records")]
    h["why"] = h["reason"].fillna("")
    h["tracks the oracle?"] = [proxy_check(m, result) for m in h["measure"]]
    lines = h[["claim", "category", "measure", "verdict", "effect [CI]", "why", "tracks the oracle?"]]
    level = f"{CI_LEVEL:.0%}"
    parts = [
        f"<p><b>{escape(counts_line(f))}</b> of {len(h)} claims of the paper. Each is tested by paired "
        "comparisons: the same prompts, generation seeds and training seed, at the same checkpoint epoch "
        "(for epochs: each run's last checkpoint against its first). The effect is the mean over pairs of "
        "runs of the difference in normalised score (1 = best; positive: the first of the pair is better), "
        f"with its {level} t-interval over training seeds (the pairs of one seed share its noise, so they "
        "are averaged first). <i>Reproduced</i>: the interval lies wholly on the side the "
        "paper says; <i>contradicted</i>: wholly on the other; <i>inconclusive</i>: it holds 0; "
        "<i>not tested</i>: the sweep varies no factor the claim needs, or measured none of its metrics. "
        f"About one claim in {round(1 / (1 - CI_LEVEL))} gets a wrong verdict by chance alone. The pairs "
        f"compared and every category: {_link(result, 'findings.csv')}. <i>Tracks the oracle?</i>: in a "
        "world sweep, the agreement across this sweep's checkpoints (Spearman on the leaf-averaged values, "
        "signed so that +1 = both always prefer the same checkpoint) between each encoder metric behind the "
        f"measure and the oracle's measure of the same thing ({_link(result, 'metrics_validity.csv')}); "
        f"below {WEAK_PROXY} the metric is a weak proxy here, and a verdict resting on it "
        "says little about what the images show.</p>",
        table(
            lines,
            left=("claim", "category", "measure", "why", "tracks the oracle?"),
            raw_html=("verdict", "effect [CI]", "tracks the oracle?"),
        ),  # fmt: skip
    ]
    per = f[~f.index.isin(f.groupby("id", sort=False).head(1).index) & (f["n_pairs"] > 0)]
    if len(per):
        p = per.copy()
        p["verdict"] = [MARK[v] for v in p["verdict"]]
        p["effect [CI]"] = [_effect(r) for r in p.to_dict("records")]
        parts.append(
            f"<details><summary>per category ({len(p)} rows)</summary>"
            + table(
                p[["id", "category", "verdict", "effect [CI]", "compared"]],
                left=("id", "category", "compared"),
                raw_html=("verdict", "effect [CI]"),
            )  # fmt: skip
            + "</details>"
        )
    parts.append(table1_check(result))
    return "".join(parts)


def table1_check(result: dict) -> str:
    t = result.get("table1_check")
    if t is None or t.empty:
        return ""
    v = t[t["group"] == "all"].copy()
    v["verdict"] = [MARK[x] for x in v["verdict"]]
    v["tau [CI]"] = [
        "–" if pd.isna(r["tau"]) else f"{r['tau']:+.2f} <small>[{r['ci_lo']:+.2f}, {r['ci_hi']:+.2f}]</small>"
        for r in v.to_dict("records")
    ]
    cols = [
        "criterion",
        "verdict",
        "tau [CI]",
        "n_configs",
        "n_seeds",
        "study_order",
        "paper_order",
        "reason",
    ]
    return (
        "<h3 id='table1-vs-paper'>Table 1 against the paper's</h3><p>Per criterion, Kendall's tau between "
        "this study's ranking of the algorithm defaults (and native fine-tuning one learning rate up) and "
        f"the paper's Table 1, with a {CI_LEVEL:.0%} bootstrap interval that resamples seeds (with 2-3 seeds "
        "it is about the range of the single-seed taus). <i>Agrees</i>: the interval lies above 0; "
        "<i>disagrees</i>: below; <i>unclear</i>: it holds 0. Orders best first; per category: "
        f"{_link(result, 'table1_vs_paper.csv')}.</p>"
        + table(
            v[cols],
            left=("criterion", "study_order", "paper_order", "reason"),
            raw_html=("verdict", "tau [CI]"),
        )
    )


def attribution_section(result: dict) -> str:
    """Per model: the factors whose importance beats the planted null, and the others greyed with why."""
    a = result.get("attribution")
    if a is None or a.empty:
        return ""
    rows = []
    for (cat, metric, ptype), g in a.groupby(["category", "metric", "prompt_type"], sort=True):
        g = g.sort_values("rank")
        real = [f"{escape(r.feature)} {fmt(r.mean_abs_shap)}" for r in g.itertuples() if r.real]
        null = g[g["feature"].str.startswith("Null")]
        grey = [
            f"<span style='color:#999'>{escape(r.feature)} {fmt(r.mean_abs_shap)}: {escape(r.reason)}</span>"
            for r in g.itertuples()
            if not r.real and not r.feature.startswith("Null")
        ]
        rows.append(
            {
                "category": cat,
                "column": f"{metric}({ptype})",
                "real (mean |SHAP|)": ", ".join(real) or "<span class='note'>none</span>",
                "null": fmt(null["mean_abs_shap"].iloc[0]) if len(null) else "–",
                "not shown as real": "<br>".join(grey),
                "rows": int(g["n_rows"].iloc[0]),
            }
        )
    need = int(math.ceil(BEAT_SHARE * N_REFITS))
    return (
        "<h3 id='shap-null'>Attributions checked against a planted null</h3><p>Every fit carries a null "
        "factor whose levels are drawn at random per run. A factor's importance (mean |SHAP|) counts as real "
        f"only where it is larger than the null's in the fit and in at least {need} of {N_REFITS} bootstrap "
        "refits (runs resampled within each configuration, the null redrawn each time); the rest is greyed "
        "out here and in the beeswarms, with the reason. Models whose cross-validated R² is too low get no "
        f"refits. {_link(result, 'shap/importance.csv')}</p>"
        + table(
            pd.DataFrame(rows),
            left=("category", "column", "real (mean |SHAP|)", "not shown as real"),
            raw_html=("real (mean |SHAP|)", "not shown as real"),
        )  # fmt: skip
    )


def _link(result: dict, name: str) -> str:
    f = escape(result.get("files", {}).get(name, name))
    return f"<a href='{f}'>{f}</a>"
