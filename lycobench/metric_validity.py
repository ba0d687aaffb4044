"""Metric validity in the embedded world: do the CLIP/DINO-style metrics rank checkpoints as the oracle does?

For each pair (encoder metric, its oracle counterpart) and prompt type, the Spearman correlation of the two
across the sweep's checkpoints (configuration x seed x step; the base model left out, as in the paper's rank
pool), per leaf and over the mean of the leaves. ``agreement`` is the correlation signed so that +1 means
the two metrics always agree on which checkpoint is better (a lower-is-better metric against a
higher-is-better one is negated). Needs a sweep evaluated with an oracle (``encoders=world``).

``compute(sweep_dir) -> DataFrame``; ``write(sweep_dir)`` stores it as report/metrics_validity.csv.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .metrics import METRICS
from .store import atomic_write_text, evaluated_runs

COLUMNS = [
    "proxy",
    "proxy_encoder",
    "proxy_level",
    "oracle",
    "oracle_level",
    "prompt_type",
    "leaf",
    "n",
    "spearman",
    "agreement",
    "p_value",
    "note",
]
CHECKPOINT = ["cell", "seed", "step"]
ALL_LEAVES = "all"


@dataclass(frozen=True)
class Pair:
    proxy: str
    oracle: str
    prompt_types: tuple[str, ...] | None = None  # None: every prompt type both metrics have


FIDELITY_TYPES = ("train", "trigger", "alter")
PAIRS = (
    Pair("image_similarity", "concept_detection", FIDELITY_TYPES),
    Pair("squared_centroid_distance", "concept_detection", FIDELITY_TYPES),
    Pair("kid", "concept_detection", FIDELITY_TYPES),
    Pair("frechet_distance", "concept_detection", FIDELITY_TYPES),
    Pair("style_distance", "concept_detection", FIDELITY_TYPES),
    Pair("text_similarity", "attribute_accuracy"),
    Pair("vendi", "oracle_vendi"),
    Pair("base_drift", "oracle_drift"),
    Pair("style_loss", "oracle_drift"),
)


def load_metrics(sweep_dir: Path) -> pd.DataFrame:
    """Every evaluated run's metrics.parquet, with its cell and seed (runs without an evaluate marker are
    left out: they are unfinished)."""
    frames = [
        pd.read_parquet(root / "metrics.parquet").assign(cell=cell, seed=seed)
        for root, cell, seed in evaluated_runs(sweep_dir)
    ]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _spearman(a: np.ndarray, b: np.ndarray) -> tuple[float, float, str]:
    from scipy.stats import spearmanr

    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan"), float("nan"), "constant across checkpoints: no correlation"
    r = spearmanr(a, b)
    return float(r.statistic), float(r.pvalue), ""


def _correlate(points: pd.DataFrame, base: dict, leaf: str, sign: float) -> dict | None:
    if len(points) < 3:
        return None
    rho, p, note = _spearman(points["value_p"].to_numpy(float), points["value_o"].to_numpy(float))
    return {
        **base,
        "leaf": leaf,
        "n": len(points),
        "spearman": rho,
        "agreement": sign * rho,
        "p_value": p,
        "note": note,
    }


def compute(sweep_dir: Path | str, include_base: bool = False, pairs=PAIRS) -> pd.DataFrame:
    """The validity table of a sweep (columns ``COLUMNS``); empty when the sweep has no oracle metrics."""
    m = load_metrics(Path(sweep_dir))
    rows: list[dict] = []
    if m.empty:
        return pd.DataFrame(columns=COLUMNS)
    if not include_base:
        m = m[m["step"] != 0]
    key = [*CHECKPOINT, "leaf", "prompt_type"]
    for pair in pairs:
        proxy, oracle = m[m["metric"] == pair.proxy], m[m["metric"] == pair.oracle]
        if proxy.empty or oracle.empty:
            continue
        sign = 1.0 if METRICS[pair.proxy].higher_is_better == METRICS[pair.oracle].higher_is_better else -1.0
        oracle_levels = set(oracle["level"])
        for (enc, level), p in proxy.groupby(["encoder", "level"]):
            olevel = level if level in oracle_levels else sorted(oracle_levels)[0]
            o = oracle[oracle["level"] == olevel]
            both = p[[*key, "value"]].merge(o[[*key, "value"]], on=key, suffixes=("_p", "_o"))
            for ptype, t in both.groupby("prompt_type"):
                if pair.prompt_types is not None and ptype not in pair.prompt_types:
                    continue
                base = {
                    "proxy": pair.proxy,
                    "proxy_encoder": enc,
                    "proxy_level": level,
                    "oracle": pair.oracle,
                    "oracle_level": olevel,
                    "prompt_type": ptype,
                }
                for leaf, points in t.groupby("leaf"):
                    rows.append(_correlate(points, base, leaf, sign))
                mean = t.groupby(CHECKPOINT)[["value_p", "value_o"]].mean().reset_index()
                rows.append(_correlate(mean, base, ALL_LEAVES, sign))
    out = pd.DataFrame([r for r in rows if r is not None], columns=COLUMNS)
    return out.sort_values(
        ["proxy", "proxy_encoder", "proxy_level", "prompt_type", "leaf"], ignore_index=True
    )


def write(
    sweep_dir: Path | str, out_dir: Path | str | None = None, table: pd.DataFrame | None = None
) -> Path:
    """report/metrics_validity.csv (rewritten only when its content changes); ``table``: ``compute``'s
    result when the caller has it already."""
    path = Path(out_dir or Path(sweep_dir) / "report") / "metrics_validity.csv"
    text = (compute(sweep_dir) if table is None else table).to_csv(index=False)
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        atomic_write_text(path, text)
    return path
