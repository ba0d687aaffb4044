"""``python -m lycobench world pretrain``: VAE, then UNet + text encoder, saved as a diffusers folder.

Deterministic given the seed, the step counts and the thread count (float reductions depend on threads).
Step counts, not wall time, define the run: ``--minutes`` scales the shipped model's step counts (about
106 minutes on 2 free cores) to fit its budget, so the same ``--minutes`` always gives the same model.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ... import __version__
from ...sd_pipeline import assemble_pipeline
from ...state_io import StateFileError, load_state, save_state
from .. import vocab
from . import SHIPPED_RECIPE

SHIPPED = Path(__file__).resolve().parents[1] / "weights" / "base"
# The shipped model's step counts (world v2: then a decoder fine-tune with borders), and what a step of each
# stage costs on 2 free threads (docs/world-model.md): rendering the data, the concepts' round trip and the
# latents take FIXED_MINUTES at any budget; the training stages scale with their step counts.
DEFAULT_STEPS = {"vae": 800, "unet": 4500, "decoder": 400}
SECONDS_PER_STEP = {"vae": 0.6, "unet": 0.5, "decoder": 0.4}
FIXED_MINUTES = 4


def predicted_minutes(steps: dict[str, int]) -> float:
    """What ``steps`` cost on 2 free threads, from the stages' measured rates."""
    return FIXED_MINUTES + sum(SECONDS_PER_STEP[k] * steps[k] for k in DEFAULT_STEPS) / 60


SHIPPED_MINUTES = predicted_minutes(DEFAULT_STEPS)  # 52.2: --minutes 52.2 retrains the shipped model
DEFAULT_MINUTES = SHIPPED_MINUTES  # the command's default budget: the shipped recipe, under an hour

WORK = Path(tempfile.gettempdir()) / "lycobench-world-pretrain"
N_IMAGES = 30_000
N_HOLDOUT = 512  # VAE check images: another seed stream
FIGURE_SEED = 7_000_001  # the random VAE figures' own seed stream (figures.py)


def code_version(files: tuple[str, ...] = ()) -> str:
    """lycobench version + a hash of this subpackage's source, or of ``files`` in it (what produced the
    weights)."""
    h = hashlib.sha256()
    here = Path(__file__).parent
    for p in [here / f for f in files] or sorted(here.glob("*.py")):
        h.update(p.read_bytes())
    return f"{__version__}+{h.hexdigest()[:12]}"


def steps_for(minutes: float) -> dict[str, int]:
    """Step counts whose predicted cost on 2 free threads is ``minutes`` (every stage scaled alike)."""
    scale = (minutes - FIXED_MINUTES) / (SHIPPED_MINUTES - FIXED_MINUTES)
    return {k: max(20, int(round(v * scale))) if v else 0 for k, v in DEFAULT_STEPS.items()}


def save_folder(pipe, folder: Path, manifest: dict) -> Path:
    """Write the pipeline in fp16 safetensors (diffusers layout) + manifest.json, atomically."""
    from ...tokenizer import save_tokenizer

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    pipe.to(torch.float16).save_pretrained(tmp, safe_serialization=True)
    pipe.to(torch.float32)
    save_tokenizer(pipe.tokenizer, tmp / "tokenizer")
    for config in tmp.glob("*/config.json"):  # a loaded model remembers its folder: no machine paths shipped
        entries = json.loads(config.read_text(encoding="utf-8"))
        if entries.pop("_name_or_path", None) is not None:
            config.write_text(json.dumps(entries, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    old = folder.with_name(f".{folder.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)
    return folder


def reproduce_command(
    steps: dict,
    seed: int,
    threads: int,
    channels: int,
    figures: float,
    offset: float,
    partial: float = 0.0,
    borders: float = 0.0,
) -> str:
    """The command that retrains these weights (step counts spelled out: they define the run)."""
    return (
        f"python -m lycobench world pretrain --vae-steps {steps['vae']} --unet-steps {steps['unet']} "
        f"--decoder-steps {steps['decoder']} --latent-channels {channels} --vae-figures {figures:g} "
        f"--noise-offset {offset:g} --partial-captions {partial:g} --decoder-borders {borders:g} "
        f"--seed {seed} --threads {threads}"
    )  # fmt: skip


def decoder_stage(vae, images, holdout, steps: int, seed: int, borders: float, manifest: dict, log):
    """The VAE decoder alone (encoder frozen: the UNet's latents do not change) on ``images`` with a
    ``borders`` share of bordered copies; its settings and hold-out PSNR go into ``manifest``."""
    from .vae import finetune_decoder, psnr, reconstruct, with_borders

    vae = finetune_decoder(vae, with_borders(images, borders, seed), steps, seed, log=log)
    manifest["steps"]["decoder"] = steps
    manifest["decoder"] = {"borders": borders, "images": len(images)}
    manifest["vae"]["holdout_psnr_db_after_decoder"] = round(psnr(reconstruct(vae, holdout), holdout), 2)
    return vae


def refine_decoder(
    folder: Path,
    steps: int,
    borders: float = SHIPPED_RECIPE["decoder_borders"],
    threads: int = 1,
    log=print,
) -> Path:
    """``world pretrain --what decoder``: the decoder stage alone on an existing model folder (its UNet and
    text encoder untouched), with the base scenes and seed its manifest records; rewrites the folder."""
    from ...sd_pipeline import load_pipeline
    from .data import WorldData

    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    folder = Path(folder)
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    seed, n = manifest["seed"], manifest["data"]["images"]
    pipe = load_pipeline(folder)
    t0 = time.time()
    vae = decoder_stage(
        pipe.vae, WorldData(n, seed).images, WorldData(N_HOLDOUT, seed + 1_000_003).images, steps, seed,
        borders, manifest, lambda row: log(json.dumps(row)),
    )  # fmt: skip
    manifest["decoder"] |= {
        "threads": threads,
        "wall_s": round(time.time() - t0),
        "applied_to": "fp16 weights",
    }
    manifest["threads"]["decoder"] = threads
    command = re.sub(r" --decoder-borders \S+", "", manifest["reproduce"])
    command = re.sub(r"--decoder-steps \d+", f"--decoder-steps {steps}", command)
    manifest["reproduce"] = command.replace(" --seed", f" --decoder-borders {borders:g} --seed")
    manifest["code_version"] = code_version()
    return save_folder(assemble_pipeline(vae, pipe.text_encoder, pipe.unet), folder, manifest)


class VaeBelowGate(RuntimeError):
    """The VAE cannot reproduce the concepts well enough for the run to be worth finishing."""


def concept_roundtrip(vae) -> dict[str, float]:
    """Oracle detection of each studied concept on its training images after a round trip through the VAE
    (empty when the shipped oracle was trained on other concepts)."""
    from ..concepts import load_concepts, studied_concepts
    from ..oracle import Oracle, vae_roundtrip

    oracle, concepts = Oracle.load(), load_concepts()
    try:
        oracle.check_leaves(concepts)
    except ValueError:  # an oracle of other concepts cannot judge these (retrain it, then `world check`)
        return {}
    return {n: vae_roundtrip(vae, concepts[n], oracle)["vae_roundtrip"] for n in studied_concepts(concepts)}


def resumed_vae(path: Path, settings: dict):
    """(VAE, threads it trained with) from ``path`` when it was trained with ``settings``, else None."""
    from .vae import build_vae

    if not path.is_file():
        return None
    try:
        saved = load_state(path)
    except StateFileError:  # not a state this code wrote (or damaged): train the VAE again
        return None
    if saved.get("settings") != settings:
        return None
    vae = build_vae(settings["seed"], settings["latent_channels"])
    vae.load_state_dict(saved["vae"])
    return vae.eval(), saved["threads"]


def pretrain(
    out: Path,
    work: Path | None = None,
    minutes: float = DEFAULT_MINUTES,
    seed: int = 0,
    threads: int = 2,
    vae_steps: int | None = None,
    unet_steps: int | None = None,
    decoder_steps: int | None = None,
    snapshot_every: int = 500,
    batch: int = 32,
    images: int | None = None,
    vae_figures: float = SHIPPED_RECIPE["vae_figures"],
    latent_channels: int = SHIPPED_RECIPE["latent_channels"],
    vae_gate: float | None = None,
    noise_offset: float = SHIPPED_RECIPE["noise_offset"],
    partial_captions: float = SHIPPED_RECIPE["partial_captions"],
    decoder_borders: float = SHIPPED_RECIPE["decoder_borders"],
) -> Path:
    """Train everything from scratch and write the diffusers folder ``out``.

    Stages: VAE; UNet + text encoder on the VAE's latents; then the VAE decoder alone (encoder frozen, so
    the latent space the UNet learned is unchanged). The log (``pretrain-log.jsonl``), the VAE and snapshots
    of the EMA pipeline every ``snapshot_every`` steps go to ``work`` (default: a folder in the temp dir).
    A run restarted with the same settings and ``work`` resumes: the VAE from ``vae.safetensors``, the UNet stage
    from ``unet-state.safetensors`` (its last snapshot), with the result of an unbroken run.
    ``vae_figures``: the share of random multi-part figures among the VAE's images (0 = base scenes only;
    see figures.py). ``latent_channels``: the VAE's (the UNet's input and output follow).
    After the VAE stage the oracle's detection of each category's first concept is measured on its training
    images after a round trip through the VAE (the ceiling of any fine-tune); ``vae_gate``: stop there,
    before the hour of UNet, with :class:`VaeBelowGate` when any concept's round trip is below this rate.
    ``noise_offset``: the UNet's training noise gets a random per-channel shift of this scale (see
    ``generator.training_noise``; 0 = plain noise). ``partial_captions``: the share of the UNet's training
    captions that leave some of the scene's tags out (``data.partial_caption``). ``decoder_borders``: the
    share of the decoder fine-tune's images framed by a random border (``vae.with_borders``). The defaults are the shipped model's recipe at the
    budget of ``minutes`` (``SHIPPED_MINUTES`` gives the shipped model's step counts).
    """
    from ...tokenizer import clip_tokenizer
    from .data import WorldData, render_32
    from .figures import random_figure_scenes
    from .generator import MIN_SNR, TEXT_CONFIG, UNET_CONFIG, Trainer
    from .vae import KL_WEIGHT, VAE_CONFIG, encode, psnr, reconstruct, train_vae

    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)  # denormal floats made one CPU run crawl (see the notes)
    steps = steps_for(minutes)
    steps["vae"] = vae_steps or steps["vae"]
    steps["unet"] = unet_steps or steps["unet"]
    steps["decoder"] = steps["decoder"] if decoder_steps is None else decoder_steps
    out, work = Path(out), Path(work or WORK)
    work.mkdir(parents=True, exist_ok=True)
    log_file = (work / "pretrain-log.jsonl").open("a", encoding="utf-8")
    t_start = time.time()

    def log(row: dict) -> None:
        row = {**row, "elapsed_s": round(time.time() - t_start, 1)}
        log_file.write(json.dumps(row) + "\n")
        log_file.flush()
        print(
            " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()),
            flush=True,
        )

    n_images = images or N_IMAGES
    log({"stage": "data", "images": n_images, "seed": seed, "steps": json.dumps(steps)})
    data = WorldData(n_images, seed, partial=partial_captions)
    holdout = WorldData(N_HOLDOUT, seed + 1_000_003).images
    n_figures = round(n_images * vae_figures / (1 - vae_figures))
    vae_settings = {
        "seed": seed,
        "steps": steps["vae"],
        "images": n_images,
        "latent_channels": latent_channels,
    }
    if n_figures:
        vae_settings |= {"figures": n_figures, "code": code_version(("vae.py", "data.py", "figures.py"))}
    else:
        vae_settings["code"] = code_version(("vae.py", "data.py"))
    vae_images = None if n_figures else data.images

    def codec_images():  # what the VAE and the decoder learn from: base scenes (and random figures)
        nonlocal vae_images
        if vae_images is None:
            figures = render_32(random_figure_scenes(n_figures, seed + FIGURE_SEED))
            vae_images = np.concatenate([data.images, figures])
        return vae_images

    vae, vae_threads = resumed_vae(work / "vae.safetensors", vae_settings), threads
    if vae is None:
        vae = train_vae(codec_images(), steps["vae"], seed, log=log, latent_channels=latent_channels)
        save_state(
            work / "vae.safetensors", {"vae": vae.state_dict(), "settings": vae_settings, "threads": threads}
        )
    else:  # the VAE stage of an earlier run with the same settings (a restarted run resumes here)
        vae, vae_threads = vae
        log({"stage": "vae-resumed", "file": str(work / "vae.safetensors"), "threads": vae_threads})
    vae_psnr = psnr(reconstruct(vae, holdout), holdout)
    roundtrip = concept_roundtrip(vae)
    latents = encode(vae, data.images)
    latent_std = float(latents.std())
    vae.register_to_config(scaling_factor=1.0 / latent_std)
    latents = latents / latent_std
    log(
        {
            "stage": "vae-done",
            "psnr_db": vae_psnr,
            "latent_std": latent_std,
            "roundtrip": json.dumps(roundtrip),
        }
    )
    below = {k: v for k, v in roundtrip.items() if vae_gate is not None and v < vae_gate}
    if below:
        raise VaeBelowGate(
            f"the VAE in {work / 'vae.safetensors'} reproduces {below} of the concepts' training images (oracle "
            f"detection after a round trip), below --vae-gate {vae_gate}: no fine-tune on this VAE could "
            "reach it, so the UNet stage was not started. Train a better VAE (more --vae-steps, "
            "--vae-figures, --latent-channels) in another --work folder."
        )

    trainer = Trainer(data, latents, clip_tokenizer(), seed, batch=batch, noise_offset=noise_offset)
    manifest = {
        "model": "lycobench world base (tiny Stable Diffusion)",
        "code_version": code_version(),
        "seed": seed,
        "data": {
            "images": n_images,
            "data_seed": seed,
            "resolution": 32,
            "heldout_pairs": vocab.HELDOUT_PAIRS,
            "concepts": "none (base scenes only)",
            "vae_figures": {"images": n_figures, "seed": seed + FIGURE_SEED} if n_figures else None,
        },
        "steps": steps,
        "threads": {"vae": vae_threads, "unet": threads},
        "batch": batch,
        "vae": {
            "config": {k: list(v) if isinstance(v, tuple) else v for k, v in VAE_CONFIG.items()}
            | {"latent_channels": latent_channels},
            "kl_weight": KL_WEIGHT,
            "holdout_psnr_db": round(vae_psnr, 2),
            "concept_roundtrip": roundtrip,
            "latent_std": latent_std,
        },
        "unet": {k: list(v) if isinstance(v, tuple) else v for k, v in UNET_CONFIG.items()}
        | {"in_channels": latent_channels, "out_channels": latent_channels},
        "text_encoder": TEXT_CONFIG | {"token_embedding": "frozen at seeded init", "trained": "jointly"},
        "training": {
            "lr": 1e-3,
            "schedule": "warmup 200, cosine to 10%",
            "prediction": "epsilon",
            "min_snr": MIN_SNR,
            "caption_dropout": 0.1,
            "ema": 0.998,
            "noise_offset": noise_offset,
            "partial_captions": partial_captions,
        },
        "quality": None,
        "reproduce": reproduce_command(
            steps,
            seed,
            threads,
            latent_channels,
            vae_figures,
            noise_offset,
            partial_captions,
            decoder_borders,
        ),
    }

    def snapshot(step: int) -> None:
        pipe = assemble_pipeline(vae, trainer.te_ema, trainer.unet_ema)
        folder = save_folder(
            pipe,
            work / "snapshots" / f"step-{step:05d}",
            manifest | {"snapshot_step": step, "wall_s": round(time.time() - t_start)},
        )
        log({"stage": "snapshot", "step": step, "folder": str(folder)})

    unet_settings = {  # a state saved under other settings is never resumed
        "vae": vae_settings,
        "steps": steps["unet"],
        "batch": batch,
        "code": code_version(("generator.py", "data.py")),
    }
    if noise_offset:  # absent at 0, so states saved before the option existed still resume
        unet_settings["noise_offset"] = noise_offset
    if partial_captions:
        unet_settings["partial_captions"] = partial_captions
    trainer.train(
        steps["unet"], log=log, snapshot=snapshot, snapshot_every=snapshot_every,
        state_path=work / "unet-state.safetensors", settings=unet_settings,
    )  # fmt: skip
    if steps["decoder"]:
        vae = decoder_stage(
            vae, codec_images(), holdout, steps["decoder"], seed, decoder_borders, manifest, log
        )
    manifest["wall_s"] = round(time.time() - t_start)
    save_folder(assemble_pipeline(vae, trainer.te_ema, trainer.unet_ema), out, manifest)
    log({"stage": "done", "folder": str(out), "minutes": (time.time() - t_start) / 60})
    return out
