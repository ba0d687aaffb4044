"""The study's Table 1 against the paper's (findings/table1.yaml): Kendall's tau between the two rankings
per criterion, with a bootstrap interval over seeds, stated as agreement or not."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from .columns import NATIVE
from .verdicts import agreement, tau_bootstrap

MIN_CONFIGS = 3  # with two configurations tau is +1 or -1 whatever the data


def load_table1(path: Path | None = None) -> dict[str, dict[str, float]]:
    """criterion -> role -> the paper's rank (higher = better)."""
    import yaml

    from ..config import FINDINGS_DIR

    path = Path(path) if path is not None else FINDINGS_DIR / "table1.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return {str(k): {str(r): float(v) for r, v in ranks.items()} for k, ranks in data.items()}


def table1_roles(configs: pd.DataFrame) -> dict[str, str]:
    """role -> configuration: each algorithm's default under its own name, and ``full-lr-up``: native
    fine-tuning at the next learning rate above its default (LR level 3; the paper's 5e-6)."""
    out = {str(r.algo): str(r.cell) for r in configs[configs["is_default"]].itertuples()}
    up = configs[(configs["algo"] == NATIVE) & (configs["varied"] == "lr") & (configs["lr_level"] == 3)]
    if len(up):
        out[f"{NATIVE}-lr-up"] = str(up["cell"].iloc[0])
    return out


COLUMNS = ["criterion", "group", "verdict", "tau", "ci_lo", "ci_hi", "n_configs", "n_seeds",
           "study_order", "paper_order", "reason"]  # fmt: skip


def table1_agreement(crit: pd.DataFrame, configs: pd.DataFrame, paper: dict | None = None) -> pd.DataFrame:
    """Per criterion the paper ranks, and per scope group (all, then each category): tau between the
    study's mean criterion score (over seeds and checkpoints) and the paper's rank, over the Table-1
    configurations the sweep has, with a bootstrap CI over the seeds every one of them shares. Orders are
    written best first as role=configuration."""
    paper = load_table1() if paper is None else paper
    roles = table1_roles(configs)
    c = crit[~crit["is_base"]] if "is_base" in crit else crit
    rows = []
    groups = ["all", *sorted(set(c.loc[c["scope"] == "category", "group"]))]
    for criterion, ranks in paper.items():
        present = {r: roles[r] for r in ranks if r in roles}
        paper_order = ", ".join(sorted(ranks, key=lambda r: -ranks[r]))
        for group in groups:
            base = dict(criterion=criterion, group=group, paper_order=paper_order, n_configs=len(present))
            g = c[(c["criterion"] == criterion) & (c["group"] == group) & c["cell"].isin(present.values())]
            if len(present) < MIN_CONFIGS or g.empty:
                why = (
                    f"the sweep has {len(present)} of Table 1's configurations (needs {MIN_CONFIGS})"
                    if len(present) < MIN_CONFIGS
                    else f"the sweep measured no {criterion}"
                )
                if group == "all" or len(present) >= MIN_CONFIGS:
                    rows.append({**base, "verdict": "not tested", "reason": why})
                continue
            per = g.groupby(["cell", "seed"])["score"].mean().unstack("seed")
            per = per.dropna(axis=1)  # the seeds every configuration has
            order = [r for r in present if present[r] in per.index]
            if len(order) < MIN_CONFIGS:  # a configuration without scores here: tau over 2 is always +-1
                why = f"{len(order)} of Table 1's configurations have {criterion} scores here (needs {MIN_CONFIGS})"
                rows.append({**base, "n_configs": len(order), "verdict": "not tested", "reason": why})
                continue
            M = per.loc[[present[r] for r in order]].to_numpy(float)
            ref = np.array([ranks[r] for r in order])
            tau, lo, hi = tau_bootstrap(M, ref) if M.shape[1] else (math.nan,) * 3
            means = M.mean(1) if M.shape[1] else np.full(len(order), np.nan)
            study = ", ".join(f"{r}={present[r]}" for r, _ in sorted(zip(order, means), key=lambda t: -t[1]))
            reason = "" if M.shape[1] > 1 else "one shared seed: no interval"
            if M.shape[1] > 1 and lo == hi:  # the reader should know the interval is not a spread
                reason = f"every one of the {M.shape[1]} seeds gives this tau"
            rows.append(
                {
                    **base,
                    "verdict": agreement(tau, lo, hi) if M.shape[1] > 1 else "unclear",
                    "tau": tau,
                    "ci_lo": lo,
                    "ci_hi": hi,
                    "n_configs": len(order),
                    "n_seeds": M.shape[1],
                    "study_order": study,
                    "reason": reason,
                }
            )
    return pd.DataFrame(rows, columns=COLUMNS)
