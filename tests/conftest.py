import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
ROOT = Path(__file__).resolve().parent.parent


def lycobench(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the CLI as a user would, in a subprocess (no fault injection unless asked)."""
    full_env = {k: v for k, v in os.environ.items() if k != "LYCOBENCH_FAULT"}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "lycobench", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=ROOT,
        timeout=900,
    )


@pytest.fixture
def cli():
    return lycobench


@pytest.fixture(scope="session")
def local_smoke(tmp_path_factory) -> Path:
    """The smoke sweep run once, fresh, on this machine with Hydra's basic launcher: the reference that
    other launches are compared with (test_sweep, test_slurm). Read it; never write into it."""
    results = tmp_path_factory.mktemp("local-smoke")
    r = lycobench("sweep", "sweep=smoke", f"results_dir={results}")
    assert r.returncode == 0, r.stderr[-3000:]
    return results / "smoke"


# --- a synthetic sweep in the on-disk layout of a real one (test_report, test_report_browser) ---------------

# configuration -> factors (the paper's design in miniature: defaults plus one-factor variations)
CONFIGS = {
    "lora": dict(algo="lora", target="attn-mlp", dim=8, alpha=4, factor=None, lr=5e-4),
    "lora-dim32": dict(algo="lora", target="attn-mlp", dim=32, alpha=16, factor=None, lr=5e-4),
    "lora-dim32-a1": dict(algo="lora", target="attn-mlp", dim=32, alpha=1, factor=None, lr=5e-4),
    "lora-attn-only": dict(algo="lora", target="attn-only", dim=8, alpha=4, factor=None, lr=5e-4),
    "lora-lr1e-3": dict(algo="lora", target="attn-mlp", dim=8, alpha=4, factor=None, lr=1e-3),
    "loha": dict(algo="loha", target="attn-mlp", dim=4, alpha=2, factor=None, lr=5e-4),
    "lokr": dict(algo="lokr", target="attn-mlp", dim=10000, alpha=1, factor=8, lr=5e-4),
    "lokr-f12": dict(algo="lokr", target="attn-mlp", dim=10000, alpha=1, factor=12, lr=5e-4),
    "full": dict(algo="full", target="attn-mlp", dim=0, alpha=0, factor=None, lr=1e-6),
    "full-lr5e-6": dict(algo="full", target="attn-mlp", dim=0, alpha=0, factor=None, lr=5e-6),
}
SEEDS = (23, 24, 25)
EPOCHS = {4: 2, 12: 6}  # checkpoint step -> epoch
LEAVES = {"toy": "object", "hero.red": "character", "hero.blue": "character"}
PROMPT_TYPES = ("train", "trigger", "alter")
TRAINING_IMAGES = 5  # per leaf


def _png(path: Path, rgb: tuple[int, int, int], size: int = 8) -> None:
    """A tiny valid PNG without PIL (solid colour)."""
    raw = b"".join(b"\x00" + bytes(rgb) * size for _ in range(size))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    )


def fidelity(f: dict, epoch: float, seed: int, leaf: str) -> float:
    """A known truth: fidelity grows with lr, epochs, trained layers and capacity; seeds add small noise."""
    if f is None:
        return 0.30
    lr_effect = {5e-4: 0.0, 1e-3: 0.08, 1e-6: -0.05, 5e-6: 0.06}[f["lr"]]
    cap = 0.04 if f["dim"] == 32 else (-0.03 if f["factor"] == 12 else 0.0)
    layers = -0.1 if f["target"] == "attn-only" else 0.0
    noise = 0.004 * ((seed * 7 + len(leaf) * 3 + int(epoch)) % 5 - 2)
    return 0.45 + 0.02 * epoch + lr_effect + cap + layers + noise


# the metric columns a synthetic run measures: the paper's scatter metrics, plus one the registry lacks
COLUMNS = [
    ("image_similarity", "train"),
    ("image_similarity", "trigger"),
    ("image_similarity", "alter"),
    ("squared_centroid_distance", "trigger"),
    ("text_similarity", "alter"),
    ("vendi", "trigger"),
    ("mystery_score", "train"),
]


def metric_rows(f: dict | None, step: int, epoch: float, seed: int, columns=COLUMNS) -> list[dict]:
    rows = []
    for leaf in LEAVES:
        fid = fidelity(f, epoch, seed, leaf)
        # controllability suffers from fidelity but gains most from training fewer layers
        attn_only = f is not None and f["target"] == "attn-only"
        values = {
            "image_similarity": fid,
            "squared_centroid_distance": 0.6 - fid,
            "text_similarity": 0.5 - 0.3 * fid + (0.2 if attn_only else 0.0),
            "vendi": 12 - 10 * fid + (0.01 * (seed % 3) if f is not None else 0.0),
            "mystery_score": 2 * fid,
            # the oracle's detection (world sweeps): the toy is learned late, the hero never
            "concept_detection": (min(1.0, fid + 0.3) if leaf == "toy" else 0.0) if f is not None else 0.0,
        }
        offset = {"train": 0.05, "trigger": 0.0, "alter": -0.1}
        for m, pt in columns:
            v = values[m] + (offset[pt] if m == "image_similarity" else 0.0)
            # Vendi is stored per set and per prompt; a trigger file has one prompt: the two are equal
            levels = ("set", "prompt") if (m, pt) == ("vendi", "trigger") else ("set",)
            row = dict(step=step, leaf=leaf, prompt_type=pt, metric=m, encoder="enc", n=2, value=v)
            rows += [{**row, "level": level} for level in levels]
    return rows


def make_sweep(
    root: Path,
    configs: dict = CONFIGS,
    seeds=SEEDS,
    fail: tuple[str, int] | None = None,
    columns=COLUMNS,
) -> Path:
    """A sweep folder in the layout of a real one: manifest, runs with markers, metrics, images."""
    import pandas as pd

    from lycobench.store import atomic_write_parquet, write_marker

    sweep = root / "syn"
    concepts = root / "concepts"
    for concept, cat in {"toy": "object", "hero": "character"}.items():
        (concepts / concept).mkdir(parents=True, exist_ok=True)
        subclasses = "subclasses: {red: red, blue: blue}\n" if concept == "hero" else ""
        (concepts / concept / "concept.yaml").write_text(
            f"name: {concept}\ncategory: {cat}\ntrigger: zz\nclass_word: thing\n{subclasses}"
        )
    for leaf in LEAVES:  # the training images: 5 per leaf, 32 px (the report shows them above its grids)
        concept, _, sub = leaf.partition(".")
        folder = concepts / concept / sub if sub else concepts / concept
        for k in range(TRAINING_IMAGES):
            _png(folder / f"{k}.png", (30 * k, 50 + len(leaf) * 10, 200 - 20 * k), size=32)
            (folder / f"{k}.txt").write_text(f"zz thing{', ' + sub if sub else ''}, tag{k}\n")
    manifest = {
        "sweep": {"name": "syn", "configs": {c: [] for c in configs}, "seeds": list(seeds)},
        "git": "0123abc",
        "versions": {"lycobench": "9.9.9", "torch": "2.x"},
        "machine": {"host": "builder-host-7", "platform": "Linux-test", "cpus": 2},
        "base_model": {"name": "world", "kind": "world", "manifest_sha256": "feedbead" * 8},
        "config": {"concepts": [str(concepts / "toy"), str(concepts / "hero")], "results_dir": str(root)},
    }
    sweep.mkdir(parents=True, exist_ok=True)
    (sweep / "manifest.json").write_text(json.dumps(manifest))
    for cell, f in configs.items():
        for seed in seeds:
            run = sweep / "runs" / cell / f"seed={seed}"
            run.mkdir(parents=True, exist_ok=True)
            keys = {s: f"{cell}-{seed}-{s}" for s in ("train", "generate", "evaluate")}
            info = {
                "cell": cell,
                "seed": seed,
                "status": "done",
                "factors": {**f, "model": "tiny", "multiplier": 1.0},
                "keys": keys,
            }
            (run / "run.json").write_text(json.dumps(info))
            (run / "config.yaml").write_text(f"concepts: [{concepts / 'toy'}, {concepts / 'hero'}]\n")
            log = pd.DataFrame({"step": range(1, 13), "epoch": [(s - 1) // 2 + 1 for s in range(1, 13)]})
            log.assign(loss=0.1, lr=f["lr"], seconds=0.0).to_csv(run / "train_log.csv", index=False)
            rows = metric_rows(None, 0, 0.0, seed, columns)
            images = []
            for step, epoch in [(0, 0.0), *EPOCHS.items()]:
                if step:
                    rows += metric_rows(f, step, epoch, seed, columns)
                for leaf in LEAVES:
                    for pt in PROMPT_TYPES:
                        for i in range(2):
                            rel = (
                                f"cache/base-images/{leaf}-{pt}-{i}.png"
                                if step == 0
                                else f"runs/{cell}/seed={seed}/images/step-{step}/{leaf}/{pt}/0-{i}.png"
                            )
                            if not (sweep / rel).is_file():
                                shade = int(min(255, 40 * epoch + 20 * i + 7 * PROMPT_TYPES.index(pt)))
                                blue = (len(cell) * 20 + (seed - 23) * 60) % 255 if step else 0
                                _png(sweep / rel, (shade, 100 if step else 200, blue), size=32)
                            images.append(
                                dict(
                                    step=step,
                                    leaf=leaf,
                                    prompt_type=pt,
                                    prompt_id=0,
                                    index=i,
                                    prompt=f"zz thing {pt}",
                                    seed=1000 + i,
                                    path=rel,
                                )
                            )
            atomic_write_parquet(run / "metrics.parquet", pd.DataFrame(rows))
            atomic_write_parquet(run / "images.parquet", pd.DataFrame(images))
            outputs = {"train": "train_log.csv", "generate": "images.parquet", "evaluate": "metrics.parquet"}
            for stage, name in outputs.items():
                write_marker(run / ".done" / f"{stage}.json", keys[stage], [run / name], run)
            if fail == (cell, seed):
                (run / "FAILED").write_text("cause: oom\n\nRuntimeError: out of memory\n")
    return sweep


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    """A report built on the synthetic sweep (one run failed), shared by test_report and test_report_browser:
    (sweep folder, report folder, unfinished runs). Tests copy it before changing anything."""
    from lycobench import analysis as an
    from lycobench.report import build_report

    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(an.CATBOOST_PARAMS, "iterations", 40)
        root = tmp_path_factory.mktemp("sweep")
        sweep = make_sweep(root, fail=("loha", 25))
        out, unfinished = build_report(sweep)
    return sweep, out, unfinished
