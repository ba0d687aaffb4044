"""Where the project's declarative files live, and how a cell's configuration is composed.

A sweep file declares configurations as override lists on top of the composed config groups (a default
per algorithm plus one-factor variations). A cell = (configuration, seed); its config is the primary
config composed with the user's overrides and the configuration's overrides, so the same composition
serves the sweep, a single `run` and the tests.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONF_DIR = PROJECT_ROOT / "conf"
PROMPTS_DIR = PROJECT_ROOT / "prompts"
CONCEPTS_DIR = PROJECT_ROOT / "concepts"
FINDINGS_DIR = PROJECT_ROOT / "findings"  # the paper's claims every report tests


def user_cache_dir() -> Path:
    """lycobench's own cache outside any results folder (world concepts exported to folder form):
    $LYCOBENCH_CACHE, else $XDG_CACHE_HOME/lycobench, else ~/.cache/lycobench; never the source tree (an
    installed package's is site-packages)."""
    import os

    if os.environ.get("LYCOBENCH_CACHE"):
        return Path(os.environ["LYCOBENCH_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "lycobench"


GROUPS = ("model", "adapter", "target", "train", "generate", "evaluate", "encoders", "sweep")
# Overrides that select the cell rather than configure it.
CELL_KEYS = ("cell", "seed")


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def compose(overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """Compose the primary config with overrides, outside or inside a running Hydra app.

    Outside one, compositions are cached on disk, keyed by every file under conf/, this module and the
    overrides: Hydra takes ~0.5 s per composition, and a rerun of the paper sweep composes 27 of them."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        return hydra_compose(config_name="config", overrides=list(overrides))
    cached = COMPOSE_CACHE / f"{_compose_key(overrides)}.yaml"
    if cached.is_file():
        cfg = OmegaConf.create(cached.read_text(encoding="utf-8"))
        OmegaConf.set_struct(cfg, True)  # as Hydra returns it: unknown keys are errors
        return cfg
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = hydra_compose(config_name="config", overrides=list(overrides))
    try:
        from .store import atomic_write_text

        atomic_write_text(cached, OmegaConf.to_yaml(cfg))
    except OSError:  # a read-only temp dir only costs speed
        pass
    return cfg


COMPOSE_CACHE = Path(tempfile.gettempdir()) / "lycobench-compose"


def _compose_key(overrides) -> str:
    import hydra

    h = hashlib.sha256(json.dumps([list(overrides), hydra.__version__]).encode())
    for path in [Path(__file__), *sorted(CONF_DIR.rglob("*.yaml"))]:
        h.update(str(path.relative_to(PROJECT_ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:32]


def quote_overrides(overrides: list[str]) -> list[str]:
    """Overrides as Hydra's grammar reads them. A plain value with '=' in it (a results path such as
    adapter.path=results/quick/runs/lora/seed=23/checkpoints/step-80.safetensors) is a syntax error to
    Hydra: such a value is quoted for it. Any other override that does not parse is one error naming it
    and the fix, instead of Hydra's traceback."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()

    def parses(o: str) -> str | None:
        try:
            parser.parse_override(o)
        except HydraException as e:  # what parse_override raises on a syntax error
            return str(e).splitlines()[0]
        return None

    out = []
    for o in overrides:
        error = None if o.startswith("-") else parses(o)
        if error is None:
            out.append(o)
            continue
        key, _, value = o.partition("=")
        quoted = f"{key}='{value}'"
        if value and value[0] not in "[{'\"" and "'" not in value and parses(quoted) is None:
            out.append(quoted)
            continue
        raise ValueError(
            f"override {o!r} is not valid Hydra syntax ({error}): quote a value that holds '=', spaces or "
            f"brackets, {key}='<value>' (for a list: {key}=['<a>','<b>']), and in a shell put the whole "
            f"override in double quotes: \"{key}='<value>'\""
        )
    return out


def split_overrides(overrides: list[str]) -> tuple[list[str], dict[str, str]]:
    """Separate the cell selectors (cell=, seed=) from the overrides that configure every cell."""
    common, selectors = [], {}
    for o in overrides:
        key, _, value = o.partition("=")
        if key.lstrip("+~") in CELL_KEYS:
            selectors[key.lstrip("+~")] = value
        else:
            common.append(o)
    return common, selectors


def cell_overrides(cfg: DictConfig, cell: str) -> list[str]:
    configs = cfg.sweep.configs
    if cell not in configs:
        raise KeyError(
            f"configuration {cell!r} is not in sweep {cfg.sweep.name!r} "
            f"(conf/sweep/{cfg.sweep.name}.yaml declares: {', '.join(configs)})"
        )
    return list(configs[cell])


def check_collisions(common: list[str], cfg: DictConfig) -> None:
    """A user override of a key that a configuration varies would silently flatten the sweep: refuse it."""
    user_keys = {o.partition("=")[0].lstrip("+~") for o in common}
    for cell, overrides in cfg.sweep.configs.items():
        for o in overrides:
            key = o.partition("=")[0].lstrip("+~")
            if key in user_keys:
                raise ValueError(
                    f"override {key!r} collides with configuration {cell!r} of conf/sweep/{cfg.sweep.name}.yaml, "
                    "which sets it: drop the override or make a new sweep file"
                )


def compose_cell(
    common: list[str], cell: str | None, seed: int | None, base: DictConfig | None = None
) -> DictConfig:
    """The full config of one cell: groups + user overrides + the configuration's own overrides.

    ``base`` (the composition of ``common`` alone) may be passed to save composing it again.
    """
    if base is None:
        base = compose(common)
    extra = cell_overrides(base, cell) if cell else []
    selectors = [f"cell={cell}" if cell else "cell=null"]
    if seed is not None:
        selectors.append(f"seed={seed}")
    cfg = compose(extra + common + selectors)
    if not cell:
        cfg.cell = custom_cell_name(cfg)
    return cfg


def factors(cfg: DictConfig) -> dict:
    """The hyperparameters that define a configuration (what the analysis attributes effects to)."""
    a = cfg.adapter
    return {
        "algo": a.algo,
        "target": cfg.target.name,
        "dim": a.get("dim"),
        "alpha": a.get("alpha"),
        "factor": a.get("factor"),
        "lr": a.lr,
        "model": cfg.model.name,
        "multiplier": float(cfg.generate.multiplier),  # adapter strength at generation
    }


def custom_cell_name(cfg: DictConfig) -> str:
    from .store import content_key

    resolved = OmegaConf.to_container(cfg, resolve=True)
    resolved.pop("hydra", None)
    resolved.pop("cell", None)
    resolved.pop("seed", None)
    return f"custom-{cfg.adapter.name}-{content_key(resolved, 8)}"


def to_yaml(cfg: DictConfig) -> str:
    cfg = OmegaConf.to_container(cfg, resolve=True)
    cfg.pop("hydra", None)
    return OmegaConf.to_yaml(OmegaConf.create(cfg))


def sweep_dir_of(cfg) -> Path:
    """The folder of the sweep ``cfg`` belongs to: ``<results_dir>/<sweep name>``."""
    return Path(cfg.results_dir).expanduser().resolve() / cfg.sweep.name
