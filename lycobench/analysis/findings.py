"""Which of the paper's findings hold in this study? The claims are data (findings/claims.yaml); each is
tested by paired comparisons over seeds (same prompts, generation seeds, training seed and checkpoint
epoch) and gets a verdict: reproduced, contradicted, inconclusive, or not tested (the sweep varies no
factor it needs, or measured no metric it needs)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .columns import CRITERIA, criteria_for, measured, paper_levels
from .configs import _scale
from .verdicts import EXPECT, t_interval, verdict

CONTRASTS = ("epochs", "lr_higher", "attn_only", "capacity_higher", "algos")
CAPACITY = {"dim", "alpha", "factor"}  # the factors a capacity variation may change
COLUMN = re.compile(r"^([a-z0-9_]+)\(([a-z0-9_]+)\)$")  # metric(prompt type)


@dataclass(frozen=True)
class Claim:
    id: str
    contrast: str
    measure: str
    expect: str
    claim: str
    categories: tuple[str, ...] = ()  # empty: every category
    algos: tuple[str, ...] = ()  # empty: every algorithm
    a: str = ""  # algos contrast only
    b: str = ""


def claims_file() -> Path:
    from ..config import FINDINGS_DIR

    return FINDINGS_DIR / "claims.yaml"


def load_claims(path: Path | None = None) -> list[Claim]:
    """The claims of ``path`` (default findings/claims.yaml), checked: every problem in one error that
    names the file and the entry."""
    import yaml

    path = Path(path) if path is not None else claims_file()
    entries = yaml.safe_load(path.read_text(encoding="utf-8")) or []
    problems, out, seen = [], [], set()
    for i, e in enumerate(entries):
        where = f"{path}: entry {i + 1} ({e.get('id', 'no id') if isinstance(e, dict) else e!r})"
        if not isinstance(e, dict):
            problems.append(f"{where}: not a mapping")
            continue
        missing = [k for k in ("id", "contrast", "measure", "expect", "claim") if not e.get(k)]
        if missing:
            problems.append(f"{where}: missing {', '.join(missing)}")
            continue
        if e["id"] in seen:
            problems.append(f"{where}: id used twice")
        seen.add(e["id"])
        if e["contrast"] not in CONTRASTS:
            problems.append(f"{where}: contrast {e['contrast']!r}; use one of {', '.join(CONTRASTS)}")
        if e["expect"] not in EXPECT:
            problems.append(f"{where}: expect {e['expect']!r}; use better or worse")
        if e["measure"] not in CRITERIA and not COLUMN.match(str(e["measure"])):
            problems.append(f"{where}: measure {e['measure']!r}; use a criterion or metric(prompt type)")
        if e["contrast"] == "algos" and not (e.get("a") and e.get("b")):
            problems.append(f"{where}: an algos contrast needs a and b (algorithm names)")
        out.append(
            Claim(
                id=str(e["id"]),
                contrast=str(e["contrast"]),
                measure=str(e["measure"]),
                expect=str(e["expect"]),
                claim=" ".join(str(e["claim"]).split()),
                categories=tuple(e.get("categories") or ()),
                algos=tuple(e.get("algos") or ()),
                a=str(e.get("a") or ""),
                b=str(e.get("b") or ""),
            )
        )
    if problems:
        raise ValueError("findings: " + "; ".join(problems))
    return out


# --- which checkpoints a claim compares -------------------------------------------------------------


def claim_pairs(configs: pd.DataFrame, claim: Claim) -> list[tuple[str, str]]:
    """(a, b) configurations the claim compares; for ``epochs`` a == b (last against first checkpoint)."""
    every = configs.set_index("cell")
    c = every
    if claim.algos:
        c = c[c["algo"].isin(claim.algos)]
    pairs = []
    if claim.contrast == "epochs":
        return [(cell, cell) for cell in c.index]
    if claim.contrast == "algos":
        d = c[c["is_default"]]
        a, b = d.index[d["algo"] == claim.a], d.index[d["algo"] == claim.b]
        return [(a[0], b[0])] if len(a) and len(b) else []
    for cell, row in c[~c["is_default"]].iterrows():
        if row["default"] not in every.index:
            continue
        dflt = every.loc[row["default"]]
        varied = set(str(row["varied"]).split(","))
        if claim.contrast == "lr_higher" and varied == {"lr"}:
            pairs.append((cell, row["default"]) if row["lr"] > dflt["lr"] else (row["default"], cell))
        elif claim.contrast == "attn_only" and varied == {"target"}:
            if row["target"] == "attn-only" and dflt["target"] == "attn-mlp":
                pairs.append((cell, row["default"]))
        elif claim.contrast == "capacity_higher" and varied <= CAPACITY and row["algo"] != "full":
            same_scale = math.isclose(_scale(row), _scale(dflt), rel_tol=1e-9)
            level = row["capacity_level"]
            if same_scale and not pd.isna(level) and level != 1:
                pairs.append((cell, row["default"]) if level > 1 else (row["default"], cell))
    return pairs


NO_PAIR = {
    "epochs": "every run has a single checkpoint",
    "lr_higher": "the sweep varies no learning rate",
    "attn_only": "the sweep has no attention-only configuration beside an attn-mlp default",
    "capacity_higher": "the sweep varies no capacity at its default's alpha/dim",
    "algos": "the sweep lacks the default of {a} or of {b}",
}


# --- the measure of a claim, per checkpoint and category -----------------------------------------------


def measure_columns(measure: str, avail: set, criteria: dict) -> list[tuple[str, str]]:
    """The (metric, prompt type) columns behind a measure that the sweep measured (``avail``; criteria
    with their fallbacks, ``criteria_for``); empty when none was."""
    if measure in CRITERIA:
        return criteria.get(measure, [])
    metric, ptype = COLUMN.match(measure).groups()
    return [(metric, ptype)] if (metric, ptype) in avail else []


def measure_scores(scores: pd.DataFrame, columns: list[tuple[str, str]]) -> pd.DataFrame:
    """Category-scope normalised score of a measure per trained checkpoint: the mean of its columns (at
    the paper's level, encoders averaged), as criteria_scores computes a criterion."""
    s = scores[(scores["scope"] == "category") & ~scores["is_base"]]
    keep = np.zeros(len(s), bool)
    for metric, ptype in columns:
        keep |= ((s["metric"] == metric) & (s["prompt_type"] == ptype)).to_numpy()
    s = paper_levels(s[keep & s["score"].notna().to_numpy()])
    keys = ["category", "cell", "seed", "epoch"]
    return s.groupby(keys, dropna=False)["score"].mean().reset_index()


def pair_effects(ms: pd.DataFrame, pairs: list[tuple[str, str]], contrast: str) -> pd.DataFrame:
    """One row per (pair of runs, category): a's score minus b's, averaged over the checkpoints they
    share (same epoch; for ``epochs``, a run's last checkpoint against its first). Columns: a, b, seed,
    category, diff, n_checkpoints."""
    cols = ["a", "b", "seed", "category", "diff", "n_checkpoints"]
    if not pairs:
        return pd.DataFrame(columns=cols)
    p = pd.DataFrame(pairs, columns=["a", "b"]).drop_duplicates()
    run = ["cell", "seed", "category"]
    if contrast == "epochs":
        e = ms[ms["cell"].isin(p["a"])]
        g = e.groupby(run)["epoch"]
        last, first = e[e["epoch"] == g.transform("max")], e[e["epoch"] == g.transform("min")]
        m = last.merge(first, on=run, suffixes=("_a", "_b"))
        m = m[m["epoch_a"] > m["epoch_b"]].assign(a=lambda d: d["cell"], b=lambda d: d["cell"])
    else:
        a = ms.rename(columns={"cell": "a", "score": "score_a"}).merge(p, on="a")
        b = ms.rename(columns={"cell": "b", "score": "score_b"})
        m = a.merge(b, on=["b", "seed", "category", "epoch"])
    if m.empty:
        return pd.DataFrame(columns=cols)
    m = m.assign(d=m["score_a"] - m["score_b"])
    g = m.groupby(["a", "b", "seed", "category"])["d"].agg(["mean", "size"])
    return g.reset_index().rename(columns={"mean": "diff", "size": "n_checkpoints"})[cols]


# --- verdicts -----------------------------------------------------------------------------------------


def judge(effects: pd.DataFrame, expect: str) -> dict:
    """The verdict on one set of pair effects (one number per pair of runs). The interval's unit is the
    training seed: runs of one seed share their data order and diffusion noise whatever their
    configuration, so the pairs of one seed are averaged first and the t-interval runs over the seeds'
    means (counting every pair as independent made a null effect look real in up to half of the studies
    when seeds differ; tests/test_findings.py)."""
    x = effects["diff"].to_numpy(float)
    by_seed = effects.groupby("seed")["diff"].mean().to_numpy(float) if len(x) else x
    mean, lo, hi = t_interval(by_seed)
    sd = float(np.std(by_seed, ddof=1)) if len(by_seed) > 1 else math.nan
    return dict(
        verdict=verdict(lo, hi, expect, len(x)),
        effect=mean,
        ci_lo=lo,
        ci_hi=hi,
        d_z=mean / sd if sd and sd > 0 else math.nan,
        n_pairs=len(x),
        n_checkpoints=int(effects["n_checkpoints"].sum()) if len(x) else 0,
        n_seeds=len(by_seed),
    )


COLUMNS = ["id", "category", "verdict", "effect", "ci_lo", "ci_hi", "d_z", "n_pairs", "n_checkpoints",
           "n_seeds", "contrast", "measure", "expect", "compared", "reason", "claim"]  # fmt: skip


def findings_table(scores: pd.DataFrame, configs: pd.DataFrame, claims: list[Claim]) -> pd.DataFrame:
    """Every claim's verdict pooled over its categories (``category`` = all, or the listed categories
    joined by +), then per category. ``effect``: the mean over pairs of runs of a's normalised score
    minus b's (positive: a better), with its 95% t-interval over the training seeds' means (``judge``),
    d_z = effect / sd of those means, and the counts behind it."""
    rows = []
    scores = scores[(scores["scope"] == "category") & ~scores["is_base"]]
    studied = sorted(set(scores["group"]))
    avail, criteria = measured(scores), criteria_for(scores)  # once: each scans every row
    cache: dict[str, pd.DataFrame] = {}
    for cl in claims:
        base = dict(id=cl.id, contrast=cl.contrast, measure=cl.measure, expect=cl.expect, claim=cl.claim)
        cats = [c for c in (cl.categories or studied) if c in studied]
        pooled = "+".join(cl.categories) if cl.categories else "all"
        columns = measure_columns(cl.measure, avail, criteria)
        pairs = claim_pairs(configs, cl)
        why = ""
        if cl.categories and not cats:
            why = f"the study has no {' or '.join(cl.categories)} concept"
        elif not columns:
            why = f"the sweep measured no {cl.measure}"
        elif not pairs:
            why = NO_PAIR[cl.contrast].format(a=cl.a, b=cl.b) + (
                f" (of {', '.join(cl.algos)})" if cl.algos else ""
            )
        if why:
            rows.append({**base, "category": pooled, "verdict": "not tested", "n_pairs": 0, "reason": why})
            continue
        if cl.measure not in cache:
            cache[cl.measure] = measure_scores(scores, columns)
        eff = pair_effects(cache[cl.measure], pairs, cl.contrast)
        eff = eff[eff["category"].isin(cats)]
        compared = "; ".join(f"{a} vs {b}" if a != b else f"{a}: last vs first epoch" for a, b in pairs)
        # pooled: the mean over the claim's categories, per pair of runs (the paper's mean over categories)
        pool = eff.groupby(["a", "b", "seed"]).agg(
            diff=("diff", "mean"), n_checkpoints=("n_checkpoints", "sum")
        )
        for category, part in [(pooled, pool.reset_index()), *((c, eff[eff["category"] == c]) for c in cats)]:
            res = judge(part, cl.expect)
            reason = "" if res["n_pairs"] else NO_PAIR[cl.contrast].format(a=cl.a, b=cl.b)
            if res["n_pairs"] and res["n_seeds"] == 1:
                reason = "one training seed: no interval"
            elif res["n_seeds"] > 1 and math.isnan(res["ci_lo"]):
                reason = "the same effect in every seed (a saturated score): no interval"
            rows.append({**base, "category": category, **res, "compared": compared, "reason": reason})
    out = pd.DataFrame(rows, columns=COLUMNS)
    out["n_pairs"] = out["n_pairs"].fillna(0).astype(int)
    return out


def headline(findings: pd.DataFrame) -> pd.DataFrame:
    """One row per claim: its pooled verdict (the first row of each claim)."""
    return findings.groupby("id", sort=False).head(1).reset_index(drop=True)
