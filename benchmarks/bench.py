"""lycobench benchmarks, each compared with a plain loop that does the same work the usual way.

    python benchmarks/bench.py --out results/bench.json                 # every case; JSON + Markdown beside it
    python benchmarks/bench.py --case sweep --case rerun --sweep smoke --out /tmp/bench.json
    python benchmarks/bench.py --out results/bench.json --keep results  # keep the sweeps' result folders

Cases: train (steps/s), generate (images/s), metrics (evaluation images/s), sweep (a study end to end
through the CLI: wall time, peak memory) and rerun (the same command on the finished results dir); the sweep
and rerun cases run once per ``--sweep`` (default: quick and paper, the two studies with targets) and are
named ``sweep-<name>`` and ``rerun-<name>``. Each case is a function in CASES returning ``{"lycobench": x,
"baseline": y, "ratio": x / y, "unit": ...}`` (plus details; ``baseline`` and ``ratio`` null when there is
none, a ``targets`` dict for the issue's targets); both numbers of a case come from one process, one machine
and one model, so they are comparable. Add a case by adding a function to CASES; it takes the options it
needs (``repeats``, ``sweep``) as keyword arguments.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
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
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from lycobench.models import CLIP_TEXT_IDS, assemble_pipeline
    from lycobench.tokenizer import save_tokenizer

    if (folder / "model_index.json").is_file():
        return folder
    torch.manual_seed(0)
    c, res = SD15_QUARTER, SD15_QUARTER["resolution"]
    te = CLIPTextModel(CLIPTextConfig(**CLIP_TEXT_IDS, **c["text_encoder"]))  # first: the seeded init order
    pipe = assemble_pipeline(
        AutoencoderKL(sample_size=res, **c["vae"]),
        te,
        UNet2DConditionModel(sample_size=res // 8, **c["unet"]),
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


@contextlib.contextmanager
def _torch_threads(n: int):
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


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
    gen = torch.Generator().manual_seed(int(cfg.seed))
    res = int(cfg.model.resolution)
    s, bs = pipe.scheduler, int(tcfg.batch_size)
    # the thread count of lycobench's loop (train.cpu_threads): CPU-seconds of two threads do not compare
    # with one's (a baseline left on 2 threads gave half as many steps per CPU-second: 0.65 vs 1.23)
    with _torch_threads(int(tcfg.get("cpu_threads", 1))):
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
        **_ratio(x, y, "steps/s (steps per CPU-second, 1 torch thread)"),
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
    latents and text embeddings and uses LoRA's bypass forward, the baseline runs the VAE and the text
    encoder every step with LyCORIS's default forward (what kohya-style loops do). Variants: caching alone
    (lycobench with the default forward too), the paper's recipe (text encoder trained too: only the
    latents are cached) and the tiny test model."""
    frozen, trained = ["train.train_text_encoder=false"], []
    with tempfile.TemporaryDirectory(prefix="lycobench-bench-") as tmp:
        tmp = Path(tmp)
        out = _compare("sd15-proportions", frozen, repeats, tmp)
        out["variants"] = {
            "sd15-proportions, caching alone (no bypass forward)": _compare(
                "sd15-proportions", [*frozen, "train.bypass_forward=false"], repeats, tmp
            ),
            "sd15-proportions, text encoder trained": _compare("sd15-proportions", trained, repeats, tmp),
            "tiny, text encoder frozen": _compare("tiny", frozen, repeats, tmp),
            "tiny, text encoder trained": _compare("tiny", trained, repeats, tmp),
        }
    out["setting"] = (
        "LoRA dim 8 on attn-mlp, the example concept, SD 1.5 proportions, text encoder frozen; lycobench's "
        "loop with its defaults (cached latents and embeddings, bypass forward) against the usual loop"
    )
    out["targets"] = {"training vs baseline": _target(out["ratio"], 1.5, "x", at_least=True)}
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
    """One checkpoint's images of the default study, drawn by lycobench (batches of CPU_BATCH across prompts and
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
    out = _ratio(x, y, "images/s")
    return {
        **out,
        "targets": {"generation vs baseline": _target(out["ratio"], 2, "x", at_least=True)},
        "images": len(plan),
        "pipeline_calls": calls,
        "max_pixel_difference": diff,  # uint8 levels between the two loops' images (float rounding only)
        "repeats": repeats,
        "runs": {k: [round(v, 3) for v in r] for k, r in runs.items()},
        "setting": f"{cfg.model.name} model, {settings['steps']} DDIM steps, CFG {settings['guidance_scale']}, "
        f"{cfg.model.resolution}px, generate=tiny plan ({', '.join(cfg.generate.prompt_types)})",
        "variants": {"invariance_off": _ratio(z, y, "images/s")},
    }


# --- case: metrics ---------------------------------------------------------------------------------------

METRIC_CONCEPTS = ("bear", "hatch")  # world concepts: an object and a style, so every metric applies
METRIC_STEPS = (0, 40, 80)  # the base model and two checkpoints


def _metrics_setup(tmp: Path, encoders: str):
    """A sweep folder of world renders laid out as one run's images.parquet: the default study's prompt plan
    (generate=tiny) for two world concepts, at the base model (base-world scenes) and at two checkpoints (the
    concept drawn; agnostic prompts restyled), rendered at the world model's resolution."""
    from dataclasses import replace

    import numpy as np
    import pandas as pd
    from PIL import Image

    from lycobench.config import compose
    from lycobench.data import all_leaves, load_concepts
    from lycobench.generate import _row
    from lycobench.prompts import plan_for
    from lycobench.world import export, render_batch, sample_scenes
    from lycobench.world.concepts import concept_scene
    from lycobench.world.concepts import load_concepts as world_concepts

    cfg = compose(["model=world", "generate=tiny", f"encoders={encoders}", "evaluate=default"])
    res = int(cfg.model.resolution)
    leaves = all_leaves(load_concepts([str(p) for p in export(tmp / "concepts", list(METRIC_CONCEPTS), res)]))
    plan, wc, rng = plan_for(cfg.generate, leaves), world_concepts(), np.random.default_rng(0)
    base = sample_scenes(len(plan), 1)
    rows = []
    for step in METRIC_STEPS:
        for it, b in zip(plan, base):
            if step == 0:
                scene = b
            elif it.prompt_type == "agnostic":
                scene = replace(b, style="outline")
            else:
                scene = concept_scene(wc[it.leaf], None, rng)
            path = tmp / f"runs/x/images/step-{step}/{it.leaf}/{it.prompt_type}/{it.prompt_id}-{it.index}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(render_batch([scene], res)[0]).save(path)
            rows.append(_row(step, it, path, tmp))
    return cfg, pd.DataFrame(rows), leaves


def _per_metric_inputs():
    """evaluate.Inputs as a plain loop has them: nothing kept from one metric to the next and no feature
    cache; each metric call encodes the rows it reads (its image set, plus the base images it pairs them
    with), its reference images and its texts again."""
    import numpy as np
    from PIL import Image

    from lycobench.evaluate import Inputs

    class PerMetric(Inputs):
        scope = np.zeros(0, dtype=int)

        def start(self, spec, idx) -> None:
            self._feats.clear()
            self._refs.clear()
            for k in ("pred", *(k for k in self._memo if k.startswith("texts:"))):
                self._memo.pop(k, None)
            rows = list(idx)
            if spec.metric.inputs == "pairs":
                pairs = self.base_pairs()
                rows += [pairs[i] for i in idx if i in pairs]
            self.scope = np.unique(np.asarray(rows, dtype=int))

        def _encode(self, role: str, paths) -> np.ndarray:
            ims = []
            for p in paths:
                with Image.open(p) as im:
                    ims.append(im.convert("RGB"))
            return self.encoders[role].encode_images(ims)

        def _scoped(self, rows: np.ndarray) -> np.ndarray:
            full = np.zeros((len(self.images), rows.shape[1]), np.float32)
            full[self.scope] = rows
            return full

        def features(self, role: str) -> np.ndarray:
            if role not in self._feats:
                paths = [self.sweep_dir / self.images["path"][i] for i in self.scope]
                self._feats[role] = self._scoped(self._encode(role, paths))
            return self._feats[role]

        def predictions(self) -> dict[int, dict]:
            if "pred" not in self._memo:
                decoded = self.encoders["oracle"].decode(self.features("oracle")[self.scope])
                self._memo["pred"] = dict(zip(self.scope.tolist(), decoded))
            return self._memo["pred"]

        def refs(self, role: str, leaf: str) -> np.ndarray:
            if (role, leaf) not in self._refs:
                self._refs[role, leaf] = self._encode(role, [it.image for it in self.leaves[leaf].items])
            return self._refs[role, leaf]

        def texts(self, role: str) -> np.ndarray:
            from lycobench.prompts import text_for_clip

            key = f"texts:{role}"
            if key not in self._memo:
                im = self.images
                texts = [text_for_clip(im["prompt"][i], self.leaves[im["leaf"][i]]) for i in self.scope]
                self._memo[key] = self._scoped(np.asarray(self.encoders[role].encode_texts(texts)))
            return self._memo[key]

    return PerMetric


def _evaluate_rate(cfg, images, leaves, root: Path, per_metric: bool) -> tuple[float, list[dict]]:
    """images/s of lycobench.evaluate.evaluate on the whole frame (encoders loaded in the timing); with
    ``per_metric`` the same loop and metric code, but Inputs swapped for the plain loop's."""
    from unittest import mock

    from lycobench import evaluate as ev

    real = ev.compute

    def compute(spec, x, idx, step, leaf):
        x.start(spec, idx)
        return real(spec, x, idx, step, leaf)

    with contextlib.ExitStack() as stack:
        if per_metric:
            stack.enter_context(mock.patch.object(ev, "Inputs", _per_metric_inputs()))
            stack.enter_context(mock.patch.object(ev, "compute", compute))
        t0 = time.perf_counter()
        rows = ev.evaluate(cfg, images, leaves, root)
        return len(images) / (time.perf_counter() - t0), rows


def _max_difference(a: list[dict], b: list[dict]) -> float:
    key = lambda r: (r["step"], r["leaf"], r["prompt_type"], r["metric"], r["level"])  # noqa: E731
    va, vb = {key(r): r["value"] for r in a}, {key(r): r["value"] for r in b}
    if set(va) != set(vb):
        return math.inf
    return max(abs(va[k] - vb[k]) for k in va)


def _metric_encoders() -> str:
    """encoders=world when its shipped weights are all there, else the random-init tiny set."""
    from lycobench.config import compose
    from lycobench.evaluate import preflight

    try:
        preflight(compose(["encoders=world", "evaluate=default"]))
        return "world"
    except FileNotFoundError:
        return "tiny"


def case_metrics(repeats: int = 3, encoders: str | None = None) -> dict:
    """Every metric of evaluate=default on one run's images (world renders, 3 steps), by lycobench (each
    encoder runs once per image, through the feature cache, which starts empty) and by a plain loop that
    encodes, for every metric and image set, the images that metric reads. Variant cache_warm: lycobench
    again with the cache filled (a re-evaluation)."""
    import shutil

    with tempfile.TemporaryDirectory(prefix="lycobench-bench-") as tmp:
        root = Path(tmp)
        encoders = encoders or _metric_encoders()
        cfg, images, leaves = _metrics_setup(root, encoders)
        _evaluate_rate(cfg, images, leaves, root, False)  # warm-up: first calls pay one-off costs
        runs = {"lycobench": [], "baseline": [], "cache_warm": []}
        diff = 0.0
        for _ in range(repeats):
            shutil.rmtree(root / "cache", ignore_errors=True)
            rate, ours = _evaluate_rate(cfg, images, leaves, root, False)
            runs["lycobench"].append(rate)
            runs["cache_warm"].append(_evaluate_rate(cfg, images, leaves, root, False)[0])
            rate, theirs = _evaluate_rate(cfg, images, leaves, root, True)
            runs["baseline"].append(rate)
            diff = max(diff, _max_difference(ours, theirs))
    x, y, z = (statistics.median(runs[k]) for k in ("lycobench", "baseline", "cache_warm"))
    return {
        **_ratio(x, y, "images/s"),
        "images": len(images),
        "metric_rows": len(ours),
        "max_value_difference": diff,  # between the two loops' metric values (float rounding only)
        "repeats": repeats,
        "runs": {k: [round(v, 3) for v in r] for k, r in runs.items()},
        "setting": f"evaluate=default ({len(cfg.evaluate.metrics)} metrics), encoders={encoders}, "
        f"{len(images)} world renders at {cfg.model.resolution}px: concepts {', '.join(METRIC_CONCEPTS)}, "
        f"steps {list(METRIC_STEPS)}, generate=tiny plan",
        "variants": {"cache_warm": _ratio(z, y, "images/s")},
    }


# --- cases: sweep and rerun -------------------------------------------------------------------------------

# end to end on a 2-core machine: 15 minutes and 3 hours since world v2 (its studies train 2,000 exposures per
# concept; they were 5 minutes and 1 hour at 200)
SWEEP_TARGET_S = {"quick": 900, "paper": 10800}
RERUN_TARGET_S = 10
MEMORY_TARGET_GB = 4
_FIRST_RUNS: dict[str, dict] = {}  # sweep name -> the first run's measurement and results dir
KEEP: list[Path] = []  # --keep: the results dir whose sweep folders are kept (default: temporary ones)


def _tree(root: int) -> list[int]:
    """``root`` and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(") ", 1)[1].split()[1])  # after "pid (comm) state"
        except (OSError, IndexError, ValueError):
            continue  # the process ended meanwhile
        children.setdefault(ppid, []).append(int(stat.parent.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def _rss_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):  # the process ended meanwhile
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return total


def _timed_sweep(name: str, results_dir: Path) -> dict:
    """``python -m lycobench sweep`` as a subprocess: wall time, the summed RSS of its process tree sampled
    every 0.5 s (peak), and the kernel's max RSS of its largest single process (wait4)."""
    import subprocess

    cmd = [sys.executable, "-m", "lycobench", "sweep", f"sweep={name}", f"results_dir={results_dir}"]
    log = results_dir / f"bench-{name}-{len(list(results_dir.glob('bench-*.log')))}.log"
    results_dir.mkdir(parents=True, exist_ok=True)
    peak = 0
    with log.open("w") as fh:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=Path(__file__).resolve().parent.parent, stdout=fh, stderr=fh)
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)  # wait4 keeps this child's own rusage
            if pid:
                break
            peak = max(peak, _rss_bytes(_tree(proc.pid)))
            time.sleep(0.5)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        tail = log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}; log {log}:\n{tail}")
    return {
        "wall_s": round(wall, 2),
        "peak_tree_rss_gb": round(peak / 2**30, 3),
        "max_process_rss_gb": round(usage.ru_maxrss / 2**20, 3),  # ru_maxrss is in KiB on Linux
    }


def _first_run(name: str) -> dict:
    """The sweep from scratch into a fresh results dir (removed at exit unless --keep); measured once per
    invocation."""
    import atexit
    import shutil

    if name not in _FIRST_RUNS:
        if KEEP:
            results_dir = KEEP[0]
        else:
            results_dir = Path(tempfile.mkdtemp(prefix=f"lycobench-bench-{name}-"))
            atexit.register(shutil.rmtree, results_dir, ignore_errors=True)
        _FIRST_RUNS[name] = {**_timed_sweep(name, results_dir), "results_dir": results_dir}
    return _FIRST_RUNS[name]


def _target(measured: float, limit: float, unit: str, at_least: bool = False) -> dict:
    met = measured >= limit if at_least else measured <= limit
    return {"target": f"{'>=' if at_least else '<='} {limit} {unit}", "measured": measured, "met": bool(met)}


def _ratio(x: float, y: float | None, unit: str) -> dict:
    """The common shape of a case: ``baseline`` and ``ratio`` null when there is no baseline."""
    return {
        "lycobench": round(x, 3),
        "baseline": None if y is None else round(y, 3),
        "ratio": None if not y else round(x / y, 3),
        "unit": unit,
    }


def case_sweep(sweep: str = "quick") -> dict:
    """The sweep end to end through the real CLI (train, generate, evaluate, report), from an empty
    results dir; no baseline. Peak memory: the whole process tree's RSS (Hydra launcher workers included)."""
    first = _first_run(sweep)
    peak = max(first["peak_tree_rss_gb"], first["max_process_rss_gb"])
    targets = {f"{sweep} sweep, memory": _target(peak, MEMORY_TARGET_GB, "GB")}
    if sweep in SWEEP_TARGET_S:
        targets[f"{sweep} sweep, wall time"] = _target(first["wall_s"], SWEEP_TARGET_S[sweep], "s")
    return {
        **_ratio(first["wall_s"], None, "s"),
        "peak_memory_gb": peak,
        "peak_tree_rss_gb": first["peak_tree_rss_gb"],
        "max_process_rss_gb": first["max_process_rss_gb"],  # the largest single process (kernel's max RSS)
        "targets": targets,
        "setting": f"python -m lycobench sweep sweep={sweep} results_dir=<empty tmp>",
    }


def case_rerun(sweep: str = "quick", repeats: int = 3) -> dict:
    """The same command again on the finished results dir (every stage skipped from its markers, the
    report rebuilt); baseline: the first run's wall time, so ratio = first run / rerun."""
    first = _first_run(sweep)
    runs = [_timed_sweep(sweep, first["results_dir"]) for _ in range(repeats)]
    wall = statistics.median(r["wall_s"] for r in runs)
    out = _ratio(wall, first["wall_s"], "s")
    out["ratio"] = round(first["wall_s"] / wall, 3)  # how many times cheaper than the first run
    return {
        **out,
        "runs": [r["wall_s"] for r in runs],
        "peak_memory_gb": max(max(r["peak_tree_rss_gb"], r["max_process_rss_gb"]) for r in runs),
        "targets": {f"{sweep} sweep, rerun": _target(wall, RERUN_TARGET_S, "s")},
        "setting": f"python -m lycobench sweep sweep={sweep} on its finished results dir",
    }


CASES: dict[str, Callable[..., dict]] = {
    "train": case_train,
    "generate": case_generate,
    "metrics": case_metrics,
    "sweep": case_sweep,
    "rerun": case_rerun,
}


# --- output ----------------------------------------------------------------------------------------------


def _cell(value, suffix: str = "") -> str:
    return "—" if value is None else f"{value}{suffix}"


def markdown(results: dict) -> str:
    """The results table (a null baseline or ratio printed as "—"), the targets table and each case's
    setting and machine."""
    lines = ["| case | lycobench | baseline | ratio | unit |", "|---|---|---|---|---|"]
    for name, r in results.items():
        rows = [(name, r)] + [(f"{name} ({k})", v) for k, v in r.get("variants", {}).items()]
        for label, v in rows:
            cells = [label, _cell(v["lycobench"]), _cell(v["baseline"]), _cell(v["ratio"], "x"), v["unit"]]
            lines.append("| " + " | ".join(cells) + " |")
    targets = [(k, t) for r in results.values() for k, t in r.get("targets", {}).items()]
    if targets:
        lines += ["", "| target | measured | met |", "|---|---|---|"]
        lines += [
            f"| {k}: {t['target']} | {t['measured']} | {'yes' if t['met'] else 'no'} |" for k, t in targets
        ]
    lines.append("")
    for name, r in results.items():
        m = r["machine"]
        lines.append(
            f"{name}: {r.get('setting', '')}; {m.get('date', 'undated')}, {m['platform']}, {m['cpus']} CPUs, torch {m['torch']} with "
            f"{m['torch_threads']} threads, load average {m['load_average']} at the start."
        )
    return "\n".join(lines) + "\n"


def machine() -> dict:
    import torch

    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "load_average": [round(v, 2) for v in os.getloadavg()],
    }


def _options(case: Callable[..., dict], args: argparse.Namespace) -> dict:
    """The command-line options a case takes (``repeats``; ``sweep`` is set per sweep by main)."""
    return {
        k: getattr(args, k) for k in inspect.signature(case).parameters if k != "sweep" and hasattr(args, k)
    }


def _write(results: dict, out: Path) -> str:
    """The JSON and, beside it, the Markdown table; returns the table."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    table = markdown(results)
    out.with_suffix(".md").write_text(table, encoding="utf-8")
    return table


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
    parser.add_argument(
        "--sweep",
        action="append",
        help="a sweep of the sweep and rerun cases (conf/sweep/<name>.yaml; default: quick and paper)",
    )
    parser.add_argument(
        "--merge",
        action="store_true",
        help="add these cases to the results already in --out (same-named cases are replaced); every case "
        "keeps its own date and machine, and its baseline is always measured in its own run",
    )
    parser.add_argument(
        "--keep",
        type=Path,
        help="results dir for the sweeps' first runs, kept afterwards (its <sweep> folders must not exist)",
    )
    args = parser.parse_args(argv)
    sweeps = args.sweep or ["quick", "paper"]
    if args.keep:  # a first run into a finished folder would measure a rerun: refuse before any work
        taken = [args.keep / s for s in sweeps if (args.keep / s).exists()]
        if taken:
            parser.error(
                f"--keep {args.keep}: {', '.join(map(str, taken))} exists; remove it or keep elsewhere"
            )
        KEEP[:] = [args.keep]
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)  # on a shared machine, 1 avoids threads waiting on each other
    runs = []  # (result name, case, options)
    for case in args.case or list(CASES):
        options = _options(CASES[case], args)
        if "sweep" in inspect.signature(CASES[case]).parameters:
            runs += [(f"{case}-{s}", case, {**options, "sweep": s}) for s in sweeps]
        else:
            runs.append((case, case, options))
    results: dict = json.loads(args.out.read_text()) if args.merge and args.out.is_file() else {}
    for name, case, options in runs:
        t0 = time.perf_counter()
        at_start = machine()
        results[name] = {**CASES[case](**options), "machine": at_start}
        print(f"{name}: {json.dumps(results[name])} ({time.perf_counter() - t0:.0f}s)", file=sys.stderr)
        table = _write(results, args.out)  # after every case: a later failure keeps the finished ones
    print(table)
    return 0 if all(r["ratio"] is None or math.isfinite(r["ratio"]) for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
