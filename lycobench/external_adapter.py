"""``adapter=external``: a cell that trains nothing adopts a user's LyCORIS/kohya adapter as its checkpoint,
after checking that it loads into the model and changes the model's output."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

from omegaconf import DictConfig

from . import adapters
from .store import atomic_write_with


class AdapterHasNoEffect(ValueError):
    cause = "data"


MIN_EFFECT = 1e-6  # an adapter whose largest output change is below this does nothing


def adopt_external(cfg: DictConfig, checkpoint_path, cache_dir: Path) -> tuple[int, int | None, Path]:
    """Check that ``adapter.path`` loads into the model and changes its output, then copy it in as the
    cell's single checkpoint (numbered by the step its metadata names, else 1); returns (step, epoch, path)."""
    from .models import load_pipeline

    spec = cfg.adapter.get("path")
    if not spec:
        raise FileNotFoundError(
            "adapter=external needs adapter.path=<file.safetensors> (a LyCORIS/kohya adapter)"
        )
    src = Path(str(spec)).expanduser().resolve()
    pipe = load_pipeline(cfg.model, cache_dir)
    adapter = adapters.load_external(pipe, src)
    change = adapters.effect(pipe, adapter)
    broken = sorted(part for part, c in change.items() if not math.isfinite(c))
    if broken:  # finite weights can still overflow: every image would be black
        raise AdapterHasNoEffect(
            f"{src}: switching it on turns the {' and '.join(broken)} output into NaN or infinity; its "
            "weights are far too large for this model (a diverged training): use an earlier checkpoint"
        )
    if not max(change.values()) >= MIN_EFFECT:
        raise AdapterHasNoEffect(
            f"{src}: loads, but switching it on changes nothing (largest output change {max(change.values()):.2g}); "
            "its deltas are zero, or it was made for another model: check adapter.path"
        )
    meta = adapters.read_metadata(src)
    step = (
        next((int(meta[k]) for k in ("lycobench.step", "ss_steps") if str(meta.get(k, "")).isdigit()), 0) or 1
    )
    epoch = next(
        (int(meta[k]) for k in ("lycobench.epoch", "ss_epoch") if str(meta.get(k, "")).isdigit()), None
    )
    dst = checkpoint_path(step)
    atomic_write_with(dst, lambda tmp: shutil.copyfile(src, tmp))
    return step, epoch, dst
