"""Generation: shared seeds, the base-image cache across sweeps, batch-size independence, PNG provenance,
the adapter multiplier, progress, and batch sizing."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lycobench import batch_invariance
from lycobench import generate as gen
from lycobench.config import compose, factors
from lycobench.data import Item, Leaf
from lycobench.models import load_pipeline, model_identity
from lycobench.prompts import prompt_plan
from lycobench.store import content_key

LEAVES = [
    Leaf("zq-star", "object", "zqx", "toy", None, "", [Item("a.png", "zqx toy, red background")]),
    Leaf("qq-box", "object", "qwb", "toy", None, "", [Item("b.png", "qwb toy, blue background")]),
]


@pytest.fixture(autouse=True)
def one_thread():
    """Sampling a 32-pixel model gains nothing from threads, and on a shared machine spinning OpenMP
    threads make it several times slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """The tiny model built once and saved as a diffusers folder; tests load it as a pretrained model
    (the path SD 1.5 takes), so no test pays for building it again."""
    from omegaconf import OmegaConf

    from lycobench.models import _save_atomically, build_tiny_pipeline

    folder = tmp_path_factory.mktemp("model") / "tiny-sd"
    _save_atomically(build_tiny_pipeline(OmegaConf.to_container(compose(["sweep=smoke"]).model)), folder)
    return folder


@pytest.fixture
def config(model_dir):
    """config(results_dir, *overrides): the smoke generation settings on the saved tiny model."""

    def make(tmp_path, *extra):
        model = ["model=sd15", f"model.path={model_dir}", "model.name=tiny-sd", "model.resolution=32"]
        return compose(
            [
                "sweep=smoke",
                *model,
                "generate=smoke",
                "generate.templates=world",
                "generate.steps=2",
                "generate.batch_size=4",
            ]
            + [f"results_dir={tmp_path}", "cell=t", *extra]
        )

    return make


def small_plan():
    # two leaves with the same class word: their class-free agnostic images are the same (prompt, seed)
    return prompt_plan(LEAVES, ["trigger", "agnostic"], {"trigger": 2, "agnostic": 3}, 1000)


def run(cfg, sweep: Path, plan, checkpoints=None, progress=None):
    key = content_key(model_identity(cfg.model))
    sweep.mkdir(parents=True, exist_ok=True)  # as a sweep does before its cells run
    return gen.generate(cfg, plan, checkpoints or {}, sweep / "runs" / "t", sweep, key, progress)


@pytest.fixture
def calls(monkeypatch):
    """Counts pipeline calls and the images they draw."""
    from diffusers import StableDiffusionPipeline

    seen = {"calls": 0, "images": 0}
    original = StableDiffusionPipeline.__call__

    def counting(self, *args, **kwargs):
        seen["calls"] += 1
        seen["images"] += len(kwargs["prompt"])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(StableDiffusionPipeline, "__call__", counting)
    return seen


def test_base_images_are_drawn_once_within_and_across_sweeps(tmp_path, calls, config):
    cfg = config(tmp_path)
    plan = small_plan()
    distinct = {(it.prompt, it.seed) for it in plan}
    assert len(distinct) == 7 < len(plan) == 10  # 3 shared agnostic images + 2 trigger images per leaf
    ticks = []
    rows = run(cfg, tmp_path / "sweep-a", plan, progress=lambda done, total: ticks.append((done, total)))
    assert calls["images"] == len(distinct) and calls["calls"] == 2  # batches of 4 across prompts
    assert ticks[-1] == (7, 7) and [d for d, _ in ticks] == sorted(d for d, _ in ticks)
    # one row per image, pointing into the cache shared by every sweep under results_dir
    assert len(rows) == len(plan) and {r["step"] for r in rows} == {0}
    assert all(r["path"].startswith("../cache/base-images/") for r in rows)
    assert all((tmp_path / "sweep-a" / r["path"]).is_file() for r in rows)
    assert len({r["path"] for r in rows}) == len(distinct)
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "cache" / "base-images").glob("*.png")}

    rows_b = run(cfg, tmp_path / "sweep-b", plan)  # another sweep, same cache: nothing is drawn
    assert calls["images"] == len(distinct) and calls["calls"] == 2
    assert [r["path"] for r in rows_b] == [r["path"] for r in rows]
    after = {p: p.stat().st_mtime_ns for p in (tmp_path / "cache" / "base-images").glob("*.png")}
    assert after == before


def test_images_carry_provenance_and_are_bit_identical_across_runs(tmp_path, config):
    cfg = config(tmp_path)
    plan = small_plan()[:2]
    rows = run(cfg, tmp_path / "a", plan)
    again = run(config(tmp_path / "other"), tmp_path / "other" / "a", plan)  # another cache: drawn anew
    for r, s in zip(rows, again):
        first = (tmp_path / "a" / r["path"]).read_bytes()
        assert first == (tmp_path / "other" / "a" / s["path"]).read_bytes()
    img = Image.open(tmp_path / "a" / rows[0]["path"])
    assert img.size == (32, 32)
    assert img.text["prompt"] == "zqx toy" and img.text["seed"] == "1000"
    assert img.text["model"] == "tiny-sd" and img.text["adapter"] == "none" and img.text["step"] == "0"
    assert json.loads(img.text["sampler"])["steps"] == 2


def test_an_image_does_not_depend_on_its_batch(tmp_path, config):
    cfg = config(tmp_path)
    pipe = load_pipeline(cfg.model, tmp_path / "cache")
    settings = gen.sampler_settings(cfg.generate, 32)
    plan = small_plan()[:4]
    got = {}
    for bs in (1, 4, 3):
        out = {}
        with gen.sampling(pipe, invariant=True):
            gen.render(pipe, plan, settings, bs, lambda it, a, out=out: out.__setitem__(it, a))
        got[bs] = np.stack([out[it] for it in plan])
    assert np.array_equal(got[1], got[4]) and np.array_equal(got[1], got[3])
    assert got[1].std() > 0  # real images, not a constant


def test_the_batch_invariance_shim_pads_and_leaves_nothing_behind(tmp_path, config):
    pipe = load_pipeline(config(tmp_path).model, tmp_path / "cache")
    onednn = torch.backends.mkldnn.enabled
    lin, conv = pipe.unet.time_embedding.linear_1, pipe.unet.conv_in
    with torch.no_grad(), batch_invariance.cpu_batch_invariance(pipe):
        x = torch.randn(1, lin.in_features)
        assert torch.equal(lin(x), lin(torch.cat([x, torch.randn(5, lin.in_features)]))[:1])
        img = torch.randn(1, conv.in_channels, 16, 16)
        out = conv(img)
        assert out.shape == (1, conv.out_channels, 16, 16)
        assert torch.equal(out, conv(torch.cat([img, torch.randn_like(img)]))[:1])
    assert torch.backends.mkldnn.enabled == onednn
    assert not any(m._forward_pre_hooks or m._forward_hooks for m in pipe.unet.modules())


def make_checkpoint(cfg, path: Path) -> Path:
    """A real LyCORIS checkpoint with non-zero weights (a fresh LoRA's up-projection is zero)."""
    from omegaconf import OmegaConf

    from lycobench import adapters

    pipe = load_pipeline(cfg.model, path.parent / "cache")
    adapter = adapters.attach(
        pipe, OmegaConf.to_container(cfg.adapter), OmegaConf.to_container(cfg.target), True, seed=0
    )
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in adapter.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    adapters.save(adapter, path, {"test": "1"})
    return path


def test_multiplier_zero_reproduces_the_base_model_and_one_does_not(tmp_path, config):
    ckpt = make_checkpoint(config(tmp_path), tmp_path / "ckpt" / "step-5.safetensors")
    plan = small_plan()[:4]
    images = {}
    for m in (0.0, 1.0):
        cfg = config(tmp_path, f"generate.multiplier={m}")
        rows = run(cfg, tmp_path / f"m{m}", plan, {5: ckpt})
        assert [r["step"] for r in rows] == [0] * 4 + [5] * 4
        base = [np.asarray(Image.open(tmp_path / f"m{m}" / r["path"])) for r in rows[:4]]
        ours = [np.asarray(Image.open(tmp_path / f"m{m}" / r["path"])) for r in rows[4:]]
        images[m] = (base, ours)
        png = Image.open(tmp_path / f"m{m}" / rows[4]["path"])
        assert png.text["adapter"] == "t" and png.text["step"] == "5" and float(png.text["multiplier"]) == m
        assert rows[4]["path"] == "runs/t/images/step-5/zq-star/trigger/0-0.png"
    base, off = images[0.0]
    assert all(np.array_equal(a, b) for a, b in zip(base, off))  # same noise, adapter switched off
    base, on = images[1.0]
    assert not any(np.array_equal(a, b) for a, b in zip(base, on))


def test_multiplier_is_a_factor_and_part_of_the_generate_key(tmp_path, config):
    from lycobench.cell import Cell

    cells = [Cell(config(tmp_path, f"generate.multiplier={m}"), tmp_path / "s") for m in (0.5, 1.0)]
    assert factors(cells[0].cfg)["multiplier"] == 0.5
    assert cells[0].keys["train"] == cells[1].keys["train"]
    assert cells[0].keys["generate"] != cells[1].keys["generate"]


def test_batch_size_from_memory_and_the_cpu_default(tmp_path, config):
    mib = 1 << 20
    # weights aside, 1 image peaks at 300 MiB, 2 at 500 MiB: 200 MiB each + 100 MiB fixed
    assert gen.batch_from_memory(10_000 * mib, 300 * mib, 500 * mib) == 39  # (8000 - 100) // 200
    assert gen.batch_from_memory(100 * mib, 300 * mib, 500 * mib) == 1
    assert gen.batch_from_memory(10**12, 300 * mib, 500 * mib) == gen.MAX_BATCH
    cfg = config(tmp_path, "generate.batch_size=auto")
    assert gen.batch_size_for(cfg.generate, None, {}, "cpu") == gen.CPU_BATCH
    with pytest.raises(ValueError, match="positive number or auto"):
        gen.batch_size_for(config(tmp_path, "generate.batch_size=0").generate, None, {}, "cpu")


def test_the_base_image_key_covers_what_changes_the_bits():
    item = small_plan()[0]
    settings = {"sampler": "ddim", "steps": 2, "guidance_scale": 7.0, "negative_prompt": "", "resolution": 32}
    numeric = {"device": "cpu", "dtype": "float32", "cpu_batch_invariant": True}
    key = gen.base_image_key("m", settings, item, numeric)
    assert key == gen.base_image_key("m", dict(settings), item, dict(numeric))
    assert key != gen.base_image_key("m", {**settings, "steps": 3}, item, numeric)
    assert key != gen.base_image_key("m", settings, item, {**numeric, "dtype": "float16"})
    assert key != gen.base_image_key("other", settings, item, numeric)


@pytest.mark.gpu
def test_cuda_generation_in_half_precision_with_sdpa(tmp_path, config):
    from diffusers.models.attention_processor import AttnProcessor2_0

    cfg = config(tmp_path, "generate.device=cuda", "generate.batch_size=auto")
    pipe = load_pipeline(cfg.model, tmp_path / "cache", device="cuda")
    assert pipe.unet.dtype == torch.float16
    assert all(isinstance(p, AttnProcessor2_0) for p in pipe.unet.attn_processors.values())
    settings = gen.sampler_settings(cfg.generate, 32)
    assert 1 <= gen.batch_size_for(cfg.generate, pipe, settings, "cuda") <= gen.MAX_BATCH
    ckpt = make_checkpoint(config(tmp_path), tmp_path / "ckpt" / "step-5.safetensors")
    rows = run(cfg, tmp_path / "s", small_plan()[:4], {5: ckpt})
    assert all((tmp_path / "s" / r["path"]).is_file() for r in rows)


def test_replaced_encoder_weights_redo_evaluation_only_and_a_touch_redoes_nothing(tmp_path, config):
    """The evaluation key holds the encoders' weights (content, not file times: a fresh clone keeps it)."""
    import os
    import shutil

    from lycobench.cell import Cell
    from lycobench.config import PROJECT_ROOT

    dino = tmp_path / "dino"
    shutil.copytree(PROJECT_ROOT / "lycobench/world/weights/dino", dino)
    keys = lambda: Cell(config(tmp_path, "encoders=world", f"encoders.dino.path={dino}"), tmp_path / "s").keys  # noqa: E731
    before = keys()
    weights = dino / "model.safetensors"
    os.utime(weights, (1, 1))
    assert keys() == before
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    after = keys()
    assert after["train"] == before["train"] and after["generate"] == before["generate"]
    assert after["evaluate"] != before["evaluate"]


def test_a_changed_metric_definition_redoes_evaluation_only(tmp_path, config, monkeypatch):
    from lycobench.cell import Cell
    from lycobench.metrics import registry

    before = Cell(config(tmp_path), tmp_path / "s").keys
    monkeypatch.setattr(registry, "DEFINITIONS_VERSION", registry.DEFINITIONS_VERSION + 1)
    after = Cell(config(tmp_path), tmp_path / "s").keys
    assert after["train"] == before["train"] and after["generate"] == before["generate"]
    assert after["evaluate"] != before["evaluate"]


def test_what_each_key_holds_and_leaves_out(tmp_path, config, monkeypatch):
    """A result is redone when what made it changed, and only then: the image policy is part of training;
    a template file enters generation by its version and prompts, not its bytes (a comment edit redoes
    nothing); on the CPU the batch size changes no image; the oracle's class names are part of it."""
    import shutil

    from lycobench import image_policy
    from lycobench.cell import Cell
    from lycobench.config import PROJECT_ROOT, PROMPTS_DIR

    prompts, oracle = tmp_path / "prompts", tmp_path / "oracle.safetensors"
    shutil.copytree(PROMPTS_DIR / "world", prompts)
    weights = PROJECT_ROOT / "lycobench/world/weights/oracle"
    shutil.copy(weights.with_suffix(".safetensors"), oracle)
    shutil.copy(weights.with_suffix(".json"), oracle.with_suffix(".json"))
    sets = ("encoders=world", f"encoders.oracle.path={oracle}", f"generate.templates={prompts}",
            "generate.prompt_types=[train,trigger,alter]", "generate.images_per_type.alter=2")  # fmt: skip
    keys = lambda *extra: Cell(config(tmp_path, *sets, *extra), tmp_path / "s").keys  # noqa: E731
    before = keys()
    files = {f: f.read_text() for f in sorted((prompts / "alter").glob("*.txt"))}
    for f, text in files.items():
        f.write_text(text + "# a comment\n")
    assert keys() == before
    assert keys("generate.batch_size=1") == before  # CPU: batch-invariant images
    monkeypatch.setattr(image_policy, "IMAGE_POLICY", image_policy.IMAGE_POLICY + "; changed")
    assert keys()["train"] != before["train"]
    monkeypatch.undo()
    for f, text in files.items():
        f.write_text(text.replace("# version:", "# version: 99", 1))
    changed = keys()
    assert changed["train"] == before["train"] and changed["generate"] != before["generate"]
    for f, text in files.items():
        f.write_text(text)
    classes = json.loads(oracle.with_suffix(".json").read_text())
    oracle.with_suffix(".json").write_text(json.dumps({**classes, "extra": 1}))
    changed = keys()
    assert changed["generate"] == before["generate"] and changed["evaluate"] != before["evaluate"]
