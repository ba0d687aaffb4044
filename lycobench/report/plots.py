"""The report's figures as PNG files, headless (matplotlib's Agg canvas, no pyplot state).

Each function draws one figure from tidy frames and writes it atomically; when its inputs are absent it
raises ``Skip`` with a sentence for the report instead of drawing an empty figure.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..analysis import FIT_FEATURES, NULL, ShapResult
from ..store import atomic_write_bytes

# The paper's colours for the algorithms (LoRA blue, LoHa purple, LoKr purple-red, native red).
ALGO_COLOURS = {"lora": "#1f5fbf", "loha": "#7b3fb5", "lokr": "#b0306e", "full": "#d62728", "base": "#000000"}
OTHER_COLOURS = ["#2ca02c", "#ff7f0e", "#17becf", "#8c564b", "#bcbd22", "#7f7f7f"]
TARGET_COLOURS = {"attn-only": "#1b9e77", "attn-mlp": "#d95f02", "full": "#7570b3"}
VARIED_MARKERS = {
    "": "o",
    "target": "D",
    "lr": "^",
    "dim": "s",
    "factor": "s",
    "alpha": "v",
    "dim,alpha": "s",
}
DPI = 80  # figures stay legible; PNGs 36% smaller than at 100 (the published study is in git)


class Skip(Exception):
    """The figure cannot be drawn from what the sweep measured; the message says why."""


def colour_of(value: str, palette: dict[str, str]) -> str:
    if value in palette:
        return palette[value]
    return OTHER_COLOURS[sum(map(ord, str(value))) % len(OTHER_COLOURS)]


def save(fig: Figure, path: Path) -> None:
    """PNG without a creation date or software version, so an unchanged figure is byte-identical."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    atomic_write_bytes(path, buf.getvalue())


def margins(fig: Figure, left=0.8, right=0.2, top=0.6, bottom=0.6, wspace=0.3, hspace=0.5) -> None:
    """Fixed margins in inches: tight_layout measures every text and doubles the drawing time."""
    w, h = fig.get_size_inches()
    fig.subplots_adjust(
        left=left / w, right=1 - right / w, top=1 - top / h, bottom=bottom / h, wspace=wspace, hspace=hspace
    )


def _arrow(higher_is_better) -> str:
    return (
        "" if higher_is_better is None or pd.isna(higher_is_better) else (" ↑" if higher_is_better else " ↓")
    )


# --- SHAP beeswarm ------------------------------------------------------------------------------------


def _swarm_offsets(x: np.ndarray, width: float = 0.38, nbins: int = 40) -> np.ndarray:
    """Vertical offsets that stack points falling in the same x bin, alternately above and below."""
    if len(x) == 0 or np.ptp(x) == 0:
        order = np.arange(len(x))
        bins = np.zeros(len(x), int)
    else:
        bins = np.floor((x - x.min()) / np.ptp(x) * (nbins - 1)).astype(int)
        order = np.argsort(x, kind="stable")
    off = np.zeros(len(x))
    counts: dict[int, int] = {}
    for i in order:
        k = counts.get(bins[i], 0)
        counts[bins[i]] = k + 1
        off[i] = ((k + 1) // 2) * (1 if k % 2 else -1)
    peak = max(1.0, np.abs(off).max())
    return off / peak * width


def beeswarm(res: ShapResult, title: str, path: Path) -> None:
    """The paper's summary plot (sort=False, features in the paper's order, top to bottom), then the
    planted null below a dashed line; categorical features coloured by category (legend), numeric ones
    from low (blue) to high (red), NaN grey. A feature whose importance does not beat the null is drawn
    grey, its label saying why (null_check)."""
    if res.shap is None:
        raise Skip(res.note)
    import matplotlib.colors

    fig = Figure(figsize=(7.6, 4.8))
    ax = fig.add_subplot()
    cmap = matplotlib.colors.LinearSegmentedColormap.from_list("shap", ["#008bfb", "#7a3bd0", "#ff0052"])
    handles = {}
    feats = [f for f in FIT_FEATURES if f in res.X.columns][: res.shap.shape[1]]
    att = {a["feature"]: a for a in res.attribution}
    labels = []
    n = len(feats)
    for i, feat in enumerate(feats):
        yrow = n - 1 - i
        x = res.shap[:, i]
        y = yrow + _swarm_offsets(x)
        vals = res.X[feat]
        grey = feat in att and not att[feat]["real"]
        if grey:
            cols = ["#c8c8c8"] * len(x)
        elif feat in ("Algorithm", "Trained Layers"):
            palette = ALGO_COLOURS if feat == "Algorithm" else TARGET_COLOURS
            cols = [colour_of(v, palette) for v in vals]
            for v in sorted(set(vals)):
                handles[f"{feat}: {v}"] = colour_of(v, palette)
        else:
            v = vals.to_numpy(float)
            ok = ~np.isnan(v)
            lo, hi = (np.nanmin(v), np.nanmax(v)) if ok.any() else (0, 1)
            t = np.where(ok, (v - lo) / (hi - lo) if hi > lo else 0.5, 0.5)
            cols = [cmap(ti) if oki else "#bbbbbb" for ti, oki in zip(t, ok)]
        ax.scatter(x, y, c=cols, s=14, alpha=0.85, linewidths=0)
        labels.append(feat + (f"\n({_short(att[feat])})" if grey else ""))
    if NULL in feats:
        ax.axhline(n - 1 - feats.index(NULL) + 0.5, color="#888888", lw=0.8, ls="--")
    ax.axvline(0, color="#888888", lw=0.8)
    ax.set_yticks(range(n), list(reversed(labels)), fontsize=8)
    for tick, label in zip(ax.get_yticklabels(), reversed(labels)):
        tick.set_color("#999999" if "\n(" in label else "#000000")
    ax.set_xlabel("SHAP value (effect on the normalised score)")
    flag = "" if res.reliable else "  [UNRELIABLE]"
    r2 = f"R² cv {res.r2_cv:.2f} ({res.n_folds}-fold by seed), train {res.r2_train:.2f}, n={len(res.y)}"
    ax.set_title(f"{title}\n{r2}{flag}", fontsize=10, color="#000000" if res.reliable else "#b00000")
    from matplotlib.lines import Line2D

    legend = [Line2D([], [], ls="", marker="o", color=c, label=k) for k, c in handles.items()]
    legend.append(Line2D([], [], ls="", marker="o", color=cmap(0.0), label="numeric: low"))
    legend.append(Line2D([], [], ls="", marker="o", color=cmap(1.0), label="numeric: high"))
    legend.append(Line2D([], [], ls="", marker="o", color="#c8c8c8", label="not above the null"))
    ax.legend(handles=legend, fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    margins(fig, left=1.5, right=2.3, top=0.7, bottom=0.55)
    save(fig, path)


def _short(att: dict) -> str:
    """A few words for a greyed-out feature's label; the full reason is in shap/importance.csv."""
    why = att["reason"]
    if att["feature"] == NULL:
        return "the line to beat"
    if why.startswith("not varied"):
        return "not varied"
    if "unreliable" in why or "R^2" in why:
        return "model unreliable"
    if att.get("refits"):
        return f"beats null {att['beats_null'] or 0}/{att['refits']}"
    return "not above null"


# --- scatter panels and Pareto fronts --------------------------------------------------------------


def _label(metric: str, ptype: str) -> str:
    return f"{metric}({ptype})"


def _style(cell: str, configs: pd.DataFrame) -> tuple[str, str]:
    if cell == "base":
        return ALGO_COLOURS["base"], "*"
    row = configs.set_index("cell").loc[cell]
    return colour_of(row["algo"], ALGO_COLOURS), VARIED_MARKERS.get(row["varied"] or "", "P")


def scatter_panels(points: dict, configs: pd.DataFrame, title: str, path: Path) -> list[str]:
    """The paper's three panels for one category and one epoch: each configuration's seed x class mean with
    std/sqrt(n) error bars, the base model as a black star. ``points[(x, y)]`` = (x frame, y frame) from
    ``analysis.point_estimates``. Returns notes for the panels that had to be left out."""
    drawn, notes = [], []
    for (xcol, ycol), (px, py) in points.items():
        if px is None or px.empty or py is None or py.empty:
            missing = [_label(*c) for c, p in ((xcol, px), (ycol, py)) if p is None or p.empty]
            notes.append(f"{_label(*ycol)} vs {_label(*xcol)}: not measured ({', '.join(missing)})")
            continue
        drawn.append((xcol, ycol, px.merge(py, on=["cell", "epoch"], suffixes=("_x", "_y"))))
    if not drawn:
        raise Skip("; ".join(notes))
    fig = Figure(figsize=(5.0 * len(drawn), 4.6))
    for k, (xcol, ycol, m) in enumerate(drawn):
        ax = fig.add_subplot(1, len(drawn), k + 1)
        styles = [_style(c, configs) for c in m["cell"]]
        for colour, marker in dict.fromkeys(styles):  # one call per style: errorbar is slow per point
            g = m[[st == (colour, marker) for st in styles]]
            ax.errorbar(
                g["mean_x"], g["mean_y"], xerr=g["err_x"], yerr=g["err_y"], fmt=marker, color=colour,
                ms=9 if marker == "*" else 6, capsize=2, lw=0.8,
            )  # fmt: skip
        for r in m.itertuples():
            ax.annotate(r.cell, (r.mean_x, r.mean_y), fontsize=6, xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel(f"{_label(*xcol)} (normalised, 1 = best)")
        ax.set_ylabel(f"{_label(*ycol)} (normalised, 1 = best)")
        ax.margins(0.1)
        ax.grid(alpha=0.3)
    _algo_legend(fig, configs)
    fig.suptitle(title, fontsize=11)
    margins(fig, left=0.7, right=0.2, top=0.5, bottom=0.95, wspace=0.28)
    save(fig, path)
    return notes


def _algo_legend(fig: Figure, configs: pd.DataFrame) -> None:
    from matplotlib.lines import Line2D

    items = [Line2D([], [], ls="", marker="*", color="k", ms=9, label="base model")]
    for algo in sorted(configs["algo"].unique()):
        items.append(Line2D([], [], ls="", marker="o", color=colour_of(algo, ALGO_COLOURS), label=algo))
    for varied, m in (("default", "o"), ("target", "D"), ("lr", "^"), ("capacity", "s"), ("alpha", "v")):
        items.append(Line2D([], [], ls="", marker=m, color="#555555", label=varied))
    fig.legend(handles=items, loc="lower center", ncol=len(items), fontsize=7, frameon=False)


def pareto_panels(table: pd.DataFrame, configs: pd.DataFrame, title: str, path: Path) -> None:
    """Every (configuration, epoch) as a seed mean on each of the paper's pairs, the Pareto front (both
    axes maximised) dashed and labelled; ``table`` from ``analysis.pareto_table``."""
    if table.empty:
        raise Skip("none of the paper's metric pairs was measured")
    pairs = list(dict.fromkeys(zip(table["x"], table["y"])))
    fig = Figure(figsize=(5.0 * len(pairs), 4.6))
    for k, (xl, yl) in enumerate(pairs):
        ax = fig.add_subplot(1, len(pairs), k + 1)
        m = table[(table["x"] == xl) & (table["y"] == yl)]
        for r in m.itertuples():
            colour, marker = _style(r.cell, configs)
            ax.plot(r.mean_x, r.mean_y, marker, color=colour, ms=6, alpha=1.0 if r.front else 0.35)
        f = m[m["front"]].sort_values("mean_x")
        ax.step(f["mean_x"], f["mean_y"], where="pre", color="#333333", lw=1, ls="--")
        for r in f.itertuples():
            ax.annotate(
                f"{r.cell}@{r.epoch:g}",
                (r.mean_x, r.mean_y),
                fontsize=6,
                xytext=(3, 3),
                textcoords="offset points",
            )
        ax.set_xlabel(f"{xl} (normalised, 1 = best)")
        ax.set_ylabel(f"{yl} (normalised, 1 = best)")
        ax.grid(alpha=0.3)
    _algo_legend(fig, configs)
    fig.suptitle(title, fontsize=11)
    margins(fig, left=0.7, right=0.2, top=0.5, bottom=0.95, wspace=0.28)
    save(fig, path)


# --- curves over checkpoints, correlations ----------------------------------------------------------


def metric_curves(summary: pd.DataFrame, configs: pd.DataFrame, title: str, path: Path) -> None:
    """Raw metric per checkpoint (epoch), one line per configuration starting from the base model at
    epoch 0, with the t-interval over seeds as a band; one panel per metric column."""
    if summary.empty:
        raise Skip("no metric values for this group")
    cols = summary[["metric", "prompt_type", "encoder", "level", "higher_is_better"]].drop_duplicates(
        ["metric", "prompt_type", "encoder", "level"]
    )
    cols = cols.sort_values(["metric", "prompt_type", "encoder", "level"]).reset_index(drop=True)
    ncol = min(5, len(cols))
    nrow = int(np.ceil(len(cols) / ncol))
    cells = sorted(c for c in summary["cell"].unique() if c != "base")
    width = max(3.4 * ncol, 7.0)
    per_row = max(1, int(width / 1.3))  # legend entries per row
    legend_h = 0.22 * int(np.ceil(len(cells) / per_row))
    fig = Figure(figsize=(width, 2.9 * nrow + 0.9 + legend_h))
    several = cols.groupby(["metric", "prompt_type"])["level"].transform("size") > 1
    algo = configs.set_index("cell")["algo"]
    styles = {
        c: ("-", "--", ":", "-.")[sorted(x for x in cells if algo.get(x) == algo.get(c)).index(c) % 4]
        for c in cells
    }
    for k, col in enumerate(cols.itertuples()):
        ax = fig.add_subplot(nrow, ncol, k + 1)
        s = summary[
            (summary["metric"] == col.metric)
            & (summary["prompt_type"] == col.prompt_type)
            & (summary["encoder"] == col.encoder)
            & (summary["level"] == col.level)
        ]
        base = s[s["cell"] == "base"]
        for cell in cells:
            c = s[s["cell"] == cell].sort_values("epoch")
            if c.empty:
                continue
            x = np.r_[base["epoch"].to_numpy(float)[:1], c["epoch"].to_numpy(float)]
            y = np.r_[base["raw"].to_numpy(float)[:1], c["raw"].to_numpy(float)]
            colour, marker = _style(cell, configs)
            ax.plot(x, y, marker=marker, ms=3, lw=1, ls=styles[cell], color=colour, label=cell)
            ax.fill_between(c["epoch"], c["raw_lo"], c["raw_hi"], color=colour, alpha=0.12, lw=0)
        if not base.empty:
            ax.axhline(float(base["raw"].iloc[0]), color="k", lw=0.7, ls=":")
        extra = f" [{col.encoder}, {col.level}]" if several.iloc[k] else ""
        ax.set_title(
            f"{col.metric}({col.prompt_type}){extra}{_arrow(col.higher_is_better)}", fontsize=8, pad=13
        )
        ax.tick_params(labelsize=7)
        ax.locator_params(nbins=4)
        ax.grid(alpha=0.3)
    H = fig.get_size_inches()[1]
    fig.supxlabel(
        "epoch (0 = base model; dotted: the base model's value)", fontsize=8, y=(legend_h + 0.15) / H
    )
    handles, labels = fig.axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(per_row, len(labels)), fontsize=7, frameon=False)
    fig.suptitle(title, fontsize=10)
    margins(fig, left=0.6, right=0.2, top=0.6, bottom=0.75 + legend_h, wspace=0.3, hspace=0.6)
    save(fig, path)


def correlation_heatmap(corr: pd.DataFrame, title: str, path: Path) -> None:
    """One Pearson correlation map (at most ``analysis.MAP_SIZE`` columns: legible at page width), every
    cell labelled with its r; margins in inches from the longest metric name, so names always fit."""
    if corr.shape[0] < 2:
        raise Skip("fewer than two metric columns vary over the checkpoints")
    n = corr.shape[0]
    longest = max(len(str(c)) for c in corr.index)
    label_in = 0.3 + longest * 0.06  # 8-pt characters
    cell, left, bottom, top, right = 0.5, label_in, label_in * 0.8 + 0.1, 0.7, 1.1
    W, H = left + n * cell + right, bottom + n * cell + top
    fig = Figure(figsize=(max(W, 5.0), H))
    W = fig.get_size_inches()[0]
    ax = fig.add_axes((left / W, bottom / H, n * cell / W, n * cell / H))
    cax = fig.add_axes(((left + n * cell + 0.2) / W, bottom / H, 0.15 / W, n * cell / H))
    im = ax.imshow(corr.to_numpy(), cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
    ax.set_xticks(range(n), corr.columns, rotation=50, ha="right", rotation_mode="anchor", fontsize=8)
    ax.set_yticks(range(n), corr.index, fontsize=8)
    for i in range(n):
        for j in range(n):
            v = corr.iat[i, j]
            if not np.isnan(v):
                colour = "w" if abs(v) > 0.6 else "k"
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color=colour)
    fig.colorbar(im, cax=cax)
    cax.tick_params(labelsize=8)
    cax.set_ylabel("Pearson r", fontsize=8)
    fig.suptitle(title, fontsize=10, x=0.02, ha="left", y=1 - 0.15 / H, va="top")
    save(fig, path)
