"""LyCORIS glue: presets, scales, every algorithm x preset round trip, and the 4.1.3 workarounds.

The tests named ``test_upstream_*`` assert that a LyCORIS bug is still there. When one fails after a
LyCORIS upgrade, upstream fixed it: remove the workaround in lycobench/lycoris_fixes.py and the test.
"""

import copy

import pytest
import torch
from omegaconf import OmegaConf

from lycobench import adapters, lycoris_fixes
from lycobench.config import CONF_DIR
from lycobench.train import diffusion_loss

ALGOS = ["lora", "loha", "lokr", "full", "glora", "diag-oft", "boft", "ia3", "dylora"]
PRESETS = ["attn-only", "attn-mlp", "full"]


def conf(group: str, name: str) -> dict:
    return OmegaConf.to_container(OmegaConf.load(CONF_DIR / group / f"{name}.yaml"))


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Intra-op threads only slow these tiny models down on a busy machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from lycobench.models import load_pipeline

    return load_pipeline(OmegaConf.load(CONF_DIR / "model" / "tiny.yaml"), tmp_path_factory.mktemp("cache"))


def fresh(pipe):
    """A pipeline with its own UNet and text encoder (the adapters patch them), sharing the rest."""
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline(
        vae=pipe.vae,
        text_encoder=copy.deepcopy(pipe.text_encoder),
        tokenizer=pipe.tokenizer,
        unet=copy.deepcopy(pipe.unet),
        scheduler=pipe.scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def small(algo: str) -> dict:
    """The algorithm's config with its capacity cut down for speed, alpha != dim so scales matter."""
    a = conf("adapter", algo)
    if algo in ("lora", "loha", "glora", "dylora"):
        a.update(dim=4, alpha=2)
    if algo == "lokr":
        a.update(factor=4)
    if algo in ("diag-oft", "boft"):
        a.update(dim=4)
    return a


# --- trained-layer presets ---------------------------------------------------------------------------

# Measured on the tiny model of conf/model/tiny.yaml: (UNet modules, of which norms, text-encoder modules).
COUNTS = {"attn-only": (32, 0, 8), "attn-mlp": (48, 0, 12), "full": (83 + 32, 32, 12)}


def kinds(net) -> dict[str, int]:
    out: dict[str, int] = {}
    for m in net.loras:
        k = type(m.org_module[0]).__name__
        out[k] = out.get(k, 0) + 1
    return out


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_module_counts(tiny, preset):
    target = conf("target", preset)
    unet = adapters.create_network(tiny.unet, "unet", conf("adapter", "lora"), target)
    te = adapters.create_network(tiny.text_encoder, "text_encoder", conf("adapter", "lora"), target)
    n_unet, n_norm, n_te = COUNTS[preset]
    assert len(unet.loras) == n_unet
    assert sum(v for k, v in kinds(unet).items() if "Norm" in k) == n_norm
    assert len(te.loras) == n_te
    assert all(m.lora_name.startswith("lora_unet_") for m in unet.loras)
    assert all(m.lora_name.startswith("lora_te_") for m in te.loras)


def test_one_by_one_convs_get_the_linear_dim(tiny):
    """The paper's rule: a 1x1 conv (proj_in/proj_out) gets the linear dim even when k x k convs are off
    or get another dim; LyCORIS 4.1.3 does the same."""
    a = {**conf("adapter", "lora"), "dim": 8, "conv_dim": 4}
    mlp = adapters.create_network(tiny.unet, "unet", a, conf("target", "attn-mlp"))
    convs = [m for m in mlp.loras if isinstance(m.org_module[0], torch.nn.Conv2d)]
    assert len(convs) == 8 and all(m.org_module[0].kernel_size == (1, 1) for m in convs)
    assert {m.lora_down.weight.shape[0] for m in convs} == {8}
    full = adapters.create_network(tiny.unet, "unet", a, conf("target", "full"))
    ranks = {
        m.org_module[0].kernel_size: m.lora_down.weight.shape[0]
        for m in full.loras
        if isinstance(m.org_module[0], torch.nn.Conv2d)
    }
    assert ranks == {(1, 1): 8, (3, 3): 4}


def test_preset_state_does_not_leak(tiny):
    from lycoris import LycorisNetwork

    adapters.create_network(tiny.unet, "unet", conf("adapter", "lora"), conf("target", "full"))
    LycorisNetwork.apply_preset({"exclude_name": [".*attn1.*"], "name_algo_map": {".*": {"algo": "loha"}}})
    net = adapters.create_network(tiny.unet, "unet", conf("adapter", "lora"), conf("target", "attn-only"))
    assert len(net.loras) == 32 and {type(m).__name__ for m in net.loras} == {"LoConModule"}


def test_dora_only_where_lycoris_supports_it():
    assert adapters.network_kwargs({**conf("adapter", "loha"), "dora_wd": True})["weight_decompose"]
    with pytest.raises(ValueError, match="dora_wd=true works with lora, loha, lokr only"):
        adapters.network_kwargs({**conf("adapter", "boft"), "dora_wd": True})
    with pytest.raises(ValueError, match="not a trainable algorithm"):
        adapters.network_kwargs({"algo": "tlora"})


# --- scale -----------------------------------------------------------------------------------------


class Toy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(16, 24)


def toy_module(adapter_cfg):
    toy = Toy()
    target = {"unet": {"target_module": [], "target_name": ["lin"]}}
    net = adapters.create_network(toy, "unet", adapter_cfg, target)
    net.apply_to()
    [m] = net.loras
    with torch.no_grad():
        for p in m.parameters():
            p.normal_()
    return toy, net, m


def delta(toy, m, x):
    with torch.no_grad():
        return toy.lin(x) - torch.nn.functional.linear(x, m.org_module[0].weight, m.org_module[0].bias)


@pytest.mark.parametrize(("dim", "alpha"), [(4, 2), (8, 1), (4, 4)])
def test_lora_and_loha_scale_is_alpha_over_dim(dim, alpha):
    x = torch.randn(3, 16)
    toy, _, m = toy_module({"algo": "lora", "dim": dim, "alpha": alpha})
    expected = x @ (m.lora_up.weight @ m.lora_down.weight).T * (alpha / dim)
    assert m.scale == alpha / dim
    torch.testing.assert_close(delta(toy, m, x), expected, rtol=1e-5, atol=1e-5)
    toy, _, m = toy_module({"algo": "loha", "dim": dim, "alpha": alpha})
    w = (m.hada_w1_a @ m.hada_w1_b) * (m.hada_w2_a @ m.hada_w2_b)
    assert m.scale == alpha / dim
    torch.testing.assert_close(delta(toy, m, x), x @ w.T * (alpha / dim), rtol=1e-5, atol=1e-5)


def test_full_dimension_lokr_ignores_alpha():
    x = torch.randn(3, 16)
    toy, _, m = toy_module({"algo": "lokr", "dim": 10000, "alpha": 1, "factor": 4})
    assert m.use_w1 and m.use_w2 and m.scale == 1.0
    torch.testing.assert_close(delta(toy, m, x), x @ torch.kron(m.lokr_w1, m.lokr_w2).T, rtol=1e-5, atol=1e-5)
    toy, _, m = toy_module(
        {"algo": "lokr", "dim": 2, "alpha": 1, "factor": 4}
    )  # low-rank block: alpha counts
    assert not m.use_w2 and m.scale == 0.5


# --- every algorithm x preset ----------------------------------------------------------------------


def generate(pipe, seed=0):
    with torch.no_grad():
        return pipe(
            "zqx toy",
            num_inference_steps=2,
            guidance_scale=1.0,
            generator=torch.Generator().manual_seed(seed),
            output_type="np",
            height=32,
            width=32,
        ).images[0]


def perturb(adapter, seed=0):
    """Random adapter weights (cheaper than training, for tests about loading rather than learning)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in adapter.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.02)


def train_steps(pipe, adapter, steps=2):
    """A few real optimisation steps (the loop's own loss) on random latents; returns the losses."""
    gen = torch.Generator().manual_seed(0)
    ids = pipe.tokenizer(["zqx toy"] * 2, padding="max_length", return_tensors="pt").input_ids
    latents = torch.randn(2, 4, 16, 16, generator=gen)
    opt = torch.optim.AdamW(adapter.parameters(), lr=1e-2)
    s = pipe.scheduler
    losses = []
    adapter.train(True)
    for _ in range(steps):
        cond = pipe.text_encoder(ids)[0]
        loss = diffusion_loss(
            pipe.unet, latents, cond, s.alphas_cumprod, "epsilon", s.config.num_train_timesteps, gen
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    adapter.train(False)
    return losses


def check_algorithm(tiny, algo, preset, tmp_path):
    a, target = small(algo), conf("target", preset)
    pipe = fresh(tiny)
    adapter = adapters.attach(pipe, a, target, train_text_encoder=True, seed=0)
    before = {k: v.clone() for k, v in adapter.state_dict().items()}
    losses = train_steps(pipe, adapter)
    assert all(torch.isfinite(torch.tensor(losses))), losses
    after = adapter.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert any(k.startswith("lora_unet_") for k in changed) and any(k.startswith("lora_te_") for k in changed)

    path = tmp_path / f"{algo}-{preset}.safetensors"
    adapters.save(adapter, path, {"algo": algo})
    image = generate(pipe)
    reloaded = fresh(tiny)
    adapters.load(reloaded, path, a, target).train(False)
    assert (generate(reloaded) == image).all(), "reloaded adapter gives other pixels"

    x = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(1))
    ids = pipe.tokenizer(["zqx toy"], padding="max_length", return_tensors="pt").input_ids
    with torch.no_grad():
        unmerged = pipe.unet(x, 500, encoder_hidden_states=pipe.text_encoder(ids)[0]).sample
        adapter.merge(1.0)
        merged = pipe.unet(x, 500, encoder_hidden_states=pipe.text_encoder(ids)[0]).sample
    assert (merged - unmerged).abs().max() < 1e-5


@pytest.mark.parametrize("algo", ALGOS)
def test_algorithm_on_the_default_preset(tiny, algo, tmp_path):
    check_algorithm(tiny, algo, "attn-mlp", tmp_path)


@pytest.mark.parametrize("preset", ["attn-only", "full"])
def test_lora_on_the_other_presets(tiny, preset, tmp_path):
    check_algorithm(tiny, "lora", preset, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["attn-only", "full"])
@pytest.mark.parametrize("algo", [a for a in ALGOS if a != "lora"])
def test_algorithm_on_the_other_presets(tiny, algo, preset, tmp_path):
    check_algorithm(tiny, algo, preset, tmp_path)


@pytest.mark.parametrize("algo", ["lora", "loha", "lokr"])
def test_dora_round_trip(tiny, algo, tmp_path):
    pipe = fresh(tiny)
    a = {**small(algo), "dora_wd": True}
    adapter = adapters.attach(pipe, a, conf("target", "attn-only"), train_text_encoder=False, seed=0)
    assert all(hasattr(m, "dora_scale") for m in adapter.modules())
    perturb(adapter)
    adapters.save(adapter, tmp_path / "d.safetensors", {})
    reloaded = fresh(tiny)
    adapters.load(reloaded, tmp_path / "d.safetensors", a, conf("target", "attn-only")).train(False)
    assert (generate(reloaded) == generate(pipe)).all()


# --- LyCORIS's own loaders read lycobench checkpoints ------------------------------------------------


SLOW_LOADERS = [pytest.param(a, marks=pytest.mark.slow) for a in ("glora", "diag-oft", "boft")]


@pytest.mark.parametrize("algo", ["lora", "loha", "lokr", "full", "ia3", "dylora", *SLOW_LOADERS])
def test_lycoris_loaders_accept_checkpoints(tiny, algo, tmp_path):
    from lycoris.kohya import create_network_from_weights

    pipe = fresh(tiny)
    a, target = small(algo), conf("target", "attn-mlp")
    adapter = adapters.attach(pipe, a, target, train_text_encoder=True, seed=0)
    perturb(adapter)
    adapter.train(False)
    path = tmp_path / "c.safetensors"
    adapters.save(adapter, path, adapters.checkpoint_metadata(a, target, {}, step=2, epoch=1))
    image = generate(pipe)

    generic = fresh(tiny)  # create_lycoris_from_weights, part by part (adapters.load_external)
    adapters.load_external(generic, path).train(False)
    assert (generate(generic) == image).all()

    kohya = fresh(tiny)
    with lycoris_fixes.kohya_loadable():
        net, _ = create_network_from_weights(1.0, str(path), None, kohya.text_encoder, kohya.unet)
    net.apply_to(kohya.text_encoder, kohya.unet, True, True)
    net.eval()
    assert len(net.loras) == 60
    assert (generate(kohya) == image).all()
    meta = adapters.read_metadata(path)
    assert meta["ss_network_module"] == "lycoris.kohya" and meta["lycobench.algo"] == algo
    assert meta["lycobench.target"] == "attn-mlp" and meta["lycobench.step"] == "2"


def test_strict_loading_names_the_problem(tiny, tmp_path):
    from safetensors.torch import load_file, save_file

    pipe = fresh(tiny)
    a, target = small("lora"), conf("target", "attn-only")
    adapter = adapters.attach(pipe, a, target, train_text_encoder=False, seed=0)
    path = tmp_path / "a.safetensors"
    adapters.save(adapter, path, {})
    sd = load_file(str(path))
    with pytest.raises(ValueError, match="alpha"):  # LyCORIS would load it and keep the old scale
        adapters.load(fresh(tiny), path, {**a, "alpha": 1}, target)
    key = next(k for k in sd if k.endswith("lora_up.weight"))
    sd[key.replace("lora_unet_", "lora_unet_zz_", 1)] = sd.pop(key)
    save_file(sd, str(tmp_path / "renamed.safetensors"))
    with pytest.raises(ValueError, match="adapter keys do not match"):
        adapters.load(fresh(tiny), tmp_path / "renamed.safetensors", a, target)
    with pytest.raises(ValueError, match="match no module"):
        adapters.load_external(fresh(tiny), tmp_path / "renamed.safetensors")
    (tmp_path / "a.pt").write_bytes(b"pickle")
    with pytest.raises(ValueError, match="only from .safetensors"):
        adapters.read_weights(tmp_path / "a.pt")
    (tmp_path / "t.safetensors").write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="truncated or not a safetensors"):
        adapters.read_weights(tmp_path / "t.safetensors")


def test_transformers4_text_encoder_names_are_read(tiny, tmp_path):
    from safetensors.torch import load_file, save_file

    pipe = fresh(tiny)
    adapter = adapters.attach(
        pipe, small("lora"), conf("target", "attn-only"), train_text_encoder=True, seed=0
    )
    train_steps(pipe, adapter)
    adapters.save(adapter, tmp_path / "a.safetensors", {})
    sd = {
        k.replace("lora_te_", "lora_te_text_model_"): v
        for k, v in load_file(str(tmp_path / "a.safetensors")).items()
    }
    save_file(sd, str(tmp_path / "tf4.safetensors"))
    loaded = adapters.load_external(fresh(tiny), tmp_path / "tf4.safetensors")
    assert len(loaded.networks["text_encoder"].loras) == 8


# --- upstream bugs still present (lycoris_fixes.py) --------------------------------------------------


def test_the_world_models_declared_twin_cells_build_the_same_network(tmp_path):
    """conf/model/world.yaml declares lokr-f12 a twin of lokr (the sweep runs it once): on the world's
    power-of-two widths factor 12 splits every wrapped layer as factor 8 does. If the world model's widths
    change, this fails and the declaration must go."""
    from lycobench.config import compose_cell
    from lycobench.models import load_pipeline

    world = OmegaConf.load(CONF_DIR / "model" / "world.yaml")
    assert dict(world.twin_cells) == {"lokr-f12": "lokr"}
    pipe = load_pipeline(world, tmp_path)
    shapes = {}
    for cell in ("lokr", "lokr-f12", "lokr-f4"):
        cfg = compose_cell(["sweep=paper"], cell, 23)
        assert cfg.adapter.algo == "lokr"
        net = adapters.attach(
            fresh(pipe), OmegaConf.to_container(cfg.adapter), OmegaConf.to_container(cfg.target), True, 0
        )
        shapes[cell] = [tuple(p.shape) for p in net.parameters()]
    assert shapes["lokr"] and shapes["lokr"] == shapes["lokr-f12"] and shapes["lokr"] != shapes["lokr-f4"]


@pytest.mark.parametrize("algo", ["loha", "lokr"])
def test_upstream_loha_lokr_merge_scales_twice(algo):
    a = {"algo": algo, "dim": 2, "alpha": 1, "factor": 4}  # alpha != dim, LoKr's second block low-rank
    x = torch.randn(3, 16)
    toy, net, m = toy_module(a)
    with torch.no_grad():
        unmerged = toy.lin(x)
        m.restore()
        weight = m.org_module[0].weight.clone()
        m.merge_to(1.0)  # LyCORIS's own merge
        upstream = toy.lin(x)
        m.org_module[0].weight.copy_(weight)
        lycoris_fixes.merge([net])
        fixed = toy.lin(x)
    assert (upstream - unmerged).abs().max() > 1e-3, "LyCORIS merges LoHa/LoKr right now: drop the workaround"
    torch.testing.assert_close(fixed, unmerged, rtol=1e-5, atol=1e-5)


def test_upstream_ia3_cannot_be_built_from_weights(tmp_path):
    from lycoris import LycorisNetwork, create_lycoris_from_weights

    _, _, m = toy_module({"algo": "ia3"})
    sd = {f"{m.lora_name}.{k}": v for k, v in m.state_dict().items()}
    LycorisNetwork.apply_preset({"lora_prefix": "lora_unet"})
    with pytest.raises(TypeError, match="positional arguments"):
        create_lycoris_from_weights(1.0, "", Toy(), weights_sd=sd)
    with lycoris_fixes.ia3_loadable():
        net, _ = create_lycoris_from_weights(1.0, "", Toy(), weights_sd=sd)
    torch.testing.assert_close(net.loras[0].weight, m.weight)


def test_upstream_kohya_loader_wraps_the_time_embedding_twice(tiny):
    from lycoris.kohya import LycorisNetworkKohya

    with pytest.raises(AssertionError, match="duplicated lora name: lora_unet_time_embedding"):
        LycorisNetworkKohya(tiny.text_encoder, tiny.unet)
    with lycoris_fixes.kohya_loadable():
        assert not LycorisNetworkKohya(tiny.text_encoder, tiny.unet).loras


def test_upstream_dylora_bugs(tiny):
    """4a: random rank in eval mode; 4b: cannot load its own state dict; 4c: 2-D up weight on 1x1 convs."""
    from lycoris import LycorisNetwork

    pipe = fresh(tiny)
    LycorisNetwork.apply_preset(adapters._preset(conf("target", "attn-mlp")["unet"], "lora_unet"))
    raw = LycorisNetwork(pipe.unet, **adapters.network_kwargs({**small("dylora"), "block_size": 1}))
    raw.apply_to()
    raw.eval()
    with torch.no_grad():
        for p in raw.parameters():
            p.normal_(0, 0.1)
    m = next(m for m in raw.loras if isinstance(m.org_module[0], torch.nn.Conv2d))
    with torch.no_grad():
        outs = {m.get_diff_weight()[0].abs().sum().item() for _ in range(20)}
    assert len(outs) > 1, "DyLoRA is deterministic in eval mode now: drop dylora_full_rank's rank override"
    missing, unexpected = raw.load_state_dict(raw.state_dict(), strict=False)
    assert missing and unexpected, "DyLoRA loads its own state dict now: drop the load hook"
    assert raw.state_dict()[m.lora_name + ".lora_up.weight"].ndim == 2, "DyLoRA saves 4-D conv ups now"

    lycoris_fixes.dylora_full_rank(raw)
    with torch.no_grad():
        assert len({m.get_diff_weight()[0].abs().sum().item() for _ in range(5)}) == 1
    exported = lycoris_fixes.dylora_export(raw, raw.state_dict())
    assert exported[m.lora_name + ".lora_up.weight"].ndim == 4
    result = raw.load_state_dict(exported, strict=False)
    assert not result.missing_keys and not result.unexpected_keys


def test_upstream_full_module_adds_a_loaded_diff_to_the_current_weight():
    toy, net, m = toy_module({"algo": "full"})
    sd = dict(net.state_dict())
    net.load_state_dict(sd)
    twice = m.weight.detach().clone()
    net.load_state_dict(sd)
    assert not torch.equal(m.weight, twice), (
        "FullModule loads diffs onto the original now: drop reset_full_modules"
    )
    lycoris_fixes.reset_full_modules(net)
    net.load_state_dict(sd)
    once = m.weight.detach().clone()
    lycoris_fixes.reset_full_modules(net)
    net.load_state_dict(sd)
    assert torch.equal(m.weight, once)
    torch.testing.assert_close(once - m._org_weight[0], sd[f"{m.lora_name}.diff"])


def test_bypass_forward_only_where_it_is_faster(tiny):
    for algo in ("loha", "lokr"):
        adapter = adapters.attach(fresh(tiny), small(algo), conf("target", "attn-only"), False, 0)
        assert adapter.set_bypass(True) == 0 and not any(m.bypass_mode for m in adapter.modules())


@pytest.mark.parametrize("algo", ["lora"])
def test_bypass_forward_computes_the_same_function(tiny, algo):
    """The bypass forward (W0 x + B A x) gives the rebuild forward's outputs and gradients within float
    error, for every wrapped linear layer and convolution; DoRA keeps the rebuild forward."""
    pipe = fresh(tiny)
    adapter = adapters.attach(pipe, small(algo), conf("target", "full"), train_text_encoder=True, seed=0)
    perturb(adapter)
    x = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(1))
    ids = pipe.tokenizer(["zqx toy"], padding="max_length", return_tensors="pt").input_ids

    def run():
        for p in adapter.parameters():
            p.grad = None
        out = pipe.unet(x, 500, encoder_hidden_states=pipe.text_encoder(ids)[0]).sample
        out.square().mean().backward()
        return out.detach(), [p.grad.clone() for p in adapter.parameters() if p.grad is not None]

    switchable = [m for m in adapter.modules() if type(m).__name__ in adapters.BYPASS_MODULES]
    assert len(switchable) > 30  # linear layers and convolutions (norm modules have no bypass)
    assert adapter.set_bypass(False) == len(switchable)
    ref, ref_grads = run()
    assert adapter.set_bypass(True) == len(switchable)
    out, grads = run()
    assert all(m.bypass_mode for m in switchable)
    assert (out - ref).abs().max() < 1e-5
    assert len(grads) == len(ref_grads)
    assert all(torch.allclose(g, r, rtol=1e-3, atol=1e-6) for g, r in zip(grads, ref_grads))

    dora = adapters.attach(
        fresh(tiny), {**small(algo), "dora_wd": True}, conf("target", "attn-only"), False, 0
    )
    assert dora.set_bypass(True) == 0


def test_an_external_file_is_checked_tensor_by_tensor_with_every_problem_at_once(tiny, tmp_path):
    """NaN values, shapes that do not fit (by the LoRA rule, and by LyCORIS's own module for LoKr) and
    names that match no module: one InputError (cause data) naming each tensor, before LyCORIS builds anything."""
    from safetensors.torch import load_file, save_file

    from lycobench.cell import classify
    from lycobench.data import InputError

    def saved(algo: str) -> dict:
        adapter = adapters.attach(fresh(tiny), small(algo), conf("target", "attn-mlp"), True, seed=0)
        adapters.save(adapter, tmp_path / f"{algo}.safetensors", {})
        return load_file(str(tmp_path / f"{algo}.safetensors"))

    sd = saved("lora")
    downs = sorted(k for k in sd if k.endswith("lora_down.weight"))
    sd[downs[0]] = torch.full_like(sd[downs[0]], float("nan"))
    wide = sd[downs[1]]
    sd[downs[1]] = torch.zeros(wide.shape[0], wide.shape[1] + 3)  # LyCORIS: a bare RuntimeError
    up = next(k for k in sd if k.endswith("lora_up.weight") and k.startswith("lora_te_"))
    sd[up.replace("lora_te_", "lora_te_zz_", 1)] = sd.pop(up)
    save_file(sd, str(tmp_path / "bad.safetensors"))
    with pytest.raises(InputError) as e:
        adapters.load_external(fresh(tiny), tmp_path / "bad.safetensors")
    assert len(e.value.problems) == 4 and classify(e.value) == "data"
    nan, names, incomplete, shape = e.value.problems
    assert up.split(".")[0] in incomplete and "form no LyCORIS algorithm" in incomplete  # its up is gone
    assert str(tmp_path / "bad.safetensors") in nan and downs[0] in nan and "NaN" in nan
    name = downs[1].removesuffix(".lora_down.weight")
    assert (
        f"{name}.lora_down.weight (the model needs {list(wide.shape)}, the file has [{wide.shape[0]}, {wide.shape[1] + 3}])"
        in shape
    )
    assert "match no module of this text_encoder" in names and "lora_te_zz_" in names

    lokr = saved("lokr")  # no shape rule for LoKr: the module LyCORIS builds from the file decides
    key = next(k for k in lokr if k.startswith("lora_unet_") and k.endswith("lokr_w2"))
    lokr[key] = torch.zeros(*[d + 1 for d in lokr[key].shape])
    save_file(lokr, str(tmp_path / "lokr-bad.safetensors"))
    with pytest.raises(InputError, match=r"lokr_w2|do not fit its module") as e:
        adapters.load_external(fresh(tiny), tmp_path / "lokr-bad.safetensors")
    assert len(e.value.problems) == 1 and key.split(".")[0] in e.value.problems[0]
