"""Image grids (contact sheets) per leaf x prompt type x training seed: the leaf's training images, the base
model, then every configuration at every checkpoint, on the same prompts and generation seeds."""

from __future__ import annotations

from pathlib import Path

from ..store import content_key, file_sha256, read_json
from .cache import SOURCE, Cache, slug
from .load import epochs_of, training_images

MAX_TRAINING = 48  # training images offered to a sheet (it shows as many as its width holds)
PER_CELL = 3  # images per configuration and checkpoint on a sheet


def contact_sheets(
    sweep_dir: Path,
    finished: list[dict],
    out: Path,
    cache: Cache,
    per_cell: int = PER_CELL,
    grid_types=None,
    notes: list[str] | None = None,
) -> list[dict]:
    """One contact sheet per leaf x prompt type x training seed: the leaf's training images, the base
    model, then every configuration (a row; '(not finished)' with empty boxes where that seed's run did not
    finish) at every checkpoint (a column), on the first ``per_cell`` images of the prompt file (the same
    prompts and generation seeds in every cell). Returns, per leaf x prompt type, its sheets by seed."""
    import pandas as pd

    runs = {(r["cell"], r["seed"]): r for r in finished}
    if not runs:
        return []
    cells = sorted({c for c, _ in runs})
    seeds = sorted({s for _, s in runs})
    frames = []
    for (cell, seed), r in sorted(runs.items()):
        im = pd.read_parquet(r["root"] / "images.parquet")
        if grid_types:
            im = im[im["prompt_type"].isin(list(grid_types))]
        epochs = epochs_of(r["root"])
        im["epoch"] = im["step"].map({**epochs, 0: 0.0}).astype(float)
        gen_key = read_json(r["root"] / "run.json").get("keys", {}).get("generate")
        frames.append(im.assign(cell=cell, seed_run=seed, gen_key=gen_key))
    images = pd.concat(frames, ignore_index=True)
    training, missing = training_images(finished)
    if notes is not None:
        notes.extend(missing)
    shas: dict[str, list[str]] = {}  # leaf -> sha256 of the training images offered
    grids = []
    for (leaf, ptype), g in images.groupby(["leaf", "prompt_type"], sort=True):
        idx = shown_indices(g, per_cell)
        g = g[g["index"].isin(idx)]
        epochs = sorted(e for e in g["epoch"].dropna().unique() if e > 0)
        base = g[g["step"] == 0].drop_duplicates("index").set_index("index")
        base_imgs = [_img(sweep_dir, base, i) for i in idx]
        train = training.get(leaf, [])[:MAX_TRAINING]
        if leaf not in shas:
            shas[leaf] = [file_sha256(p) for p in train]
        sheets = []
        for seed in seeds:
            rows, gen = [], set()
            for cell in cells:
                if (cell, seed) not in runs:
                    rows.append((f"{cell} (not finished)", [[None] * len(idx) for _ in epochs]))
                    continue
                c = g[(g["cell"] == cell) & (g["seed_run"] == seed)]
                gen |= set(c["gen_key"].dropna())
                at = [c[c["epoch"] == e].drop_duplicates("index").set_index("index") for e in epochs]
                rows.append((cell, [[_img(sweep_dir, a, i) for i in idx] for a in at]))
            name = f"grids/{slug(leaf)}/{slug(ptype)}/seed-{seed}.png"
            columns = [f"epoch {e:g}" for e in epochs]
            key = content_key(
                {
                    "base": [_rel(p, sweep_dir) for p in base_imgs],
                    "training": shas[leaf],
                    "columns": columns,
                    "rows": [[lab, [[_rel(p, sweep_dir) for p in ps] for ps in cs]] for lab, cs in rows],
                    "gen": sorted(gen),
                    "seed": seed,
                    "source": SOURCE[0],
                }
            )
            if not cache.fresh(name, key):
                from .plots import Skip
                from .sheets import image_grid

                try:
                    image_grid(base_imgs, columns, rows, out / name, train, title=f"training seed {seed}")
                except Skip:
                    cache.new.pop(name, None)
                    continue
            sheets.append({"seed": seed, "path": name})
        if not sheets:
            continue
        prompts = (
            base.reset_index()[["index", "prompt", "seed"]]
            if len(base)
            else g.drop_duplicates("index")[["index", "prompt", "seed"]]
        )
        grids.append(
            {
                "leaf": leaf,
                "prompt_type": ptype,
                "sheets": sheets,
                "training": len(training.get(leaf, [])),
                "prompts": prompts.to_dict("records"),
            }
        )
    return grids


def shown_indices(frame, per_cell: int = PER_CELL) -> list:
    """The prompt indices a sheet shows for one leaf x prompt type (rows of images.parquet): the first
    ``per_cell`` of the base model's, else of all. ``lycobench prune`` keeps these images."""
    return (
        sorted(frame.loc[frame["step"] == 0, "index"].unique())[:per_cell]
        or sorted(frame["index"].unique())[:per_cell]
    )


def _rel(p: Path | None, sweep_dir: Path) -> str | None:
    """Paths in cache keys are relative, so a copied sweep folder keeps its cache."""
    return None if p is None else str(p.relative_to(sweep_dir))


def _img(sweep_dir: Path, frame, i) -> Path | None:
    """An image's path; None (an empty box) when it is not in the frame or no longer on disk (pruned)."""
    path = sweep_dir / frame.loc[i, "path"] if i in frame.index else None
    return path if path is not None and path.is_file() else None
