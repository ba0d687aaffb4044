"""The ``world pretrain`` subcommand (registered by ``lycobench/world/cli.py``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _pretrain(args: argparse.Namespace) -> int:
    import sys

    from .run import SHIPPED, VaeBelowGate, pretrain

    if args.what == "decoder":
        from .run import DEFAULT_STEPS, refine_decoder

        folder = refine_decoder(
            Path(args.out or SHIPPED), args.decoder_steps or DEFAULT_STEPS["decoder"], args.decoder_borders,
            threads=args.threads,
        )  # fmt: skip
        print(f"wrote {folder}; retrain the oracle on its VAE (`world oracle-train`), then `world check`")

    if args.what in ("all", "generator"):
        try:
            folder = pretrain(
                Path(args.out or SHIPPED), args.work, minutes=args.minutes, seed=args.seed,
                threads=args.threads, vae_steps=args.vae_steps, unet_steps=args.unet_steps,
                decoder_steps=args.decoder_steps, images=args.images, vae_figures=args.vae_figures,
                latent_channels=args.latent_channels, vae_gate=args.vae_gate, noise_offset=args.noise_offset,
                partial_captions=args.partial_captions, decoder_borders=args.decoder_borders,
            )  # fmt: skip
        except VaeBelowGate as e:
            print(f"lycobench: world pretrain: {e}", file=sys.stderr)
            return 1
        print(f"wrote {folder}; measure it with `python -m lycobench world check --out FILE`")
    if args.what in ("all", "encoders", "dino"):
        from ..clip_dino import CLIP_DIR, DINO_DIR
        from .encoders_run import train_encoders

        out = Path(args.encoders_out) if args.encoders_out else None
        quality = train_encoders(
            out / "clip" if out else CLIP_DIR, out / "dino" if out else DINO_DIR, seed=args.seed,
            threads=args.threads, train_clip_too=args.what != "dino",
        )  # fmt: skip
        print(json.dumps(quality))
    return 0


def add_commands(sub) -> None:
    """Add ``pretrain`` (and ``check``'s help line) to the ``world`` subparsers."""
    from . import SHIPPED_RECIPE
    from .run import DEFAULT_MINUTES, SHIPPED_MINUTES

    p = sub.add_parser("pretrain", help="train the world's tiny Stable Diffusion and/or its metric encoders")
    p.add_argument(
        "--minutes",
        type=float,
        default=DEFAULT_MINUTES,
        help=f"the generator's budget on 2 free cores: scales the shipped recipe's step counts to fit it "
        f"(default {DEFAULT_MINUTES:g}; {SHIPPED_MINUTES:g} retrains the shipped model)",
    )
    p.add_argument(
        "--out",
        help="diffusers folder to write (default: the shipped lycobench/world/weights/base, replacing the "
        "shipped model; use model.path=<folder> to run studies on another folder)",
    )
    p.add_argument(
        "--work", help="log, VAE and snapshots (default: lycobench-world-pretrain in the temp dir)"
    )
    p.add_argument(
        "--what", choices=["all", "generator", "decoder", "encoders", "dino"], default="generator",
        help="generator (default): the tiny Stable Diffusion within --minutes; encoders: the world CLIP and "
        "DINO at their shipped step counts (about 33 minutes on one thread); dino: the DINO-style encoder "
        "alone (about 12 minutes on one thread); decoder: the VAE-decoder fine-tune alone, on the model in "
        "--out (UNet, text encoder and latents unchanged; about 4 minutes); all: generator and encoders",
    )  # fmt: skip
    p.add_argument("--encoders-out", help="folder for clip/ and dino/ (default: lycobench/world/weights/)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch threads (1 is faster on a crowded machine)")
    p.add_argument("--vae-steps", type=int, help="override the VAE step count")
    p.add_argument("--unet-steps", type=int, help="override the UNet step count")
    p.add_argument(
        "--decoder-steps", type=int, help="override the VAE-decoder fine-tune step count (0: none)"
    )
    p.add_argument("--images", type=int, default=30_000, help="training renders (default 30000)")
    p.add_argument(
        "--vae-figures", type=float, default=SHIPPED_RECIPE["vae_figures"],
        help=f"share of random multi-part figures among the VAE's images (default {SHIPPED_RECIPE['vae_figures']}; "
        "0: base scenes only)",
    )  # fmt: skip
    p.add_argument(
        "--latent-channels", type=int, default=SHIPPED_RECIPE["latent_channels"],
        help=f"the VAE's latent channels (default {SHIPPED_RECIPE['latent_channels']})",
    )  # fmt: skip
    p.add_argument(
        "--vae-gate", type=float,
        help="stop after the VAE stage when a concept's VAE round trip (oracle detection) is below this",
    )  # fmt: skip
    p.add_argument(
        "--noise-offset", type=float, default=SHIPPED_RECIPE["noise_offset"],
        help="scale of a random per-channel shift added to the UNet's training noise "
        f"(default {SHIPPED_RECIPE['noise_offset']}; 0: none)",
    )  # fmt: skip
    p.add_argument(
        "--partial-captions", type=float, default=SHIPPED_RECIPE["partial_captions"],
        help="share of the UNet's training captions that leave some of the scene's tags out, so that a "
        f"prompt naming part of a scene draws the rest freely (default {SHIPPED_RECIPE['partial_captions']})",
    )  # fmt: skip
    p.add_argument(
        "--decoder-borders", type=float, default=SHIPPED_RECIPE["decoder_borders"],
        help="share of the decoder fine-tune's images framed by a random 2-5 px border in a world colour "
        f"(default {SHIPPED_RECIPE['decoder_borders']})",
    )  # fmt: skip
    p.set_defaults(func=_pretrain)

    # `world check` runs fine-tunes and sampling: it lives above the stages (lycobench/calibrate/) and
    # `python -m lycobench world check` goes there directly; listed here for `world --help`
    sub.add_parser(
        "check", help="measure the base model, concept fine-tunes and the world encoders", add_help=False
    )
