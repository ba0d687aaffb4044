"""The report on synthetic sweep folders written in the on-disk layout of a real sweep (fast), plus the
CLI contract: rebuild from files alone, unfinished runs listed, nothing rewritten when nothing changed."""

from __future__ import annotations

import json
import shutil
import struct
import zlib
from pathlib import Path

import pandas as pd
import pytest

from lycobench import analysis as an
from lycobench.report import build_report
from lycobench.store import atomic_write_parquet, write_marker

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
        }
        offset = {"train": 0.05, "trigger": 0.0, "alter": -0.1}
        for m, pt in columns:
            v = values[m] + (offset[pt] if m == "image_similarity" else 0.0)
            rows.append(
                dict(step=step, leaf=leaf, prompt_type=pt, metric=m, encoder="enc", level="set", n=2, value=v)
            )
    return rows


def make_sweep(
    root: Path,
    configs: dict = CONFIGS,
    seeds=SEEDS,
    fail: tuple[str, int] | None = None,
    columns=COLUMNS,
) -> Path:
    """A sweep folder in the layout of a real one: manifest, runs with markers, metrics, images."""
    sweep = root / "syn"
    concepts = root / "concepts"
    for concept, cat in {"toy": "object", "hero": "character"}.items():
        (concepts / concept).mkdir(parents=True, exist_ok=True)
        (concepts / concept / "concept.yaml").write_text(
            f"name: {concept}\ncategory: {cat}\ntrigger: zz\nclass_word: thing\n"
        )
    manifest = {"sweep": {"name": "syn", "configs": {c: [] for c in configs}, "seeds": list(seeds)}}
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
                                shade = int(min(255, 40 * epoch + 20 * i))
                                _png(sweep / rel, (shade, 100 if step else 200, len(cell) * 20 % 255))
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


@pytest.fixture(autouse=True)
def fast_catboost(monkeypatch):
    """Fewer boosting rounds keep the suite fast; the paper's 300 are checked in test_analysis."""
    monkeypatch.setitem(an.CATBOOST_PARAMS, "iterations", 40)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setitem(an.CATBOOST_PARAMS, "iterations", 40)
    root = tmp_path_factory.mktemp("sweep")
    sweep = make_sweep(root, fail=("loha", 25))
    out, unfinished = build_report(sweep)
    mp.undo()
    return sweep, out, unfinished


def test_scores_hold_normalised_and_raw_values(built):
    sweep, out, _ = built
    s = pd.read_parquet(out / "scores.parquet")
    assert {"scope", "group", "category", "cell", "seed", "epoch", "raw", "score", "higher_is_better"} <= set(
        s.columns
    )
    assert set(s["scope"]) == {"leaf", "class", "category", "all"}
    assert set(s.loc[s["scope"] == "category", "group"]) == {"object", "character"}
    ranked = s[s["higher_is_better"].notna()]
    assert ranked["score"].between(0, 1).all() and ranked["raw"].notna().all()
    # the unknown metric keeps its raw values, unranked
    mystery = s[s["metric"] == "mystery_score"]
    assert len(mystery) and mystery["score"].isna().all() and mystery["raw"].notna().all()
    # base model: present, outside the pool (its score is a reference position)
    base = s[(s["cell"] == "base") & (s["scope"] == "leaf")]
    assert len(base) and (base["step"] == 0).all()
    pool = s[(s["scope"] == "leaf") & (s["cell"] != "base") & (s["metric"] == "image_similarity")]
    n_ckpt = len(CONFIGS) * len(SEEDS) * len(EPOCHS) - len(EPOCHS)  # one run failed
    assert pool.groupby(["leaf", "prompt_type"]).size().eq(n_ckpt).all()
    # the lowest-fidelity base model sits at the bottom of image similarity, at the top of diversity
    b = base.set_index(["metric", "prompt_type", "leaf"])["score"]
    assert (b.loc["image_similarity"] == 0).all() and (b.loc["vendi"] == 1).all()


def test_unfinished_runs_are_listed_and_left_out(built):
    sweep, out, unfinished = built
    assert [(u["cell"], u["seed"], u["status"]) for u in unfinished] == [("loha", 25, "failed")]
    html = (out / "index.html").read_text()
    assert html.index("Runs not finished") < html.index("<nav>") and "out of memory" in html
    s = pd.read_parquet(out / "scores.parquet")
    assert not ((s["cell"] == "loha") & (s["seed"] == 25)).any()


def test_confidence_intervals_and_tables(built):
    _, out, _ = built
    ci = pd.read_csv(out / "summary_ci.csv")
    assert {"score", "score_lo", "score_hi", "raw", "raw_lo", "raw_hi", "n_seeds"} <= set(ci.columns)
    runs = ci[(ci["cell"] != "base") & ci["score"].notna()]
    assert (runs["score_lo"] <= runs["score"] + 1e-12).all() and (
        runs["score"] <= runs["score_hi"] + 1e-12
    ).all()
    assert (runs.loc[runs["cell"] == "lora", "n_seeds"] == 3).all()
    t1 = pd.read_csv(out / "table1.csv")
    assert set(t1["cell"]) == {"full", "full-lr5e-6", "lora", "loha", "lokr"}
    fid = t1[t1["criterion"] == "fidelity"].set_index("cell")["rank"]
    assert fid["full-lr5e-6"] > fid["full"]  # the truth: a higher lr learns more
    paired = pd.read_csv(out / "paired.csv")
    row = paired[(paired["a"] == "lora-lr1e-3") & (paired["b"] == "lora") & paired["epoch"].isna()]
    row = row[(row["metric"] == "image_similarity") & (row["prompt_type"] == "train")].iloc[0]
    assert row["mean_diff"] > 0 and row["ci_lo"] > 0 and row["win_rate"] == 1 and row["d_z"] > 1


def test_shap_models_report_r2_and_flag_unreliable_ones(built):
    _, out, _ = built
    t = pd.read_csv(out / "shap" / "summary.csv")
    assert {"r2_cv", "r2_train", "reliable", "note"} <= set(t.columns)
    assert "mystery_score" not in set(t["metric"])
    assert set(t["category"]) == {"object", "character"}
    fitted = t[t["n_folds"] > 0]
    assert fitted["r2_cv"].notna().all() and (fitted["n_folds"] == 3).all()
    assert (fitted["reliable"] == (fitted["r2_cv"] >= an.R2_RELIABLE)).all()
    assert (~fitted["reliable"] == fitted["note"].fillna("").str.contains("unreliable")).all()
    html = (out / "index.html").read_text()
    for r in fitted.itertuples():
        png = out / "shap" / r.category / f"{r.metric}-{r.encoder}-{r.level}-{r.prompt_type}.png"
        assert png.is_file() and png.read_bytes()[:4] == b"\x89PNG"
        assert f"shap/{r.category}/{png.name}" in html
    assert "R² cross-validated by seed" in html


def test_html_links_are_relative_and_resolve(built):
    sweep, out, _ = built
    html = (out / "index.html").read_text()
    import re

    links = set(re.findall(r"(?:src|href)='([^']+)'", html))
    assert links, "no links"
    for link in links:
        if link.startswith("#"):
            assert f"id='{link[1:]}'" in html, link
            continue
        assert not link.startswith(("/", "http:", "https:", "file:")), link
        assert (out / link).is_file(), link
    for section in (
        "Scatter panels",
        "Pareto fronts",
        "Metric curves over checkpoints",
        "Correlations",
        "Image grids",
    ):
        assert f">{section}</h2>" in html
    # scatter panels present, the style-loss panel skipped with a note rather than a crash
    assert list((out / "plots" / "scatter").glob("*.png"))
    assert "style_loss(style) vs image_similarity(train)" in html
    grids = sorted((out / "grids").rglob("*.png"))
    assert len(grids) == len(LEAVES) * len(PROMPT_TYPES)


def test_rebuild_is_deterministic_and_skips_when_unchanged(built, tmp_path):
    """Tables and the page rebuilt from the run folders are byte-identical (figures come from the cache,
    keyed by content, since the folder was copied); an unchanged sweep then rewrites no file."""
    sweep, out, _ = built
    copy = tmp_path / "syn"
    shutil.copytree(sweep, copy)
    tables = (
        "scores.parquet",
        "summary_ci.csv",
        "paired.csv",
        "table1.csv",
        "index.html",
        "shap/summary.csv",
    )
    for f in tables:
        (copy / "report" / f).unlink()
    build_report(copy)
    for f in tables:
        assert (copy / "report" / f).read_bytes() == (out / f).read_bytes(), f
    snap = {p: p.stat().st_mtime_ns for p in (copy / "report").rglob("*")}
    build_report(copy)
    assert snap == {p: p.stat().st_mtime_ns for p in (copy / "report").rglob("*")}


def test_a_changed_input_redraws_only_what_it_affects(built, tmp_path):
    sweep, out, _ = built
    copy = tmp_path / "syn"
    shutil.copytree(sweep, copy)
    report = copy / "report"
    kept = [report / "grids" / "toy" / "train.png", report / "plots" / "scatter" / "object-epoch2.png"]
    kept += [report / "plots" / "curves" / "object" / "vendi.png"]
    kept += list((report / "shap").rglob("*.json")) + list((report / "shap").rglob("*.png"))
    curves = report / "plots" / "curves" / "object" / "mystery_score.png"
    before = {p: p.stat().st_mtime_ns for p in [*kept, curves]}
    # the unranked metric changes: its raw curve changes, no normalised score, SHAP model or image does
    run = copy / "runs" / "lora" / "seed=23"
    m = pd.read_parquet(run / "metrics.parquet")
    m.loc[m["metric"] == "mystery_score", "value"] += 0.5
    atomic_write_parquet(run / "metrics.parquet", m)
    write_marker(run / ".done" / "evaluate.json", "lora-23-evaluate", [run / "metrics.parquet"], run)
    build_report(copy)
    assert all(p.stat().st_mtime_ns == before[p] for p in kept)
    assert curves.stat().st_mtime_ns != before[curves]
    assert (report / "scores.parquet").read_bytes() != (out / "scores.parquet").read_bytes()


def test_cli_report_lists_unfinished_runs_and_exits_1(built, tmp_path, cli):
    sweep, _, _ = built
    copy = tmp_path / "syn"
    shutil.copytree(sweep, copy)
    r = cli("report", str(copy))
    assert r.returncode == 1 and "loha seed=25: failed (oom)" in r.stderr


def test_an_empty_sweep_still_gives_a_page(tmp_path):
    sweep = tmp_path / "empty"
    sweep.mkdir()
    (sweep / "manifest.json").write_text(
        json.dumps({"sweep": {"name": "empty", "configs": {"a": []}, "seeds": [1]}})
    )
    out, unfinished = build_report(sweep)
    assert [u["status"] for u in unfinished] == ["pending"]
    assert "No finished run yet" in (out / "index.html").read_text()


def test_a_sweep_without_the_papers_metrics_skips_plots_with_notes(tmp_path, cli):
    """One configuration, one seed, one metric: no SHAP fit, no scatter pair; notes instead of crashes."""
    sweep = make_sweep(
        tmp_path, configs={"lora": CONFIGS["lora"]}, seeds=(23,), columns=[("vendi", "trigger")]
    )
    r = cli("report", str(sweep))
    assert r.returncode == 0, r.stderr
    html = (sweep / "report" / "index.html").read_text()
    assert "Skipped" in html and "not measured in this sweep" in html
    t = pd.read_csv(sweep / "report" / "shap" / "summary.csv")
    assert (t["n_rows"] == len(EPOCHS)).all() and t["note"].str.contains("checkpoint").all()
    assert "Runs not finished" not in html
