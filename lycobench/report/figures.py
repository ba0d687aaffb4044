"""The report's figures (scatter panels, Pareto fronts, metric curves, the correlation maps), drawn in
worker processes and cached by the content of their inputs."""

from __future__ import annotations

from pathlib import Path

from .cache import Cache, frame_key, slug


def draw_figures(scores, summary, configs, corr, out: Path, cache: Cache, result: dict) -> None:
    """Scatter panels and Pareto fronts per category and epoch, metric curves per category, the
    correlation maps (headline columns, then per prompt type); each skipped with a note when its metrics
    are absent."""
    from functools import partial

    import numpy as np
    import pandas as pd

    from .. import analysis as an
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
        c = an.paper_levels(curves[keep])  # one panel per column, at the paper's level
        title = (
            f"{cat}: the paper's criteria over checkpoints (raw; mean over seeds, 95% t-interval over seeds)"
        )
        draw(
            "Metric curves", cat, f"plots/curves/{slug(cat)}.png",
            frame_key(c, style), partial(plots.metric_curves, c, configs, title),
        )  # fmt: skip
    if fronts:
        table = pd.concat(fronts, ignore_index=True)
        cache.table("pareto.csv", table.to_csv(index=False, float_format="%.6g"))
    headline = {c for cols in an.criteria_for(scores).values() for c in cols}
    headline |= {c for pair in an.scatter_pairs_for(scores) for c in pair}
    maps = an.correlation_maps(corr, headline)
    for key, title, sub in maps:
        draw(
            "Correlations", title, f"plots/correlation/{slug(key)}.png", frame_key(sub.reset_index(), extra=title),
            partial(plots.correlation_heatmap, sub, f"Pearson r of normalised scores: {title}"),
            caption="leaf level, no aggregation; columns in cluster order",
        )  # fmt: skip
    if not maps:
        result["skipped"].append(("Correlations", "correlation maps", "fewer than two metric columns vary"))
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
