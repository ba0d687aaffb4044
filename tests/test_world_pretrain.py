"""The world's pretrained tiny Stable Diffusion and encoders: loading, determinism, the check's scoring."""

from __future__ import annotations

import contextlib
import json

import numpy as np
import pytest
import torch

from lycobench.calibrate import check
from lycobench.models import ModelNotFound, world_folder
from lycobench.state_io import load_state
from lycobench.world.cli import parser
from lycobench.world.concepts import load_concepts, studied_concepts
from lycobench.world.oracle import vae_roundtrip
from lycobench.world.pretrain.data import WorldData
from lycobench.world.pretrain.run import SHIPPED
from lycobench.world.vocab import HELDOUT_PAIRS


def test_pretraining_data_is_base_world_only():
    data = WorldData(300, seed=0)
    held = set(HELDOUT_PAIRS)
    assert data.images.shape == (300, 32, 32, 3) and data.images.dtype == np.uint8
    assert all(s.concept is None for s in data.scenes)
    assert not any((o.colour, o.shape) in held for s in data.scenes for o in s.objects)
    rng1, rng2 = np.random.default_rng(1), np.random.default_rng(1)
    assert data.captions([0, 1, 2], rng1) == WorldData(3, seed=0).captions([0, 1, 2], rng2)


def test_vae_figures_are_random_multicoloured_and_never_a_concept():
    from lycobench.world.pretrain.data import render_32
    from lycobench.world.pretrain.figures import random_figure_scenes

    scenes = random_figure_scenes(40, seed=3)
    assert scenes == random_figure_scenes(40, seed=3)  # seeded
    assert all(s.concept is None and len(s.figure) >= 3 for s in scenes)
    assert all(len({p.colour for p in s.figure}) == len(s.figure) for s in scenes)  # one colour per part
    assert len({tuple(p.args) for s in scenes for p in s.figure}) == sum(len(s.figure) for s in scenes)
    images = render_32(scenes)
    assert images.shape == (40, 32, 32, 3)
    assert np.mean([len(np.unique(im.reshape(-1, 3), axis=0)) for im in images]) > 40  # many colours


def test_missing_world_model_names_the_command(tmp_path):
    with pytest.raises(ModelNotFound, match="world pretrain"):
        world_folder(str(tmp_path))


def test_shipped_pipeline_loads_offline_and_is_deterministic():
    pipe = check.load_pipe(SHIPPED)
    assert pipe.unet.dtype == torch.float32 and pipe.text_encoder.config.eos_token_id == 49407
    assert pipe.scheduler.config.steps_offset == 1
    assert 0.2 < pipe.vae.config.scaling_factor < 5  # 1 / latent std, set after VAE training
    a = check.sample(pipe, ["a red square on a white background"] * 2, seed=5)
    b = check.sample(pipe, ["a red square on a white background"] * 2, seed=5)
    assert a.shape == (2, 32, 32, 3)
    assert np.array_equal(a, b)
    assert not np.array_equal(a[0], a[1])  # different seeds, different images
    manifest = json.loads((SHIPPED / "manifest.json").read_text())
    assert manifest["data"]["concepts"].startswith("none")


def test_fast_base_check_scores_every_attribute():
    scenes, prompts, held = check.base_prompts(16, 2)
    assert held == [False] * 16 + [True] * 2
    images = check.sample(check.load_pipe(SHIPPED), prompts)
    from lycobench.world.oracle import Oracle

    scores = check.score_base(Oracle.load().predict(images), scenes, held)
    assert set(scores) == {"shape", "color", "background", "pattern", "heldout_combos"}
    # the shipped model draws what it is asked (world check on 200 prompts: docs/world-check.json)
    assert scores["shape"] >= 0.75 and scores["background"] >= 0.75 and scores["color"] >= 0.75


def test_score_base_counts_exact_matches():
    from lycobench.world.scenes import labels

    scenes, _, held = check.base_prompts(3, 1)
    truth = [labels(s) for s in scenes]
    perfect = {
        "shapes": [t["shapes"] for t in truth],
        "colours": [t["colours"] for t in truth],
        "bg_colour": [t["bg_colour"] for t in truth],
        "pattern": [t["pattern"] for t in truth],
        "count": [t["count"] for t in truth],
    }
    assert all(v == 1.0 for v in check.score_base(perfect, scenes, held).values())
    wrong = dict(perfect, shapes=[frozenset({"nothing"})] * 4)
    scores = check.score_base(wrong, scenes, held)
    assert scores["shape"] == 0.0 and scores["heldout_combos"] == 0.0 and scores["color"] == 1.0


def test_world_encoders_load_and_embed():
    from lycobench.world.clip_dino import load_world_clip, load_world_dino

    images = WorldData(4, seed=3).images
    clip = load_world_clip()
    img, txt = clip.encode_images(images), clip.encode_texts(["a red circle", "a blue star"])
    assert img.shape == (4, 64) and txt.shape == (2, 64) and np.isfinite(img).all()
    feats = load_world_dino().encode_images(images)
    assert feats.shape == (4, 96) and np.isfinite(feats).all()
    big = np.repeat(np.repeat(images, 2, axis=1), 2, axis=2)  # 64 px input is area-downsampled to 32
    assert np.allclose(load_world_dino().encode_images(big), feats, atol=1e-4)


@pytest.mark.slow
def test_tiny_pretrain_is_deterministic(tmp_path, monkeypatch):
    from lycobench.world.pretrain import run

    monkeypatch.setattr(run, "N_IMAGES", 64)
    monkeypatch.setattr(run, "N_HOLDOUT", 8)
    outs = []
    for name in ("a", "b"):
        folder = run.pretrain(
            tmp_path / name, tmp_path / f"{name}-work", threads=1, vae_steps=2, unet_steps=2, decoder_steps=2,
            snapshot_every=2, batch=4,
        )  # fmt: skip
        assert (tmp_path / f"{name}-work" / "snapshots" / "step-00002" / "model_index.json").is_file()
        assert json.loads((folder / "manifest.json").read_text())["steps"] == {
            "vae": 2,
            "unet": 2,
            "decoder": 2,
        }
        pipe = check.load_pipe(folder)
        outs.append(check.sample(pipe, ["a red circle"], seed=1))
    assert np.array_equal(outs[0], outs[1])


def test_bordered_copies_are_the_share_asked_for_and_leave_the_originals_alone():
    from lycobench.world.pretrain.vae import with_borders
    from lycobench.world.vocab import COLOURS

    images = WorldData(30, seed=0).images
    out = with_borders(images, 0.25, seed=0)
    assert len(out) == 40 and np.array_equal(out[:30], images)  # 10 of 40 copies: a quarter
    palette = {tuple(c) for c in COLOURS.values()}
    widths = set()
    for img in out[30:]:
        ring = np.concatenate([img[:2].reshape(-1, 3), img[-2:].reshape(-1, 3), img[:, :2].reshape(-1, 3)])
        assert len({tuple(p) for p in ring}) == 1 and tuple(ring[0]) in palette  # one world colour all round
        widths.add(next(k for k in range(2, 7) if not np.array_equal(img[k, 16], img[0, 16])))
    assert widths <= {2, 3, 4, 5} and len(widths) > 1
    assert np.array_equal(with_borders(images, 0.25, seed=0), out)  # seeded
    assert with_borders(images, 0.0, seed=0) is images


@pytest.mark.slow
def test_decoder_stage_on_a_model_folder_changes_only_the_decoder(tmp_path, monkeypatch):
    """`world pretrain --what decoder`: the VAE decoder is fine-tuned in place; the encoder (so the latents
    the UNet learned), the UNet and the text encoder stay bit-identical, and the manifest says what ran."""
    from safetensors.torch import load_file

    from lycobench.world.pretrain import run

    monkeypatch.setattr(run, "N_IMAGES", 32)
    monkeypatch.setattr(run, "N_HOLDOUT", 8)
    folder = run.pretrain(
        tmp_path / "m", tmp_path / "w", threads=1, vae_steps=2, unet_steps=2, decoder_steps=0, batch=4,
        images=32, snapshot_every=2,
    )  # fmt: skip
    before = {
        sub: load_file(next((folder / sub).glob("*.safetensors"))) for sub in ("vae", "unet", "text_encoder")
    }
    run.refine_decoder(folder, steps=2, borders=0.5, threads=1, log=lambda row: None)
    after = {sub: load_file(next((folder / sub).glob("*.safetensors"))) for sub in before}
    for sub in ("unet", "text_encoder"):
        assert all(torch.equal(before[sub][k], after[sub][k]) for k in before[sub])
    vae_b, vae_a = before["vae"], after["vae"]
    assert all(torch.equal(vae_b[k], vae_a[k]) for k in vae_b if k.startswith(("encoder.", "quant_conv.")))
    assert any(not torch.equal(vae_b[k], vae_a[k]) for k in vae_b if k.startswith("decoder."))
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["steps"]["decoder"] == 2 and manifest["decoder"]["borders"] == 0.5
    assert (
        "--decoder-steps 2" in manifest["reproduce"]
        and manifest["reproduce"].count("--decoder-borders 0.5") == 1
    )
    assert "--decoder-borders 0.33" not in manifest["reproduce"]
    assert "_name_or_path" not in (folder / "vae" / "config.json").read_text()  # no machine path shipped


def test_vae_roundtrip_bounds_what_a_fine_tune_can_reach():
    from lycobench.world.concepts import load_concepts
    from lycobench.world.oracle import Oracle

    rates = vae_roundtrip(check.load_pipe(SHIPPED).vae, load_concepts()["bolt"], Oracle.load())
    assert rates["training_images"] == 1.0  # the oracle reads every rendered training image
    assert 0.0 <= rates["vae_roundtrip"] <= rates["training_images"]


def test_unet_stage_resumes_from_its_state_as_if_never_stopped(tmp_path):
    """Killed after a snapshot, restarted with the same settings: the same weights as an unbroken run; a
    state saved under other settings is not resumed."""
    from lycobench.tokenizer import clip_tokenizer
    from lycobench.world.pretrain.generator import Trainer

    data = WorldData(8, seed=0)
    latents = torch.randn(8, 8, 8, 8, generator=torch.Generator().manual_seed(0))
    settings = {"steps": 4, "test": 1}

    def run(state=None, stop_at=None, settings=settings):
        trainer = Trainer(data, latents, clip_tokenizer(), seed=0, batch=2)

        def snapshot(step):
            if step == stop_at:
                raise KeyboardInterrupt  # a kill right after the state was saved

        with contextlib.suppress(KeyboardInterrupt):
            trainer.train(4, snapshot=snapshot, snapshot_every=2, state_path=state, settings=settings)
        return [p.detach().clone() for p in [*trainer.unet_ema.parameters(), *trainer.te_ema.parameters()]]

    unbroken = run()
    state = tmp_path / "unet-state.safetensors"
    run(state, stop_at=2)
    assert load_state(state)["step"] == 2
    resumed = run(state)
    assert all(torch.equal(a, b) for a, b in zip(unbroken, resumed))
    run(state, stop_at=2)  # back to a state at step 2
    other = run(state, settings={**settings, "test": 2})  # other settings: starts over
    assert all(torch.equal(a, b) for a, b in zip(unbroken, other))
    assert load_state(state)["settings"]["test"] == 2


def test_pretrain_defaults_are_the_shipped_models_recipe_within_an_hour():
    """`world pretrain` without options runs the shipped model's recipe (VAE data, latent channels, noise
    offset, step counts), predicted to fit an hour; `--minutes` scales its step counts."""
    from lycobench.world.pretrain import SHIPPED_RECIPE, run

    manifest = json.loads((run.SHIPPED / "manifest.json").read_text())
    assert run.steps_for(run.SHIPPED_MINUTES) == manifest["steps"] == run.DEFAULT_STEPS
    assert run.DEFAULT_MINUTES == run.SHIPPED_MINUTES <= 60
    half = run.steps_for((run.SHIPPED_MINUTES + run.FIXED_MINUTES) / 2)
    assert (
        half["unet"] == run.DEFAULT_STEPS["unet"] // 2
        and half["decoder"] == run.DEFAULT_STEPS["decoder"] // 2
    )
    steps = manifest["steps"]
    assert f"--unet-steps {steps['unet']}" in manifest["reproduce"]
    args = parser().parse_args(["pretrain"])  # the bare command: the generator, within the default budget
    assert (args.what, args.minutes) == ("generator", run.DEFAULT_MINUTES)
    figures = manifest["data"].get("vae_figures")
    assert SHIPPED_RECIPE["vae_figures"] == (
        0.0 if not figures else round(figures["images"] / (figures["images"] + manifest["data"]["images"]), 3)
    )
    latent = json.loads((run.SHIPPED / "vae" / "config.json").read_text())["latent_channels"]
    assert SHIPPED_RECIPE["latent_channels"] == latent
    assert SHIPPED_RECIPE["noise_offset"] == manifest["training"].get("noise_offset", 0.0)
    assert SHIPPED_RECIPE["partial_captions"] == manifest["training"].get("partial_captions", 0.0)
    assert SHIPPED_RECIPE["decoder_borders"] == manifest["decoder"]["borders"]
    assert f"--decoder-borders {SHIPPED_RECIPE['decoder_borders']:g}" in manifest["reproduce"]
    assert (
        f"--partial-captions {SHIPPED_RECIPE['partial_captions']:g}" in manifest["reproduce"]
        or not (SHIPPED_RECIPE["partial_captions"])
    )


def test_partial_captions_leave_some_tags_out_and_keep_the_stream_without_them():
    """A partial caption names a non-empty proper subset of the scene's tags, in their order; without
    partial captions the caption stream is the one runs before the option drew (no extra random draws)."""
    from lycobench.world.captions import all_captions, caption, tags
    from lycobench.world.pretrain.data import WorldData, partial_caption

    data = WorldData(64, seed=5)
    rng = np.random.default_rng(0)
    for scene in data.scenes:
        full = tags(scene, lambda options: options[0]) + tags(scene, lambda options: options[-1])
        part = partial_caption(scene, rng).split(", ")
        assert 0 < len(part) < len(tags(scene)) and set(part) <= set(full)
    plain = data.captions(list(range(64)), np.random.default_rng(1))
    rng = np.random.default_rng(1)
    assert plain == [caption(s, rng) for s in data.scenes]
    data.partial = 0.5
    mixed = data.captions(list(range(64)), np.random.default_rng(1))
    n_partial = sum(c not in all_captions(s) for c, s in zip(mixed, data.scenes, strict=True))
    assert 16 <= n_partial <= 48


def test_offset_noise_shifts_each_image_and_channel_and_is_plain_noise_at_zero():
    from lycobench.world.pretrain.generator import training_noise

    shape = (4000, 3, 8, 8)
    plain = training_noise(shape, torch.Generator().manual_seed(0))
    assert torch.equal(plain, torch.randn(shape, generator=torch.Generator().manual_seed(0)))
    shifted = training_noise(shape, torch.Generator().manual_seed(0), offset=0.5)
    means = shifted.mean(dim=(2, 3))  # per image and channel: variance 1/64 + 0.5**2
    assert abs(means.std().item() - (1 / 64 + 0.25) ** 0.5) < 0.02
    assert abs(plain.mean(dim=(2, 3)).std().item() - 1 / 8) < 0.01
    within = shifted - means[..., None, None]  # the shift is constant over the grid
    assert abs(within.std().item() - plain.std().item()) < 0.01


def test_pretrain_stops_before_the_unet_when_the_vae_is_below_the_gate(tmp_path, monkeypatch):
    """The VAE's concept round trip is measured and logged; below --vae-gate the run stops with a message
    naming the fix, before any UNet step. The UNet's channels follow the VAE's latent channels."""
    from lycobench.tokenizer import clip_tokenizer
    from lycobench.world.pretrain import run
    from lycobench.world.pretrain.generator import Trainer

    monkeypatch.setattr(run, "N_HOLDOUT", 8)
    with pytest.raises(run.VaeBelowGate, match="--vae-gate 0.5.*--latent-channels"):
        run.pretrain(
            tmp_path / "out", tmp_path / "work", threads=1, vae_steps=2, images=32, batch=4,
            latent_channels=4, vae_gate=0.5,
        )  # fmt: skip
    rows = [json.loads(line) for line in (tmp_path / "work" / "pretrain-log.jsonl").read_text().splitlines()]
    done = next(r for r in rows if r["stage"] == "vae-done")
    assert set(json.loads(done["roundtrip"])) == set(studied_concepts())
    assert not any(r["stage"] == "unet" for r in rows) and not (tmp_path / "out").exists()
    assert load_state(tmp_path / "work" / "vae.safetensors")["settings"]["latent_channels"] == 4
    trainer = Trainer(WorldData(4, seed=0), torch.zeros(4, 4, 8, 8), clip_tokenizer(), seed=0)
    assert trainer.unet.config.in_channels == trainer.unet.config.out_channels == 4


def test_fast_concept_check_fine_tunes_each_named_adapter(tmp_path):
    from lycobench.__main__ import main

    out = tmp_path / "check.json"
    argv = ["world", "check", "--out", str(out), "--fast", "--parts", "concepts", "--threads", "1"]
    overrides = ["train.exposures_per_epoch=12"]  # composed into both fine-tunes (a bad key would raise)
    assert main([*argv, "--adapters", "lora", "loha", "--overrides", *overrides]) == 0
    result = json.loads(out.read_text())
    (name, scores), *_ = result["concepts"].items()
    assert name == studied_concepts()[0] and len(result["concepts"]) == 1
    assert set(scores["tuned_by_adapter"]) == {"lora", "loha"} == set(scores["train_s"])
    assert scores["tuned"] == scores["tuned_by_adapter"]["lora"]  # the "tuned" is the default LoRA
    for adapter in ("lora", "loha"):  # a learning curve: one rate per checkpoint, the last one "tuned"
        curve = scores["curve_by_adapter"][adapter]
        assert (
            len(curve) == len(scores["checkpoint_steps"][adapter])
            and curve[-1] == scores["tuned_by_adapter"][adapter]
        )
    assert all(0.0 <= r <= 1.0 for r in [scores["base"], *scores["tuned_by_adapter"].values()])
    leaves = scores["leaf_curves_by_adapter"]  # lumi has outfits: each one scored on its own prompt
    assert set(leaves) == {"lora", "loha"} and set(leaves["lora"]) == {
        "lumi.brel",
        "lumi.tams",
        "lumi.others",
    }
    assert all(len(c) == len(scores["checkpoint_steps"]["lora"]) for c in leaves["lora"].values())
    assert result["settings"]["overrides"] == overrides
    assert result["settings"]["adapters"] == ["lora", "loha"] and not out.with_suffix(".png").exists()
    from PIL import Image  # the pictures behind the rates: one row per adapter and checkpoint

    sheet = Image.open(out.with_name("check-concepts.png"))
    rows = sum(len(scores["checkpoint_steps"][a]) for a in ("lora", "loha"))
    assert sheet.height == rows * (32 * 3 + 4)


def test_leaf_rates_score_each_outfit_on_its_own_prompt_as_a_study_does():
    lumi = load_concepts()["lumi"]
    assert lumi.leaves == ["brel", "tams", "others"]  # trigger_prompts' order: 2 images per leaf below
    read = ["lumi.brel", "lumi.tams", "lumi.brel", "lumi.brel", "lumi.tams", "bear"]
    # brel: 1 of 2 right; tams: drawn as brel twice (the keyword did not bind); others: any lumi leaf counts
    assert check.leaf_rates(read, lumi, 6) == {"lumi.brel": 0.5, "lumi.tams": 0.0, "lumi.others": 0.5}


def test_concept_check_can_teach_named_concepts_together_as_a_study_does(tmp_path, monkeypatch, capsys):
    from lycobench.__main__ import main

    runs = []
    real_fine_tune = check.fine_tune
    monkeypatch.setattr(
        check, "fine_tune", lambda _m, names, *a: runs.append(names) or real_fine_tune(_m, names, *a)
    )
    out = tmp_path / "check.json"
    argv = ["world", "check", "--out", str(out), "--fast", "--parts", "concepts", "--threads", "1"]
    assert main([*argv, "--concepts", "shroom", "frame", "--together"]) == 0
    result = json.loads(out.read_text())
    assert list(result["concepts"]) == ["shroom", "frame"] and result["settings"]["together"] is True
    sheet = out.with_name("check-concepts.png")  # no grid of base samples: only the concepts' sheet
    assert capsys.readouterr().out.rstrip().endswith(f"wrote {out} and {sheet}") and sheet.is_file()
    shroom, frame = result["concepts"]["shroom"], result["concepts"]["frame"]
    assert runs == [["shroom", "frame"]] and shroom["train_s"] == frame["train_s"]  # one shared run
    assert shroom["category"] == "object" and frame["category"] == "style"
    assert all(0.0 <= s[k] <= 1.0 for s in (shroom, frame) for k in ("base", "tuned"))


def test_concept_check_names_unknown_concepts_before_any_compute(tmp_path, capsys):
    from lycobench.__main__ import main

    out = tmp_path / "check.json"
    assert main(["world", "check", "--out", str(out), "--concepts", "bear", "teddy"]) == 2
    err = capsys.readouterr().err
    assert "unknown concept(s) teddy" in err and "concepts/world/" in err and not out.exists()


def test_concept_check_takes_the_named_concepts_with_or_without_fast():
    from lycobench.world.concepts import studied_concepts

    assert check.concepts_to_check(("bear", "hatch"), fast=False) == ["bear", "hatch"]
    assert check.concepts_to_check(("bear", "hatch"), fast=True) == ["bear", "hatch"]
    assert check.concepts_to_check((), fast=False) == studied_concepts()
    assert check.concepts_to_check((), fast=True) == studied_concepts()[:1]


def _check_json(adapters, parts=("concepts",), train="scaled", **extra):
    settings = {"model": "m", "prompts": 200, "heldout_prompts": 48, "sampler": {"steps": 20}, "train": train,
                "adapters": list(adapters), "overrides": [], "together": True, "fast": False,
                "parts": list(parts), "seconds": 10}  # fmt: skip
    res = {"settings": settings, **extra}
    if "concepts" in parts:
        entry = {
            "category": "object",
            "base": 0.0,
            "prompts": ["welm toy"],
            "images": 48,
            "sampler": {"steps": 10},
        }
        per = {"curve_by_adapter": {a: [0.1, 0.5, 0.9] for a in adapters}, "checkpoint_steps": {a: [1, 3, 5] for a in adapters},
               "tuned_by_adapter": {a: 0.9 for a in adapters}, "train_s": {a: 5 for a in adapters}}  # fmt: skip
        res["concepts"] = {"bear": {**entry, **per, "tuned": 0.9}}
    return res


def test_world_check_results_from_separate_processes_merge_and_differences_are_refused(tmp_path, capsys):
    from lycobench.__main__ import main
    from lycobench.calibrate.merge import MergeError, merge_checks

    loha, lora = _check_json(["loha"]), _check_json(["lora"])
    lora["concepts"]["bear"]["tuned_by_adapter"]["lora"] = 0.7
    base = _check_json(
        [], parts=("base", "encoders"), train="quick", base={"shape": 1.0}, clip_retrieval_at_10=0.99
    )
    merged = merge_checks([("loha.json", loha), ("lora.json", lora), ("base.json", base)])
    bear = merged["concepts"]["bear"]
    assert list(bear["curve_by_adapter"]) == ["lora", "loha"] and bear["tuned"] == 0.7  # the paper's order
    lumi_loha, lumi_lora = (
        _check_json(["loha"]),
        _check_json(["lora"]),
    )  # per-leaf curves join per adapter too
    lumi_loha["concepts"]["bear"]["leaf_curves_by_adapter"] = {"loha": {"bear.x": [0.1, 0.2, 0.3]}}
    joined = merge_checks([("a", lumi_loha), ("b", lumi_lora)])["concepts"]["bear"]
    assert joined["leaf_curves_by_adapter"] == {"loha": {"bear.x": [0.1, 0.2, 0.3]}}
    assert merged["base"] == {"shape": 1.0} and merged["clip_retrieval_at_10"] == 0.99
    s = merged["settings"]
    assert s["adapters"] == ["lora", "loha"] and s["parts"] == ["base", "concepts", "encoders"]
    assert (
        s["train"] == "scaled"
        and s["seconds"] == 30
        and s["merged_from"] == ["loha.json", "lora.json", "base.json"]
    )
    with pytest.raises(MergeError, match="setting 'train' is 'quick'"):
        merge_checks([("a", loha), ("b", _check_json(["lora"], train="quick"))])
    with pytest.raises(MergeError, match="loha measured in two files"):
        merge_checks([("a", loha), ("b", _check_json(["loha"]))])
    other_oracle = _check_json(["lora"])
    loha["settings"]["oracle"], other_oracle["settings"]["oracle"] = "aa" * 32, "bb" * 32
    with pytest.raises(MergeError, match="setting 'oracle'"):  # the oracle decides every rate
        merge_checks([("a", loha), ("b", other_oracle)])
    del loha["settings"]["oracle"]
    paths = []
    for name, res in (("a.json", loha), ("b.json", _check_json(["loha"]))):
        (tmp_path / name).write_text(json.dumps(res))
        paths.append(str(tmp_path / name))
    out = tmp_path / "m.json"
    assert main(["world", "check", "--out", str(out), "--merge", *paths]) == 2
    assert "measured in two files" in capsys.readouterr().err and not out.exists()
    (tmp_path / "b.json").write_text(json.dumps(lora))
    assert main(["world", "check", "--out", str(out), "--merge", *paths]) == 0
    assert json.loads(out.read_text())["settings"]["adapters"] == ["lora", "loha"]


def test_colour_distortion_changes_colour_not_shape_and_is_seeded():
    """The DINO views' colour distortion (SimCLR/DINO's): values stay in [0, 1], the same generator gives
    the same views, and where the image is flat it stays flat (colour moves, edges do not)."""
    import torch

    from lycobench.world.pretrain.views import colour_distortion

    x = torch.zeros(64, 3, 8, 8)
    x[:, 0, 2:6, 2:6], x[:, 1] = 0.9, 0.3  # a red square on a green ground
    a = colour_distortion(x, torch.Generator().manual_seed(1))
    b = colour_distortion(x, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.min() >= 0 and a.max() <= 1
    inside, outside = a[:, :, 3, 3], a[:, :, 0, 0]
    assert torch.equal(a[:, :, 2:6, 2:6], inside[:, :, None, None].expand(-1, -1, 4, 4))  # still one square
    assert (inside - outside).abs().amax(1).min() > 0  # still told apart from its ground
    assert (a - x).abs().amax((1, 2, 3)).gt(0.05).float().mean() > 0.5  # most views change colour


def test_concept_check_over_several_training_seeds_reports_their_mean(tmp_path, capsys):
    from lycobench.__main__ import main

    out = tmp_path / "seeds.json"
    argv = ["world", "check", "--out", str(out), "--fast", "--parts", "concepts", "--threads", "1"]
    refused = main([*argv, "--seeds", "23", "24", "--overrides", "seed=25"])  # both ways: refused, no compute
    assert refused == 2 and "either with --seeds" in capsys.readouterr().err and not out.exists()
    assert main([*argv, "--seeds", "23", "24", "--overrides", "train.exposures_per_epoch=12"]) == 0
    result = json.loads(out.read_text())
    (scores,) = result["concepts"].values()
    per_seed = scores["curve_by_seed"]["lora"]
    assert set(per_seed) == {"23", "24"} and result["settings"]["seeds"] == [23, 24]
    mean = [round((a + b) / 2, 4) for a, b in zip(per_seed["23"], per_seed["24"])]
    assert scores["curve_by_adapter"]["lora"] == pytest.approx(mean, abs=1e-4)
    for leaf_curve in scores["leaf_curves_by_adapter"]["lora"].values():
        assert len(leaf_curve) == len(mean)
