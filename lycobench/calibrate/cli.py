"""``python -m lycobench world check``: the world's calibration command (``check.py``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _check(args: argparse.Namespace) -> int:
    import sys

    from ..world.concepts import load_concepts
    from .check import run_check

    if args.merge:
        return _merge(args.merge, Path(args.out))
    known = list(load_concepts())
    unknown = sorted(set(args.concepts or []) - set(known))
    if unknown:
        print(
            f"lycobench: world check: unknown concept(s) {', '.join(unknown)}; the world's concepts are "
            f"{', '.join(known)} (files in concepts/world/)",
            file=sys.stderr,
        )
        return 2
    if args.seeds and any(o.split("=", 1)[0].lstrip("+") == "seed" for o in args.overrides):
        print("lycobench: world check: give the training seeds either with --seeds or as seed=N in "
              "--overrides, not both", file=sys.stderr)  # fmt: skip
        return 2
    result = run_check(
        Path(args.out),
        args.model,
        fast=args.fast,
        threads=args.threads,
        oracle_path=args.oracle,
        parts=tuple(args.parts),
        adapter_names=tuple(args.adapters),
        overrides=tuple(args.overrides),
        concept_names=tuple(args.concepts or ()),
        together=args.together,
        train_group=args.train,
        seeds=tuple(args.seeds or ()),
    )
    print(json.dumps({k: v for k, v in result.items() if k != "settings"}, indent=1))
    out = Path(args.out)
    pngs = [out.with_suffix(".png")] if "base" in args.parts else []  # base samples
    pngs += [out.with_name(out.stem + "-concepts.png")] if "concepts" in args.parts else []
    print(f"wrote {out}" + "".join(f" and {p}" for p in pngs))
    return 0


def _merge(files: list[str], out: Path) -> int:
    import sys

    from .merge import MergeError, merge_checks

    try:
        merged = merge_checks([(f, json.loads(Path(f).read_text(encoding="utf-8"))) for f in files])
    except (OSError, json.JSONDecodeError, MergeError) as e:
        print(f"lycobench: world check --merge: {e}", file=sys.stderr)
        return 2
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(merged, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out} (merged {len(files)} files)")
    return 0


def parser() -> argparse.ArgumentParser:
    c = argparse.ArgumentParser(
        prog="python -m lycobench world check",
        description="measure the world base model, concept fine-tunes and the world encoders",
    )
    c.add_argument("--out", required=True, help="JSON file; a PNG grid of base samples goes beside it")
    c.add_argument("--model", help="diffusers folder (default: the shipped base model)")
    c.add_argument("--fast", action="store_true", help="a few prompts, one concept, one epoch (a smoke test)")
    c.add_argument(
        "--oracle", help="oracle weights (default: the shipped lycobench/world/weights/oracle.safetensors)"
    )
    c.add_argument(
        "--parts",
        nargs="+",
        choices=["base", "concepts", "encoders"],
        default=["base", "concepts", "encoders"],
        help="what to measure (default all; parts may run in separate processes)",
    )
    c.add_argument(
        "--adapters", nargs="+", default=["lora"], metavar="ADAPTER",
        help="conf/adapter configs fine-tuned per concept at their defaults (default: lora; e.g. "
        "lora loha lokr full for the paper's four algorithms)",
    )  # fmt: skip
    c.add_argument(
        "--overrides", nargs="+", default=[], metavar="KEY=VALUE",
        help="Hydra overrides for the concepts' fine-tunes (default none), e.g. train.exposures_per_epoch=80 "
        "to calibrate the world's training recipe",
    )  # fmt: skip
    c.add_argument(
        "--train", default="quick", metavar="GROUP",
        help="conf/train recipe of the fine-tunes (default quick: the default study's; scaled: the paper sweep's)",
    )  # fmt: skip
    c.add_argument(
        "--concepts", nargs="+", metavar="NAME",
        help="world concepts to fine-tune (default: the studied ones, `studied: true` in concepts/world/; one "
        "with --fast)",
    )  # fmt: skip
    c.add_argument(
        "--together", action=argparse.BooleanOptionalAction, default=True,
        help="one fine-tune per adapter learns all the concepts at once, as a study trains (the default); "
        "--no-together fine-tunes each concept alone",
    )  # fmt: skip
    c.add_argument(
        "--seeds", nargs="+", type=int, metavar="N",
        help="train each adapter once per training seed and report the mean curves (and each seed's in "
        "curve_by_seed); default: the config's one seed",
    )  # fmt: skip
    c.add_argument("--threads", type=int, default=2)
    c.add_argument(
        "--merge", nargs="+", metavar="JSON",
        help="measure nothing: merge these results (parts or algorithms measured in separate processes, "
        "e.g. one per core) into --out; results of different settings are refused",
    )  # fmt: skip
    return c


def main(argv: list[str]) -> int:
    return _check(parser().parse_args(argv))
