"""Every option of every config group composes, and every configuration of every sweep."""

import pytest
from omegaconf import OmegaConf

from lycobench.config import GROUPS, check_collisions, compose, compose_cell, group_options

OPTIONS = [(g, o) for g in GROUPS for o in group_options(g)]


def test_every_group_has_options():
    for group in GROUPS:
        assert group_options(group), f"conf/{group}/ has no options"


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_option_composes(group, option):
    cfg = compose([f"{group}={option}"])
    resolved = OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
    assert resolved["results_dir"] == "./results"
    for g in GROUPS:
        assert g in resolved, f"group {g} missing after {group}={option}"
    assert cfg.sweep.name == (option if group == "sweep" else cfg.sweep.name)


@pytest.mark.parametrize("sweep", group_options("sweep"))
def test_every_configuration_of_every_sweep_composes(sweep):
    base = compose([f"sweep={sweep}"])
    assert base.sweep.configs and base.sweep.seeds
    for cell in base.sweep.configs:
        cfg = compose_cell([f"sweep={sweep}"], cell, int(base.sweep.seeds[0]), base=base)
        assert cfg.cell == cell
        OmegaConf.to_container(cfg, resolve=True)


@pytest.mark.parametrize("sweep", group_options("sweep"))
def test_a_sweeps_own_values_are_what_its_cells_get(sweep):
    """The sweep file's top-level values (concepts) beat conf/config.yaml's defaults; the command line
    beats both."""
    import yaml

    from lycobench.config import CONF_DIR

    own = yaml.safe_load((CONF_DIR / "sweep" / f"{sweep}.yaml").read_text())
    base = compose([f"sweep={sweep}"])
    cell = compose_cell([f"sweep={sweep}"], next(iter(base.sweep.configs)), 23, base=base)
    assert list(base.concepts) == list(cell.concepts) == own["concepts"]
    assert list(compose([f"sweep={sweep}", "concepts=[examples/zq-star]"]).concepts) == ["examples/zq-star"]


def test_configuration_overrides_apply():
    cfg = compose_cell(["sweep=smoke"], "lora-dim4", 24)
    assert (cfg.adapter.dim, cfg.adapter.alpha, cfg.seed) == (4, 2, 24)


def test_unknown_configuration_names_the_sweep_file():
    with pytest.raises(KeyError, match=r"conf/sweep/smoke.yaml"):
        compose_cell(["sweep=smoke"], "nope", 23)


def test_user_override_of_a_swept_factor_is_refused():
    cfg = compose(["sweep=smoke"])
    with pytest.raises(ValueError, match="collides with configuration"):
        check_collisions(["adapter.dim=16"], cfg)
    check_collisions(["train.epochs=3"], cfg)  # not swept: fine


def test_custom_cell_name_depends_on_settings():
    a = compose_cell(["sweep=smoke"], None, None)
    b = compose_cell(["sweep=smoke", "train.epochs=5"], None, None)
    assert a.cell.startswith("custom-lora-") and a.cell != b.cell


@pytest.mark.parametrize("sweep", ["quick", "paper"])
def test_the_world_studies_train_the_studied_concepts(sweep):
    """The studies' concept lists and the concepts flagged ``studied`` (what world check measures) agree."""
    from lycobench.world.concepts import studied_concepts

    assert sorted(compose([f"sweep={sweep}"]).concepts) == sorted(f"world:{n}" for n in studied_concepts())


def test_a_path_with_an_equals_sign_is_quoted_for_hydra():
    """The project's own folder names hold '=' (seed=23): Hydra's grammar refuses them unquoted."""
    from lycobench.config import quote_overrides

    path = "/r/quick/runs/lora/seed=23/checkpoints/step-80.safetensors"
    quoted = quote_overrides([f"adapter.path={path}", "sweep=smoke", "hydra/launcher=local_parallel"])
    assert quoted == [f"adapter.path='{path}'", "sweep=smoke", "hydra/launcher=local_parallel"]
    cfg = compose(["sweep=smoke", "adapter=external", quoted[0]])
    assert cfg.adapter.path == path
    assert quote_overrides(quoted) == quoted  # quoted already: unchanged
    with pytest.raises(ValueError, match=r"concepts=\['<a>','<b>'\]"):
        quote_overrides(["concepts=[/data/set=1/dog]"])  # a list element is not guessed at: the fix is named
