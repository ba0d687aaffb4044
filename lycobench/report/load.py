"""Reading a sweep's finished runs into the frames the report works on (metrics.csv, the analysis's raw frame)."""

from __future__ import annotations

from pathlib import Path

from ..store import read_json


def epochs_of(root: Path) -> dict[int, float]:
    """step -> epoch of each checkpoint, from train_log.csv (a checkpoint is the last step of its epoch)."""
    import pandas as pd

    log = root / "train_log.csv"
    if not log.is_file():
        return {}
    t = pd.read_csv(log, usecols=["step", "epoch"])
    return {int(s): float(e) for s, e in zip(t["step"], t["epoch"])}


def categories_of(finished: list[dict]) -> dict[str, str]:
    """concept -> category, read from the concept definitions named in each run's config.yaml."""
    import yaml

    from ..analysis import category_of_leaves

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser: ~10x faster
    specs: list[str] = []
    for r in finished:
        cfg = r["root"] / "config.yaml"
        if cfg.is_file():
            specs += list(
                (yaml.load(cfg.read_text(encoding="utf-8"), Loader=loader) or {}).get("concepts") or []
            )
        info = read_json(r["root"] / "run.json")
        specs += list(info.get("provenance", {}).get("concepts", []))
    return category_of_leaves(list(dict.fromkeys(specs)))


def load_metrics(finished: list[dict]):
    """(metrics.csv frame, leaf-level raw frame for the analysis, notes). In the raw frame the base model
    (step 0, present in every run) appears once per model, as cell 'base'."""
    import numpy as np
    import pandas as pd

    from ..analysis import EXTRA, FACTORS, ID

    notes: list[str] = []
    legacy, frames = [], []
    categories = categories_of(finished)
    for r in finished:
        m = pd.read_parquet(r["root"] / "metrics.parquet")
        lg = m.copy()
        lg.insert(0, "seed", r["seed"])
        lg.insert(0, "cell", r["cell"])
        for k, v in r["factors"].items():
            lg[f"factor_{k}"] = v
        legacy.append(lg)
        epochs = epochs_of(r["root"])
        steps = sorted(int(s) for s in m["step"].unique() if s > 0)
        ckpt = {s: i + 1 for i, s in enumerate(steps)}
        if any(s not in epochs for s in steps):
            notes.append(
                f"{r['root']}/train_log.csv: no epoch for some checkpoints; using checkpoint numbers"
            )
            epochs = {s: float(i) for s, i in ckpt.items()}
        m = m.assign(cell=r["cell"], seed=r["seed"])
        m["epoch"] = m["step"].map({**epochs, 0: 0.0}).astype(float)
        m["checkpoint"] = m["step"].map(ckpt).fillna(0).astype(int)
        for f in FACTORS:
            m[f] = r["factors"].get(f)
        for k, v in r["factors"].items():
            if k not in FACTORS:
                m[EXTRA + k] = v
        frames.append(m)
    metrics = (
        pd.concat(legacy, ignore_index=True)
        if legacy
        else pd.DataFrame(columns=["cell", "seed", "step", "leaf", "prompt_type", "metric", "value"])
    )
    if not frames:
        return metrics, None, notes
    raw = pd.concat(frames, ignore_index=True)
    for col, default in (("encoder", ""), ("level", ""), ("n", np.nan)):
        if col not in raw:
            raw[col] = default
    raw["concept"] = raw["leaf"].str.split(".", n=1).str[0]
    raw["subclass"] = raw["leaf"].str.split(".", n=1).str[1]
    if "category" not in raw:
        raw["category"] = raw["concept"].map(categories)
    unknown = sorted(raw.loc[raw["category"].isna(), "concept"].unique())
    if unknown:
        notes.append(
            f"category unknown for concept(s) {', '.join(unknown)} (concept.yaml not found): shown as 'unknown'"
        )
        raw["category"] = raw["category"].fillna("unknown")
    keys = ["model", "leaf", "concept", "subclass", "category", *ID]
    base = raw[raw["step"] == 0]
    notes.extend(base_disagreement(base, keys))
    base = base.groupby(keys, dropna=False).agg(value=("value", "mean"), n=("n", "first")).reset_index()
    base = base.assign(cell="base", seed=pd.NA, step=0, epoch=0.0, checkpoint=0)
    for f in FACTORS:
        if f != "model":
            base[f] = "base" if f == "algo" else None
    runs = raw[raw["step"] > 0]
    raw = pd.concat([base, runs], ignore_index=True)
    raw["is_base"] = raw["cell"] == "base"
    raw["seed"] = raw["seed"].astype("Int64")
    extras = sorted(c for c in raw.columns if c.startswith(EXTRA))
    cols = ["cell", "seed", "step", "epoch", "checkpoint", "is_base", *FACTORS, *extras]
    cols += ["leaf", "concept", "subclass"]
    cols += ["category", *ID, "n", "value"]
    raw = raw[cols].sort_values(
        ["is_base", "cell", "seed", "step", "leaf", *ID],
        ascending=[False, True, True, True, True, True, True, True, True],
    )
    return metrics, raw.reset_index(drop=True), notes


def training_images(finished: list[dict]) -> tuple[dict[str, list[Path]], list[str]]:
    """leaf -> its training images, read as training reads them (``data.load_concept``) from the concept
    folders the runs recorded (run.json's provenance, else the folder paths in config.yaml); and a note
    per recorded folder that is gone (a sweep copied elsewhere: its grids then have no training row)."""
    import yaml

    from ..data import Report, load_concept

    specs: list[str] = []
    for r in finished:
        specs += [str(s) for s in read_json(r["root"] / "run.json").get("provenance", {}).get("concepts", [])]
        cfg = r["root"] / "config.yaml"
        if cfg.is_file():
            listed = (yaml.safe_load(cfg.read_text(encoding="utf-8")) or {}).get("concepts") or []
            specs += [str(s) for s in listed if Path(str(s)).is_absolute()]  # never the live checkout
    out: dict[str, list[Path]] = {}
    notes = []
    for spec in dict.fromkeys(specs):
        folder = Path(spec).expanduser()
        if not folder.is_dir():
            notes.append(f"training images: concept folder {folder} not found; grids show none of it")
            continue
        concept = load_concept(str(folder), Report())
        for leaf in concept.leaves if concept else []:
            out.setdefault(leaf.name, [it.image for it in leaf.items])
    return out, notes


def base_disagreement(base, keys: list[str]) -> list[str]:
    """Every run evaluates the same base-model images with the same encoders, so their base rows must
    agree; when they do not, the runs were evaluated under different code or encoders (re-evaluate them).
    Names the runs outside the largest agreeing group."""
    grouped = base.groupby(keys, dropna=False)["value"]
    differs = (grouped.transform("max") - grouped.transform("min")) > 1e-6
    if not differs.any():
        return []
    n_bad, n_all = int(base[differs].groupby(keys, dropna=False).ngroups), int(grouped.ngroups)
    b = base[differs].sort_values(keys)
    sig = b.assign(v=b["value"].round(6)).groupby(["cell", "seed"])["v"].apply(tuple)
    groups = sig.groupby(sig).groups
    largest = max(groups.values(), key=len)
    odd = sorted(f"{c}/{s}" for c, s in sig.index if (c, s) not in set(largest))
    return [
        f"base-model values differ between runs on {n_bad} of {n_all} columns (averaged): "
        f"{', '.join(odd)} disagree with the other {len(largest)} runs: evaluated under other code or "
        "encoders (delete their .done/evaluate.json and rerun the sweep to evaluate them again)"
    ]
