"""The training loop on the tiny model: the paper's recipe, caches, checkpoints, NaN, external adapters."""

import csv
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from lycobench import adapters
from lycobench import train as T
from lycobench.config import compose
from lycobench.data import ConceptFolder, Leaf, load_concepts
from lycobench.external_adapter import AdapterHasNoEffect
from lycobench.models import model_identity
from lycobench.store import content_key

# 6 example images, 6 exposures per epoch -> 6 samples, batch 4 -> 2 steps per epoch.
SMALL = [
    "sweep=smoke",  # the tiny model and the example concept, whatever the default study is
    "train=smoke",
    "train.epochs=2",
    "train.checkpoint_epochs=[1,2]",
    "train.exposures_per_epoch=6",
    "train.batch_size=4",
    "train.warmup_steps=3",
]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def run(cfg, out: Path, cache: Path, progress=None):
    concepts = load_concepts(list(cfg.concepts))
    saved = T.train(
        cfg,
        concepts,
        lambda step: out / "checkpoints" / f"step-{step}.safetensors",
        out / "train_log.csv",
        cache,
        content_key(model_identity(cfg.model)),
        progress,
    )
    return saved, list(csv.DictReader((out / "train_log.csv").open()))


class Counter:
    def __init__(self, monkeypatch, cls, name):
        self.n, original = 0, getattr(cls, name)

        def counted(*args, **kwargs):
            self.n += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(cls, name, counted)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, cache):
    """One real LoRA run (UNet + text encoder), its VAE-call count, checkpoints and log."""
    from diffusers import AutoencoderKL

    mp = pytest.MonkeyPatch()
    vae = Counter(mp, AutoencoderKL, "encode")
    calls = []
    out = tmp_path_factory.mktemp("run")
    saved, log = run(compose(SMALL), out, cache, lambda done, total: calls.append((done, total)))
    mp.undo()
    return {"saved": saved, "log": log, "vae_calls": vae.n, "progress": calls, "out": out}


def test_paper_recipe_run(trained):
    assert sorted(trained["saved"]) == [2, 4]
    assert all(p.is_file() for p in trained["saved"].values())
    log = trained["log"]
    assert list(log[0]) == T.LOG_COLUMNS and len(log) == 4
    assert all(torch.isfinite(torch.tensor(float(r["loss"]))) for r in log)
    assert [float(r["lr"]) for r in log] == pytest.approx(
        [5e-4 * k / 3 for k in (1, 2, 3, 3)], rel=1e-5
    )  # the lr each step used: a warm-up of 3 steps
    assert [int(r["epoch"]) for r in log] == [1, 1, 2, 2]
    assert all(float(r["steps_per_s"]) > 0 and float(r["cpu_seconds"]) > 0 for r in log)
    assert trained["progress"][-1] == (4, 4)
    assert trained["vae_calls"] == 6  # once per image, never in the loop


def test_checkpoint_metadata_and_contents(trained):
    path = trained["saved"][4]
    meta = adapters.read_metadata(path)
    assert meta["lycobench.algo"] == "lora" and meta["lycobench.target"] == "attn-mlp"
    assert meta["lycobench.step"] == "4" and meta["lycobench.epoch"] == "2"
    assert meta["ss_network_module"] == "lycoris.kohya" and meta["ss_network_dim"] == "8"
    assert '"preset": "attn-mlp"' in meta["ss_network_args"]
    assert OmegaConf.create(meta["lycobench.train"]).weight_decay == 0.1
    keys = adapters.read_weights(path)
    assert any(k.startswith("lora_te_") for k in keys) and any(k.startswith("lora_unet_") for k in keys)
    first = adapters.read_weights(trained["saved"][2])
    assert any(not torch.equal(first[k], keys[k]) for k in keys)


def test_latents_are_reused_across_seeds_and_configs(cache, tmp_path, monkeypatch):
    from diffusers import AutoencoderKL

    vae = Counter(monkeypatch, AutoencoderKL, "encode")
    run(
        compose([*SMALL, "seed=24", "adapter=loha", "train.epochs=1", "train.checkpoint_epochs=[1]"]),
        tmp_path,
        cache,
    )
    assert vae.n == 0


def test_unet_only_caches_text_embeddings(cache, tmp_path, monkeypatch):
    from transformers import CLIPTextModel

    te = Counter(monkeypatch, CLIPTextModel, "forward")
    saved, log = run(compose([*SMALL, "train.train_text_encoder=false"]), tmp_path, cache)
    assert te.n == 2  # the 6 captions in one batch, the empty caption once; never in the 4 steps
    keys = adapters.read_weights(saved[4])
    assert keys and all(k.startswith("lora_unet_") for k in keys)
    assert len(log) == 4


def test_nan_stops_the_run_and_keeps_the_last_good_checkpoint(cache, tmp_path, monkeypatch):
    real, calls = T.diffusion_loss, []

    def nan_at_step_3(*args, **kwargs):
        calls.append(1)
        loss = real(*args, **kwargs)
        return loss * float("nan") if len(calls) == 3 else loss

    monkeypatch.setattr(T, "diffusion_loss", nan_at_step_3)
    with pytest.raises(T.TrainingDiverged) as e:
        run(compose(SMALL), tmp_path, cache)
    assert e.value.cause == "nan"
    assert "loss is nan at step 3" in str(e.value) and "step-2.safetensors" in str(e.value)
    assert (tmp_path / "checkpoints" / "step-2.safetensors").is_file()
    assert not (tmp_path / "checkpoints" / "step-4.safetensors").exists()
    assert len(list(csv.DictReader((tmp_path / "train_log.csv").open()))) == 2
    adapters.read_weights(tmp_path / "checkpoints" / "step-2.safetensors")  # a whole, loadable file


class Preempted(Exception):
    pass


def test_an_interrupted_run_resumes_from_its_last_checkpoint_with_the_same_bits(cache, tmp_path, monkeypatch):
    cfg = compose([*SMALL, "train.epochs=3", "train.checkpoint_epochs=[1,3]", "adapter=loha"])
    concepts = load_concepts(list(cfg.concepts))
    model_key = content_key(model_identity(cfg.model))
    real, steps = T.diffusion_loss, []

    def loss_preempted_at(n):
        def loss(*args, **kwargs):
            steps.append(1)
            if len(steps) == n:
                raise Preempted
            return real(*args, **kwargs)

        return loss

    def go(out, preempt_at=0, key="k"):
        steps.clear()
        monkeypatch.setattr(T, "diffusion_loss", loss_preempted_at(preempt_at))
        return T.train(
            cfg, concepts, lambda step: out / f"step-{step}.safetensors", out / "log.csv", cache, model_key,
            state_path=out / "train_state.safetensors", state_key=key,
        )  # fmt: skip

    whole = go(tmp_path / "whole")
    assert len(steps) == 6 and T.read_state(tmp_path / "whole" / "train_state.safetensors", "k")["epoch"] == 1
    with pytest.raises(Preempted):
        go(tmp_path / "cut", preempt_at=4)  # in epoch 2, after the epoch-1 checkpoint
    assert T.read_state(tmp_path / "cut" / "train_state.safetensors", "k")["epoch"] == 1
    resumed = go(tmp_path / "cut")
    assert len(steps) == 4  # only epochs 2 and 3 ran again
    assert sorted(resumed) == sorted(whole) == [2, 6]
    for step in whole:  # (safetensors orders its header at random: compare contents, not bytes)
        a, b = adapters.read_weights(resumed[step]), adapters.read_weights(whole[step])
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        assert adapters.read_metadata(resumed[step]) == adapters.read_metadata(whole[step])
    logs = [list(csv.DictReader((tmp_path / d / "log.csv").open())) for d in ("whole", "cut")]
    assert [(r["step"], r["loss"], r["lr"]) for r in logs[0]] == [
        (r["step"], r["loss"], r["lr"]) for r in logs[1]
    ]
    # a state written for other settings is never resumed, and is removed
    assert T.read_state(tmp_path / "cut" / "train_state.safetensors", "another key") is None
    assert not (tmp_path / "cut" / "train_state.safetensors").exists()


class WritesAFile:
    """Unpickling this object creates ``path``: what a crafted state file would do to torch.load."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_crafted_pickle_as_training_state_is_refused_and_training_starts_over(cache, tmp_path):
    cfg = compose([*SMALL, "train.epochs=2", "train.checkpoint_epochs=[1,2]"])
    concepts = load_concepts(list(cfg.concepts))
    model_key = content_key(model_identity(cfg.model))

    def go(out):
        return T.train(
            cfg, concepts, lambda step: out / f"step-{step}.safetensors", out / "log.csv", cache, model_key,
            state_path=out / "train_state.safetensors", state_key="k",
        )  # fmt: skip

    whole = go(tmp_path / "whole")
    crafted, ran = tmp_path / "crafted" / "train_state.safetensors", tmp_path / "code-ran"
    crafted.parent.mkdir()
    torch.save({"key": "k", "saved": {}, "payload": WritesAFile(ran)}, crafted)
    redone = go(tmp_path / "crafted")
    assert not ran.exists()  # the pickle was never unpickled
    assert sorted(redone) == sorted(whole)  # the stage started over and ran to its end
    for step in whole:
        a, b = adapters.read_weights(redone[step]), adapters.read_weights(whole[step])
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert T.read_state(crafted, "k")["epoch"] == 1  # the crafted file was replaced by a real state


def test_lr_scale_multiplies_the_configurations_lr(cache, tmp_path):
    saved, log = run(compose([*SMALL, "train.lr_scale=10"]), tmp_path, cache)
    assert [float(r["lr"]) for r in log] == pytest.approx([5e-3 * k / 3 for k in (1, 2, 3, 3)], rel=1e-5)
    meta = adapters.read_metadata(saved[4])
    assert float(meta["ss_learning_rate"]) == pytest.approx(5e-3)  # what kohya tools read: the lr used
    assert OmegaConf.create(meta["lycobench.adapter"]).lr == 5e-4  # the paper's level, for the analysis


def test_an_algorithms_own_lr_scale_multiplies_on_top():
    """conf/adapter/full.yaml declares native fine-tuning's factor; the lr used is level x train x adapter
    scale, the level stays what the analysis reads."""
    cfg = compose(["adapter=full", "train=scaled"])
    assert cfg.adapter.lr == 1e-6 and cfg.adapter.lr_scale == 20 and cfg.train.lr_scale == 5
    assert T.effective_lr(cfg) == pytest.approx(1e-4)
    assert T.effective_lr(compose(["adapter=lora", "train=scaled"])) == pytest.approx(2.5e-3)


def test_repeats_balance_concepts():
    def concept(n):
        leaf = Leaf("c", "object", "t", "toy", None, "", items=[None] * n)
        return ConceptFolder("c", "object", "t", "toy", Path("."), [leaf])

    assert [T.repeats_for(concept(n), 200) for n in (4, 7, 12, 90, 200, 400)] == [50, 29, 17, 2, 1, 1]


def test_checkpoint_epochs_must_lie_in_the_run():
    with pytest.raises(
        ValueError, match=r"checkpoint_epochs=\[3\]: every entry must lie in 1..train.epochs=2"
    ):
        T.checkpoint_epochs(OmegaConf.create({"epochs": 2, "checkpoint_epochs": [3]}))
    assert T.checkpoint_epochs(OmegaConf.create({"epochs": 50, "checkpoint_epochs": [50, 10, 30]})) == [
        10,
        30,
        50,
    ]


# --- adapter=external --------------------------------------------------------------------------------


def test_external_adapter_is_checked_and_adopted(trained, cache, tmp_path):
    src = trained["saved"][4]
    cfg = compose(["sweep=smoke", "adapter=external", f"adapter.path={src}"])
    saved, log = run(cfg, tmp_path, cache)
    assert list(saved) == [4]  # the step its metadata names
    assert saved[4].read_bytes() == src.read_bytes()
    assert log == [
        {"step": "4", "epoch": "2", "loss": "", "lr": "", "seconds": "", "steps_per_s": "", "cpu_seconds": ""}
    ]


def test_external_adapter_without_effect_is_refused(cache, tmp_path):
    from lycobench.models import load_pipeline

    cfg = compose(SMALL)
    pipe = load_pipeline(cfg.model, cache)
    a, t = OmegaConf.to_container(cfg.adapter), OmegaConf.to_container(cfg.target)
    zero = adapters.attach(pipe, a, t, train_text_encoder=True, seed=0)  # LoRA starts as the identity
    adapters.save(zero, tmp_path / "zero.safetensors", {})
    with pytest.raises(AdapterHasNoEffect, match="changes nothing"):
        run(
            compose(["sweep=smoke", "adapter=external", f"adapter.path={tmp_path / 'zero.safetensors'}"]),
            tmp_path,
            cache,
        )
    with pytest.raises(FileNotFoundError, match="adapter.path"):
        run(compose(["sweep=smoke", "adapter=external"]), tmp_path, cache)


def test_external_adapter_with_nan_or_overflowing_weights_is_refused(trained, cache, tmp_path):
    """NaN passed the old no-effect check (NaN < 1e-6 is false) and every image came out black."""
    from safetensors.torch import load_file, save_file

    from lycobench.cell import classify
    from lycobench.data import InputError

    sd = load_file(str(trained["saved"][4]))
    key = sorted(k for k in sd if k.endswith("lora_up.weight"))[0]
    nan = {**sd, key: torch.full_like(sd[key], float("nan"))}
    save_file(nan, str(tmp_path / "nan.safetensors"))
    cfg = compose(["sweep=smoke", "adapter=external", f"adapter.path={tmp_path / 'nan.safetensors'}"])
    with pytest.raises(InputError, match=f"NaN or infinite values \\({key}\\)") as e:
        run(cfg, tmp_path / "a", cache)
    assert classify(e.value) == "data" and not (tmp_path / "a" / "checkpoints").exists()
    huge = {k: v * 1e30 if "lora_" in k and k.endswith("weight") else v for k, v in sd.items()}
    save_file(huge, str(tmp_path / "huge.safetensors"))  # finite, but the output overflows
    cfg = compose(["sweep=smoke", "adapter=external", f"adapter.path={tmp_path / 'huge.safetensors'}"])
    with pytest.raises(AdapterHasNoEffect, match="NaN or infinity") as e:
        run(cfg, tmp_path / "b", cache)
    assert classify(e.value) == "data"


@pytest.mark.slow
def test_run_command_with_an_external_adapter(trained, tmp_path, cli):
    """The whole cell through the CLI: adopt, generate, evaluate (about a minute on 2 busy cores)."""
    src = trained["saved"][4]
    r = cli("run", "sweep=smoke", f"results_dir={tmp_path}", "adapter=external", f"adapter.path={src}")
    assert r.returncode == 0, r.stderr[-3000:]
    runs = list((tmp_path / "smoke" / "runs").glob("custom-external-*/seed=23"))
    assert len(runs) == 1 and (runs[0] / "checkpoints" / "step-4.safetensors").is_file()
    assert (runs[0] / "metrics.parquet").is_file()


@pytest.mark.gpu
@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_cuda_training_in_mixed_precision(cache, tmp_path, amp):
    if amp == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    cfg = compose([*SMALL, "train.device=cuda", f"train.mixed_precision={amp}"])
    saved, log = run(cfg, tmp_path, cache)
    assert sorted(saved) == [2, 4]
    assert all(torch.isfinite(torch.tensor(float(r["loss"]))) for r in log)
    from safetensors.torch import load_file

    assert all(t.dtype == torch.float32 for t in load_file(str(saved[4])).values())  # master weights
