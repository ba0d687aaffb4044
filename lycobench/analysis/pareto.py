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


MAP_SIZE = 16  # metric columns per correlation map: a larger map is not legible at page width


def correlation_maps(
    corr: pd.DataFrame, headline: set[tuple[str, str]]
) -> list[tuple[str, str, pd.DataFrame]]:
    """The correlation matrix cut into maps small enough to read, as (key, title, matrix): the paper's
    headline columns (``headline``: (metric, prompt type) pairs) across prompt types, then one map per
    prompt type (the paper reads prompt types separately; App. E), labelled without the prompt type. In
    each map the columns are in cluster order (average linkage on 1 - |r|), so metrics that move together
    sit together; a map of more than MAP_SIZE columns is cut into consecutive clusters."""
    if corr.shape[0] < 2:
        return []
    parts = {label: _column_of(label) for label in corr.index}
    groups: list[tuple[str, str, list[str]]] = []
    head = [c for c in corr.index if parts[c][:2] in headline]
    if len(head) >= 2:
        groups.append(("headline", "the paper's criteria and scatter columns, across prompt types", head))
    for ptype in sorted({p[1] for p in parts.values()}):
        cols = [c for c in corr.index if parts[c][1] == ptype]
        if len(cols) >= 2:
            groups.append((ptype, f"{ptype} prompts", cols))
    maps = []
    for key, title, cols in groups:
        ordered = cluster_order(corr.loc[cols, cols])
        k = -(-len(ordered) // MAP_SIZE)
        size = -(-len(ordered) // k)
        for i in range(k):
            chunk = ordered[i * size : (i + 1) * size]
            if len(chunk) < 2:
                continue
            sub = corr.loc[chunk, chunk]
            if key != "headline":  # the title names the prompt type
                short = [_without_prompt_type(c) for c in chunk]
                sub = sub.set_axis(short, axis=0).set_axis(short, axis=1)
            name = key if k == 1 else f"{key}-{i + 1}"
            maps.append((name, title if k == 1 else f"{title} ({i + 1} of {k})", sub))
    return maps


def cluster_order(corr: pd.DataFrame) -> list[str]:
    """The columns of a correlation matrix in the leaf order of an average-linkage clustering on the
    distance 1 - |r| (a missing r counts as 0)."""
    if corr.shape[0] <= 2:
        return list(corr.index)
    from scipy.cluster.hierarchy import leaves_list, linkage
    from scipy.spatial.distance import squareform

    d = 1.0 - np.abs(np.nan_to_num(corr.to_numpy(float), nan=0.0))
    d = (d + d.T) / 2
    np.fill_diagonal(d, 0.0)
    order = leaves_list(linkage(squareform(np.clip(d, 0, None), checks=False), method="average"))
    return [corr.index[i] for i in order]


def _column_of(label: str) -> tuple[str, str, str]:
    """(metric, prompt type, suffix) of a ``column_label``: 'vendi(trigger)[set]' -> ('vendi', 'trigger',
    '[set]')."""
    metric, rest = label.split("(", 1)
    ptype, suffix = rest.split(")", 1)
    return metric, ptype, suffix


def _without_prompt_type(label: str) -> str:
    metric, _, suffix = _column_of(label)
    return metric + suffix
