"""The top of the report page: where the numbers come from, the executive summary, and the ranking
(Table 1, rank 1 = best)."""

from __future__ import annotations

from html import escape

import pandas as pd

from ..analysis import CRITERIA, LEARNED, learned_at_last_sentence
from .html_parts import ci, table

PROVENANCE_FIELDS = [
    ("built", "report built"),
    ("sweep", "sweep"),
    ("git", "git sha"),
    ("lycobench", "lycobench"),
    ("torch", "torch"),
    ("base_model", "base model"),
    ("base_model_manifest_sha256", "base model manifest sha256"),
    ("machine", "machine"),
    ("runs", "runs"),
    ("run_seconds", "run time (summed over runs)"),
]


def provenance_block(prov: dict | None) -> str:
    if not prov:
        return ""
    items = []
    for key, label in PROVENANCE_FIELDS:
        value = prov.get(key)
        if key == "run_seconds":
            value = "not recorded" if not value else _duration(value)
            if prov.get("run_seconds_runs"):
                value += f" ({prov['run_seconds_runs']})"
        items.append(f"<span><b>{escape(label)}:</b> {escape(str(value))}</span>")
    return f"<p class='prov' id='provenance'>{' &middot; '.join(items)}</p>"


def _duration(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min {s:02d} s" if h else f"{m} min {s:02d} s"


def executive_summary(result: dict) -> str:
    """Which configuration wins each criterion (with its CI, and whether the runner-up's CI overlaps it),
    and how many leaves were learned."""
    lines = []
    t = result["table1"]
    for crit in [c for c in CRITERIA if c in set(t["criterion"])]:
        g = t[t["criterion"] == crit].sort_values("rank")
        top = g.iloc[0]
        line = f"<b>{escape(crit)}</b>: {escape(str(top['cell']))} {ci(top['score'], top['lo'], top['hi'])}"
        if len(g) > 1:
            second = g.iloc[1]
            clear = second["hi"] < top["lo"]
            line += (
                f", ahead of {escape(str(second['cell']))} {ci(second['score'], second['lo'], second['hi'])}"
                + ("" if clear else " <i>(CIs overlap: no clear winner)</i>")
            )
        lines.append(f"<li>{line}</li>")
    findings = result.get("findings")
    if findings is not None and len(findings):
        from .findings_section import counts_line

        lines.append(
            f"<li><b>the paper's findings</b>: {escape(counts_line(findings))} "
            "<a href='#findings'>Details</a></li>"
        )
    learning = result.get("learning")
    if learning is not None and len(learning):
        learned = learning[learning["share_learned"] > 0]
        ever = ", ".join(escape(str(x)) for x in learned["leaf"]) or "none"
        last = learning[learning["median_last"] >= LEARNED]
        lines.append(
            f"<li><b>concepts learned</b> (oracle detection &ge; {LEARNED:.0%} on trigger prompts): by the median "
            f"run at its last checkpoint, {len(last)} of {len(learning)} leaves; by at least one checkpoint, "
            f"{len(learned)} ({ever}). "
            + escape(learned_at_last_sentence(result.get("learned_at_last", learning.iloc[:0])) or "")
            + " <a href='#learning'>Details</a></li>"
        )
    elif lines:
        lines.append("<li><b>concepts learned</b>: not measured (needs the oracle of a world sweep)</li>")
    if not lines:
        return ""
    return (
        "<div class='summary' id='executive-summary'><b>Summary</b> (normalised scores, 1 = best, averaged "
        "over categories, seeds and checkpoints; brackets: 95% t-interval over seeds)<ul>"
        + "".join(lines)
        + "</ul></div>"
    )


def ranking(result: dict) -> str:
    """Table 1 with one row per criterion and the configurations in rank order, rank 1 = best."""
    t = result["table1"]
    if t.empty:
        return "<p class='note'>No criterion metric was measured.</p>"
    crits = [c for c in CRITERIA if c in set(t["criterion"])]
    n = t.groupby("criterion").size().max()
    cols = [f"rank {i}" + (" (best)" if i == 1 else "") for i in range(1, n + 1)]
    rows = []
    for crit in crits:
        g = t[t["criterion"] == crit].sort_values(["rank", "cell"])
        row = {"criterion": crit}
        for col, (_, r) in zip(cols, g.iterrows()):
            tie = " (tie)" if (g["rank"] == r["rank"]).sum() > 1 else ""
            row[col] = (
                f"<b>{escape(str(r['cell']))}</b>{tie}<br><small>{ci(r['score'], r['lo'], r['hi'])}</small>"
            )
        rows.append(row)
    desc = "; ".join(
        f"{k}: {', '.join(f'{m}({p})' for m, p in v)}"
        for k, v in result["criteria_def"].items()
        if k in crits
    )
    return (
        "<p>The paper's Table 1: each algorithm's default (and native fine-tuning at its other learning rates), "
        "ranked per criterion by the normalised score averaged over categories, seeds and checkpoints (shown "
        "small, with its CI). <b>Rank 1 = best</b> (the paper numbers the other way: its highest rank is the "
        f"best). Criteria: {escape(desc)}.</p>"
        + table(pd.DataFrame(rows).fillna("–"), left=("criterion", *cols), raw_html=tuple(cols))
    )
