"""lycobench benchmarks, each compared with a plain loop that does the same work the usual way.

    python benchmarks/bench.py --case train --out results/bench.json   # JSON + a Markdown table beside it

Each case is a function in CASES returning ``{"lycobench": x, "baseline": y, "ratio": x / y, "unit": ...}``
(plus any details); every case runs in one process, on one machine, with one model, so the two numbers
are comparable. Add a case by adding a function to CASES.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


# --- case: train ------------------------------------------------------------------------------------

# Two models. "sd15-proportions": Stable Diffusion 1.5's architecture with every width divided by 4
# (UNet 320..1280 -> 80..320 channels, VAE 128..512 -> 32..128, text encoder 768 -> 48 wide, 12 layers)
# at 128 px. Convolution cost scales with width^2 x area, so the VAE : UNet : text-encoder cost ratio is
# about SD 1.5's at 512 px, which is what decides the gain of caching. "tiny": the test model of
# conf/model/tiny.yaml, whose VAE is a few percent of a step.
SD15_QUARTER = {
    "resolution": 128,
    "unet": dict(
        block_out_channels=(80, 160, 320, 320),
        layers_per_block=2,
        cross_attention_dim=48,
        attention_head_dim=8,
        norm_num_groups=16,
    ),
    "vae": dict(
        block_out_channels=(32, 64, 128, 128),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=2,
        latent_channels=4,
        norm_num_groups=32,
    ),
    "text_encoder": dict(hidden_size=48, intermediate_size=192, num_hidden_layers=12, num_attention_heads=3),
}


def _build_sd15_quarter(folder: Path) -> Path:
    """A seeded random-init pipeline with SD 1.5's architecture at a quarter of its widths, saved."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from lycobench.models import SCHEDULER_KW
    from lycobench.tokenizer import clip_tokenizer, save_tokenizer

    if (folder / "model_index.json").is_file():
        return folder
    torch.manual_seed(0)
    c, res = SD15_QUARTER, SD15_QUARTER["resolution"]
    te = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=49408,
            max_position_embeddings=77,
            bos_token_id=49406,
            eos_token_id=49407,
            pad_token_id=49407,
            **c["text_encoder"],
        )
    )
    pipe = StableDiffusionPipeline(
        vae=AutoencoderKL(sample_size=res, **c["vae"]),
        text_encoder=te,
        tokenizer=clip_tokenizer(),
        unet=UNet2DConditionModel(sample_size=res // 8, **c["unet"]),
        scheduler=DDIMScheduler(**SCHEDULER_KW),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    save_tokenizer(pipe.tokenizer, folder / "tokenizer")
    return folder


def _train_config(model: str, overrides: list[str], tmp: Path):
    from lycobench.config import compose

    # The example concept (6 images), 48 samples per epoch, 24 steps per run.
    base = ["adapter=lora", "target=attn-mlp", "train=tiny", "train.exposures_per_epoch=48"]
    if model == "tiny":
        base += ["model=tiny", "train.batch_size=8", "train.epochs=4", "train.checkpoint_epochs=[4]"]
    else:
        folder = _build_sd15_quarter(tmp / "sd15-quarter")
        base += ["model=sd15", f"model.path={folder}", f"model.resolution={SD15_QUARTER['resolution']}"]
        base += ["train.batch_size=2", "train.epochs=1", "train.checkpoint_epochs=[1]"]
    return compose(base + overrides)


def _lycobench_rate(cfg, cache: Path, work: Path) -> tuple[float, float, int]:
    """(steps per CPU-second, steps per second, steps) of lycobench's own loop (train.train), from its
    train_log.csv."""
    import csv

    from lycobench.data import load_concepts
    from lycobench.models import model_identity
    from lycobench.store import content_key
    from lycobench.train import train

    concepts = load_concepts(list(cfg.concepts))
    train(
        cfg,
        concepts,
        lambda step: work / f"step-{step}.safetensors",
        work / "train_log.csv",
        cache,
        content_key(model_identity(cfg.model)),
    )
    last = list(csv.DictReader((work / "train_log.csv").open()))[-1]
    steps = int(last["step"])
    return steps / float(last["cpu_seconds"]), float(last["steps_per_s"]), steps


def _baseline_rate(cfg, cache: Path, steps: int) -> tuple[float, float]:
    """(steps per CPU-second, steps per second) of the usual loop, as diffusers' training scripts do it
    with their default of no data-loader workers: the same adapter, optimiser and loss, but every step
    reads and resizes its images, encodes them with the VAE (a posterior sample) and runs the text
    encoder, whether it is trained or not."""
    import torch
    from omegaconf import OmegaConf

    from lycobench import adapters
    from lycobench.data import load_concepts
    from lycobench.models import load_pipeline
    from lycobench.train import constant_with_warmup, diffusion_loss, load_image_tensor, repeats_for, tokenize

    tcfg = cfg.train
    pipe = load_pipeline(cfg.model, cache)
    for m in (pipe.unet, pipe.text_encoder, pipe.vae):
        m.requires_grad_(False)
        m.eval()
    items = []
    for c in load_concepts(list(cfg.concepts)):
        items += [it for leaf in c.leaves for it in leaf.items] * repeats_for(
            c, int(tcfg.exposures_per_epoch)
        )
    ids_all = tokenize(pipe.tokenizer, [it.caption for it in items])
    empty = tokenize(pipe.tokenizer, [""])
    train_te = bool(tcfg.train_text_encoder)
    adapter = adapters.attach(
        pipe, OmegaConf.to_container(cfg.adapter), OmegaConf.to_container(cfg.target), train_te, int(cfg.seed)
    )
    adapter.train(True)
    params = adapter.parameters()
    opt = torch.optim.AdamW(params, lr=float(cfg.adapter.lr), weight_decay=0.1, betas=(0.9, 0.99))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, constant_with_warmup(int(tcfg.warmup_steps)))
    s = pipe.scheduler
    gen = torch.Generator().manual_seed(int(cfg.seed))
    bs, res = int(tcfg.batch_size), int(cfg.model.resolution)
    t0, cpu0 = time.perf_counter(), time.process_time()
    for _ in range(steps):
        idx = torch.randint(0, len(items), (bs,), generator=gen).tolist()
        pixels = torch.stack([load_image_tensor(items[i].image, res) for i in idx])
        with torch.no_grad():
            latents = pipe.vae.encode(pixels).latent_dist.sample(gen) * pipe.vae.config.scaling_factor
        drop = (torch.rand(bs, generator=gen) < float(tcfg.caption_dropout)).tolist()
        ids = torch.cat([empty if d else ids_all[i][None] for i, d in zip(idx, drop)])
        with torch.set_grad_enabled(train_te):
            cond = pipe.text_encoder(ids)[0]
        loss = diffusion_loss(
            pipe.unet,
            latents,
            cond,
            s.alphas_cumprod,
            s.config.prediction_type,
            s.config.num_train_timesteps,
            gen,
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
    return steps / (time.process_time() - cpu0), steps / (time.perf_counter() - t0)


def _compare(model: str, overrides: list[str], repeats: int, tmp: Path) -> dict:
    """Interleaved runs of both loops on one model; medians. The headline rate is steps per CPU-second
    (with one torch thread): on a shared machine wall-clock rates swing with the other processes."""
    cache = tmp / f"cache-{model}"
    cfg = _train_config(model, overrides, tmp)
    t0 = time.perf_counter()
    _lycobench_rate(cfg, cache, tmp / f"warm-{model}")  # builds the model, fills the latent cache
    first_run_s = time.perf_counter() - t0
    ours, base, ours_wall, base_wall, steps = [], [], [], [], 0
    for r in range(repeats):
        cpu_rate, wall_rate, steps = _lycobench_rate(cfg, cache, tmp / f"run-{model}-{len(overrides)}-{r}")
        ours.append(cpu_rate)
        ours_wall.append(wall_rate)
        cpu_rate, wall_rate = _baseline_rate(cfg, cache, steps)
        base.append(cpu_rate)
        base_wall.append(wall_rate)
    x, y = statistics.median(ours), statistics.median(base)
    return {
        "lycobench": round(x, 3),
        "baseline": round(y, 3),
        "ratio": round(x / y, 3),
        "unit": "steps/s (steps per CPU-second, 1 torch thread)",
        "wall_clock_steps_per_s": {
            "lycobench": [round(v, 3) for v in ours_wall],
            "baseline": [round(v, 3) for v in base_wall],
        },
        "runs": {"lycobench": [round(v, 3) for v in ours], "baseline": [round(v, 3) for v in base]},
        "model": model,
        "overrides": overrides,
        "steps": steps,
        "batch": int(cfg.train.batch_size),
        "first_run_s": round(first_run_s, 1),
    }


def case_train(repeats: int = 3) -> dict:
    """Headline: SD 1.5 proportions, UNet adapted and the text encoder frozen; lycobench reads cached
    latents and text embeddings, the baseline runs the VAE and the text encoder every step. Variants: the
    paper's recipe (text encoder trained too: only the latents are cached) and the tiny test model."""
    frozen, trained = ["train.train_text_encoder=false"], []
    with tempfile.TemporaryDirectory(prefix="lycobench-bench-") as tmp:
        tmp = Path(tmp)
        out = _compare("sd15-proportions", frozen, repeats, tmp)
        out["variants"] = {
            "sd15-proportions, text encoder trained": _compare("sd15-proportions", trained, repeats, tmp),
            "tiny, text encoder frozen": _compare("tiny", frozen, repeats, tmp),
            "tiny, text encoder trained": _compare("tiny", trained, repeats, tmp),
        }
    out["setting"] = "LoRA dim 8 on attn-mlp, the example concept, SD 1.5 proportions, text encoder frozen"
    return out


# --- case: generate -----------------------------------------------------------------------------------


def _generate_setup(tmp: Path):
    """The default study's prompt plan (generate=tiny: all five prompt types) for the config's concepts, on
    the world model when its weights are shipped, else the tiny model."""
    from lycobench.config import compose
    from lycobench.data import all_leaves, load_concepts
    from lycobench.models import load_pipeline, model_folder
    from lycobench.prompts import plan_for

    try:
        model_folder(compose(["model=world"]).model, tmp)
        model = "world"
    except Exception:  # the world base model is not shipped yet
        model = "tiny"
    cfg = compose([f"model={model}", "generate=tiny", f"results_dir={tmp}"])
    plan = plan_for(cfg.generate, all_leaves(load_concepts(list(cfg.concepts))))
    return cfg, plan, load_pipeline(cfg.model, tmp / "cache")


def _lycobench_generate(pipe, plan, settings, invariant: bool) -> tuple[float, dict]:
    """images/s of lycobench's renderer: batches across prompts (generate.batch_size=auto)."""
    from lycobench import generate as gen

    out = {}
    t0 = time.perf_counter()
    with gen.sampling(pipe, invariant):
        gen.render(pipe, plan, settings, gen.CPU_BATCH, lambda it, a: out.__setitem__(it, a))
    return len(plan) / (time.perf_counter() - t0), out


def _baseline_generate(pipe, plan, settings) -> tuple[float, dict]:
    """images/s of the usual loop: one pipeline call per prompt with all of that prompt's images (the
    paper's webui loop), each image with its own seed; plain diffusers, nothing else."""
    import numpy as np
    import torch

    by_prompt: dict[str, list] = {}
    for it in plan:
        by_prompt.setdefault(it.prompt, []).append(it)
    out = {}
    t0 = time.perf_counter()
    for prompt, items in by_prompt.items():
        images = pipe(
            prompt=prompt,
            negative_prompt=settings["negative_prompt"],
            num_images_per_prompt=len(items),
            generator=[torch.Generator("cpu").manual_seed(it.seed) for it in items],
            num_inference_steps=settings["steps"],
            guidance_scale=settings["guidance_scale"],
            height=settings["resolution"],
            width=settings["resolution"],
            output_type="np",
        ).images
        for it, img in zip(items, images):
            out[it] = (np.clip(img, 0, 1) * 255).round().astype(np.uint8)
    return len(plan) / (time.perf_counter() - t0), out


def case_generate(repeats: int = 3) -> dict:
    """One checkpoint's images of the default study, drawn by lycobench (batches of 16 across prompts and
    images, bit-identical whatever the batch) and by a per-prompt diffusers loop; same model, sampler,
    steps, seeds. Variant invariance_off: lycobench without its CPU batch-invariance shim."""
    import numpy as np

    from lycobench.generate import CPU_BATCH, sampler_settings

    with tempfile.TemporaryDirectory(prefix="lycobench-bench-") as tmp:
        cfg, plan, pipe = _generate_setup(Path(tmp))
        settings = sampler_settings(cfg.generate, int(cfg.model.resolution))
        _lycobench_generate(pipe, plan[:4], settings, True)  # warm-up: first calls pay one-off costs
        runs = {"lycobench": [], "baseline": [], "invariance_off": []}
        diff = 0
        for _ in range(repeats):
            rate, ours = _lycobench_generate(pipe, plan, settings, True)
            runs["lycobench"].append(rate)
            rate, theirs = _baseline_generate(pipe, plan, settings)
            runs["baseline"].append(rate)
            runs["invariance_off"].append(_lycobench_generate(pipe, plan, settings, False)[0])
            diff = max(diff, max(int(np.abs(ours[it].astype(int) - theirs[it]).max()) for it in plan))
    x, y, z = (statistics.median(runs[k]) for k in ("lycobench", "baseline", "invariance_off"))
    calls = {
        "lycobench": -(-len({(it.prompt, it.seed) for it in plan}) // CPU_BATCH),
        "baseline": len({it.prompt for it in plan}),
    }
    return {
        "lycobench": round(x, 3),
        "baseline": round(y, 3),
        "ratio": round(x / y, 3),
        "unit": "images/s",
        "images": len(plan),
        "pipeline_calls": calls,
        "max_pixel_difference": diff,  # uint8 levels between the two loops' images (float rounding only)
        "repeats": repeats,
        "runs": {k: [round(v, 3) for v in r] for k, r in runs.items()},
        "setting": f"{cfg.model.name} model, {settings['steps']} DDIM steps, CFG {settings['guidance_scale']}, "
        f"{cfg.model.resolution}px, generate=tiny plan ({', '.join(cfg.generate.prompt_types)})",
        "variants": {
            "invariance_off": {
                "lycobench": round(z, 3),
                "baseline": round(y, 3),
                "ratio": round(z / y, 3),
                "unit": "images/s",
            }
        },
    }


CASES: dict[str, Callable[..., dict]] = {"train": case_train, "generate": case_generate}


# --- output ----------------------------------------------------------------------------------------------


def markdown(results: dict) -> str:
    lines = ["| case | lycobench | baseline | ratio | unit |", "|---|---|---|---|---|"]
    for name, r in results.items():
        rows = [(name, r)] + [(f"{name} ({k})", v) for k, v in r.get("variants", {}).items()]
        for label, v in rows:
            lines.append(f"| {label} | {v['lycobench']} | {v['baseline']} | {v['ratio']}x | {v['unit']} |")
    lines.append("")
    for name, r in results.items():
        m = r["machine"]
        lines.append(
            f"{name}: {r.get('setting', '')}; {m['platform']}, {m['cpus']} CPUs, torch {m['torch']} with "
            f"{m['torch_threads']} threads, load average {m['load_average']} at the start."
        )
    return "\n".join(lines) + "\n"


def machine() -> dict:
    import torch

    return {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "load_average": [round(v, 2) for v in os.getloadavg()],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--case", action="append", choices=sorted(CASES), help="case(s) to run (default: all)"
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="JSON file; the Markdown table goes beside it (.md)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repetitions per measurement")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)  # on a shared machine, 1 avoids threads waiting on each other
    results: dict = {}
    for name in args.case or sorted(CASES):
        t0 = time.perf_counter()
        at_start = machine()
        results[name] = {**CASES[name](repeats=args.repeats), "machine": at_start}
        print(f"{name}: {json.dumps(results[name])} ({time.perf_counter() - t0:.0f}s)", file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    table = markdown(results)
    args.out.with_suffix(".md").write_text(table, encoding="utf-8")
    print(table)
    return 0 if all(math.isfinite(r["ratio"]) for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
