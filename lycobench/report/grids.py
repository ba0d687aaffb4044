"""Image grids (contact sheets) per leaf x prompt type: the base model, then every configuration at every
checkpoint, on the same prompts and generation seeds."""

from __future__ import annotations

from pathlib import Path

from ..store import content_key, read_json
from .cache import SOURCE, Cache, slug
from .load import epochs_of


def contact_sheets(
    sweep_dir: Path, finished: list[dict], out: Path, cache: Cache, per_cell: int = 3, grid_types=None
) -> list[dict]:
    """Contact sheets per leaf x prompt type: the base model, then every configuration (its first finished
    seed) at every checkpoint, on the first ``per_cell`` images of the prompt file (same prompts, same
    generation seeds in every cell)."""
    import pandas as pd

    from .plots import Skip, image_grid

    first: dict[str, dict] = {}
    for r in sorted(finished, key=lambda r: (r["cell"], r["seed"])):
        first.setdefault(r["cell"], r)
    if not first:
        return []
    frames = []
    for cell, r in first.items():
        im = pd.read_parquet(r["root"] / "images.parquet")
        epochs = epochs_of(r["root"])
        im["epoch"] = im["step"].map({**epochs, 0: 0.0}).astype(float)
        gen_key = read_json(r["root"] / "run.json").get("keys", {}).get("generate")
        frames.append(im.assign(cell=cell, seed_run=r["seed"], gen_key=gen_key))
    images = pd.concat(frames, ignore_index=True)
    if grid_types:
        images = images[images["prompt_type"].isin(list(grid_types))]
    grids = []
    for (leaf, ptype), g in images.groupby(["leaf", "prompt_type"], sort=True):
        idx = sorted(g.loc[g["step"] == 0, "index"].unique())[:per_cell]
        if not idx:
            idx = sorted(g["index"].unique())[:per_cell]
        g = g[g["index"].isin(idx)]
        epochs = sorted(e for e in g["epoch"].dropna().unique() if e > 0)
        base = g[g["step"] == 0].drop_duplicates("index").set_index("index")
        base_imgs = [_img(sweep_dir, base, i) for i in idx]
        columns = [f"epoch {e:g}" for e in epochs]
        rows = []
        for cell in sorted(first):
            c = g[g["cell"] == cell]
            cells = []
            for e in epochs:
                at = c[c["epoch"] == e].drop_duplicates("index").set_index("index")
                cells.append([_img(sweep_dir, at, i) for i in idx])
            rows.append((f"{cell} (seed {first[cell]['seed']})", cells))
        name = f"grids/{slug(leaf)}/{slug(ptype)}.png"
        key = content_key(
            {
                "base": [_rel(p, sweep_dir) for p in base_imgs],
                "columns": columns,
                "rows": [[lab, [[_rel(p, sweep_dir) for p in ps] for ps in cells]] for lab, cells in rows],
                "gen": sorted(set(g["gen_key"].dropna())),
                "source": SOURCE[0],
            }
        )
        if not cache.fresh(name, key):
            try:
                image_grid(base_imgs, columns, rows, out / name)
            except Skip:
                cache.new.pop(name, None)
                continue
        prompts = (
            base.reset_index()[["index", "prompt", "seed"]]
            if len(base)
            else g.drop_duplicates("index")[["index", "prompt", "seed"]]
        )
        grids.append(
            {"leaf": leaf, "prompt_type": ptype, "path": name, "prompts": prompts.to_dict("records")}
        )
    return grids


def _rel(p: Path | None, sweep_dir: Path) -> str | None:
    """Paths in cache keys are relative, so a copied sweep folder keeps its cache."""
    return None if p is None else str(p.relative_to(sweep_dir))


def _img(sweep_dir: Path, frame, i) -> Path | None:
    return sweep_dir / frame.loc[i, "path"] if i in frame.index else None
