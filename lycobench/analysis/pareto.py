"""Scatter-panel points, Pareto fronts, and the correlations of the metric columns."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .columns import BASE, column_label, paper_levels


def point_estimates(scores: pd.DataFrame, category: str, metric: str, prompt_type: str) -> pd.DataFrame:
    """Per (cell, epoch): the normalised score averaged over seeds and classes of ``category`` and its
    error bar std / sqrt(n) over seeds x classes (the paper's scatter points). Base rows included."""
    s = scores[
        (scores["scope"] == "class")
        & (scores["category"] == category)
        & (scores["metric"] == metric)
        & (scores["prompt_type"] == prompt_type)
        & scores["score"].notna()
    ]
    s = paper_levels(s)
    if s.empty:
        return pd.DataFrame(columns=["cell", "epoch", "mean", "err", "n"])
    # several encoders of one metric: average them first, per class and seed
    s = s.groupby(["cell", "seed", "epoch", "group"], dropna=False)["score"].mean().reset_index()
    g = s.groupby(["cell", "epoch"])["score"].agg(["mean", "std", "count"]).reset_index()
    g["err"] = (g["std"] / np.sqrt(g["count"])).fillna(0.0)
    return g.rename(columns={"count": "n"})[["cell", "epoch", "mean", "err", "n"]]


def pareto_mask(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Points not dominated when both coordinates are to be maximised (normalised scores: 1 = best)."""
    pts = np.column_stack([x, y])
    keep = np.ones(len(pts), bool)
    for i, p in enumerate(pts):
        if np.isnan(p).any():
            keep[i] = False
            continue
        others = np.delete(pts, i, axis=0)
        others = others[~np.isnan(others).any(axis=1)]
        if ((others >= p).all(axis=1) & (others > p).any(axis=1)).any():
            keep[i] = False
    return keep


def pareto_table(points: dict) -> pd.DataFrame:
    """Every (configuration, epoch) seed-x-class mean on each scatter pair, with its membership of the
    pair's Pareto front (both axes maximised). ``points[(x, y)]`` = (x frame, y frame) of
    ``point_estimates``; the base model is left out of the front."""
    frames = []
    for (xcol, ycol), (px, py) in points.items():
        if px.empty or py.empty:
            continue
        m = px.merge(py, on=["cell", "epoch"], suffixes=("_x", "_y"))
        m = m[m["cell"] != BASE].reset_index(drop=True)
        if m.empty:
            continue
        m["front"] = pareto_mask(m["mean_x"].to_numpy(), m["mean_y"].to_numpy())
        frames.append(m.assign(x=f"{xcol[0]}({xcol[1]})", y=f"{ycol[0]}({ycol[1]})"))
    if not frames:
        return pd.DataFrame()
    cols = ["x", "y", "cell", "epoch", "mean_x", "err_x", "mean_y", "err_y", "front"]
    return pd.concat(frames, ignore_index=True)[cols]


def correlations(leaf_scores: pd.DataFrame) -> pd.DataFrame:
    """Pearson correlation of the normalised scores of every metric column, over (checkpoint, leaf) rows,
    no aggregation (the paper's App. E)."""
    s = leaf_scores[~leaf_scores["is_base"] & leaf_scores["score"].notna()]
    if s.empty:
        return pd.DataFrame()
    s = s.assign(column=column_label(s))
    wide = s.pivot_table(index=["cell", "seed", "step", "leaf"], columns="column", values="score")
    wide = wide.loc[:, wide.std() > 0]
    return wide.corr(method="pearson")
