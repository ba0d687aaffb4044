"""``python -m lycobench world ...``: export concepts, check or retrain the oracle, time the renderer."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

THRESHOLD = 0.98


def _export(args: argparse.Namespace) -> int:
    from .export import contact_sheet, export

    folders = export(args.dir, args.concepts, args.size)
    for f in folders:
        print(f"wrote {f}")
    if args.contact_sheet:
        print(f"wrote {contact_sheet(args.dir, args.contact_sheet)}")
    return 0


def _oracle_check(args: argparse.Namespace) -> int:
    import torch

    from .concepts import load_concepts
    from .degrade import DEGRADATIONS, degrade
    from .oracle import WEIGHTS, Oracle
    from .oracle_train import check_set, evaluate, near_miss_rejected

    torch.set_num_threads(args.threads)
    oracle = Oracle.load(args.weights or WEIGHTS)
    concepts = load_concepts()
    if not oracle.check_leaves(concepts):
        print("warning: concepts/world changed since the oracle was trained; consider `oracle-train`")
    scenes, images = check_set(args.n, concepts)
    clean = evaluate(oracle, scenes, images)
    # a figure's scattered parts are no concept (docs/world.md, "Near misses are no concept")
    acc = clean | {"near_miss_rejected": near_miss_rejected(oracle, max(1, args.n // 5), concepts)["clean"]}
    _write_json(Path(args.out), {k: round(v, 4) for k, v in acc.items()})
    for k, v in acc.items():
        print(f"{k:>10}  {v:.4f}{'' if v >= THRESHOLD else '  < ' + str(THRESHOLD)}")
    if args.degraded_out:
        table = {"clean": clean} | {
            kind: evaluate(oracle, scenes, degrade(images, kind)) for kind in DEGRADATIONS
        }
        _write_json(
            Path(args.degraded_out), {k: {a: round(v, 4) for a, v in t.items()} for k, t in table.items()}
        )
        print(f"wrote {args.degraded_out}")
    print(f"wrote {args.out} ({args.n} held-out scenes)")
    return 0 if all(v >= THRESHOLD for v in acc.values()) else 1


def _oracle_train(args: argparse.Namespace) -> int:
    import torch

    from .oracle import WEIGHTS
    from .oracle_train import train

    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    t0 = time.time()
    manifest = train(
        args.out or WEIGHTS, seed=args.seed, n_images=args.images, steps=args.steps, n_check=args.n_check,
        vae_folder=args.vae,
    )  # fmt: skip
    clean = manifest["accuracy"]["clean"]
    print(json.dumps(clean, indent=1))
    print(f"done in {time.time() - t0:.0f} s; wrote {args.out or WEIGHTS} and its .json manifest")
    return 0 if all(v >= THRESHOLD for v in clean.values()) else 1


def _bench(args: argparse.Namespace) -> int:
    from .scenes import render_batch, sample_scenes

    scenes = sample_scenes(args.n, 0)
    render_batch(scenes[:64], args.size)  # warm the texture cache
    t0, c0 = time.time(), time.process_time()
    render_batch(scenes, args.size)
    wall, cpu = time.time() - t0, time.process_time() - c0
    print(
        f"{args.n} scenes at {args.size}x{args.size}: {args.n / wall:.0f} images/s wall, "
        f"{args.n / cpu:.0f} images per CPU-second (one process; wall is lower when other jobs share the cores)"
    )
    return 0


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lycobench world", description="The embedded world: concepts and oracle."
    )
    sub = p.add_subparsers(dest="command", required=True)

    e = sub.add_parser("export", help="write world concepts as concept folders (images + .txt captions)")
    e.add_argument("dir", help="output folder; one sub-folder per concept")
    e.add_argument("--concepts", nargs="+", metavar="NAME", help="concept names (default: all)")
    e.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    e.add_argument("--contact-sheet", metavar="PNG", help="also write a contact sheet of the exported images")
    e.set_defaults(func=_export)

    c = sub.add_parser("oracle-check", help="measure the shipped oracle on held-out renders")
    c.add_argument(
        "--out", required=True, help="JSON file for {attribute: accuracy, near_miss_rejected: share}"
    )
    c.add_argument("--n", type=int, default=2000, help="held-out scenes (default 2000)")
    c.add_argument("--degraded-out", metavar="FILE", help="also write accuracy under each degradation")
    c.add_argument("--weights", help="oracle weights (default: the shipped ones)")
    c.add_argument("--threads", type=int, default=1)
    c.set_defaults(func=_oracle_check)

    t = sub.add_parser("oracle-train", help="retrain the oracle and rewrite the shipped weights + manifest")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--images", type=int, default=80_000, help="training renders (default 80000)")
    t.add_argument("--steps", type=int, default=2_000, help="optimizer steps at batch 128 (default 2000)")
    t.add_argument(
        "--n-check", type=int, default=3_000, help="held-out scenes for the manifest (default 3000)"
    )
    t.add_argument(
        "--out", help="weights path (default: the shipped lycobench/world/weights/oracle.safetensors)"
    )
    t.add_argument("--threads", type=int, default=1)
    t.add_argument(
        "--vae",
        help="autoencoder to adapt to (a world model folder or its vae/; default the shipped base model's)",
    )
    t.set_defaults(func=_oracle_train)

    b = sub.add_parser("bench", help="time the renderer")
    b.add_argument("--n", type=int, default=4000)
    b.add_argument("--size", type=int, default=64)
    b.set_defaults(func=_bench)

    from .pretrain.cli import add_commands  # `pretrain` and `check` (lycobench/world/pretrain/)

    add_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
