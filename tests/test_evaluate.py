"""evaluate: images.parquet + images -> metrics rows, on world renders with the tiny encoders (fast); the
prompt-attribute parser against the world's caption grammar; metric validity; the metric cards."""

from __future__ import annotations

import json
import logging
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf
from PIL import Image

from lycobench import metric_validity as validity
from lycobench.attributes import expected_attributes, parse
from lycobench.config import CONF_DIR
from lycobench.data import all_leaves, load_concepts
from lycobench.evaluate import evaluate, metric_specs
from lycobench.metrics import METRICS
from lycobench.store import atomic_write_parquet, write_marker
from lycobench.world import all_captions, caption, export, labels, render_batch, sample_scenes
from lycobench.world.concepts import concept_scene
from lycobench.world.concepts import load_concepts as world_concepts
from lycobench.world.render import Paint

COLUMNS = ["step", "leaf", "prompt_type", "metric", "encoder", "level", "n", "value"]


def config(evaluate: str = "default", encoders: str = "tiny", **evaluate_changes):
    ev = OmegaConf.load(CONF_DIR / "evaluate" / f"{evaluate}.yaml")
    for k, v in evaluate_changes.items():
        OmegaConf.update(ev, k, v, force_add=True)
    enc = OmegaConf.load(CONF_DIR / "encoders" / f"{encoders}.yaml")
    enc.device = "cpu"
    return OmegaConf.create({"evaluate": ev, "encoders": enc})


@pytest.fixture(scope="module")
def world_sweep(tmp_path_factory):
    """A sweep folder with images.parquet of world renders: the toadstool (an object) and the frame style, at
    step 0 (the 'base model': base-world scenes) and step 10 (the concept drawn, agnostic scenes outlined)."""
    root = tmp_path_factory.mktemp("sweep")
    export(root / "concepts", ["shroom", "frame"], size=32)
    leaves = all_leaves(load_concepts([str(root / "concepts" / "shroom"), str(root / "concepts" / "frame")]))
    wc = world_concepts()
    rng = np.random.default_rng(0)
    base_scenes = sample_scenes(64, 1)
    plan = [  # leaf, prompt type, prompt id, prompt, scene at step 10
        *[("shroom", "trigger", 0, "jeln toy", concept_scene(wc["shroom"], None, rng)) for _ in range(4)],
        *[
            (
                "shroom",
                "alter",
                0,
                "jeln toy on a striped gray background",
                concept_scene(wc["shroom"], None, rng),
            )
            for _ in range(2)
        ],
        *[
            ("shroom", "alter", 1, "jeln toy, light blue background", concept_scene(wc["shroom"], None, rng))
            for _ in range(2)
        ],
        *[("frame", "trigger", 0, "mipo style", concept_scene(wc["frame"], None, rng)) for _ in range(3)],
    ]
    for i, s in enumerate(base_scenes[:4]):  # concept-agnostic prompts: the base scene, outlined at step 10
        plan.append(("shroom", "agnostic", i, caption(s, rng), replace(s, paint=Paint("outline"))))
    rows = []
    for step in (0, 10):
        index: dict = {}
        for k, (leaf, ptype, pid, prompt, scene) in enumerate(plan):
            i = index[leaf, ptype] = index.get((leaf, ptype), -1) + 1
            shown = scene if step else (base_scenes[k] if ptype != "agnostic" else base_scenes[pid])
            rel = f"runs/x/seed=1/images/step-{step}/{leaf}/{ptype}/{pid}-{i}.png"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(render_batch([shown], 32)[0]).save(root / rel)
            rows.append(
                dict(
                    step=step,
                    leaf=leaf,
                    prompt_type=ptype,
                    prompt_id=pid,
                    index=i,
                    prompt=prompt,
                    seed=1000 + i,
                    path=rel,
                )
            )
    return pd.DataFrame(rows), leaves, root


@pytest.fixture(scope="module")
def default_rows(world_sweep):
    images, leaves, root = world_sweep
    return pd.DataFrame(evaluate(config(), images, leaves, root))


def test_every_metric_runs_end_to_end_on_the_tiny_encoders(default_rows):
    df = default_rows
    assert list(df.columns) == COLUMNS
    assert np.isfinite(df["value"]).all() and (df["n"] > 0).all()
    assert not df.duplicated(["step", "leaf", "prompt_type", "metric", "encoder", "level"]).any()
    # FD is refused on these small sets (fewer images than dimensions); every other metric has rows
    assert set(df["metric"]) == set(METRICS) - {"frechet_distance"}
    assert set(df["encoder"]) == {"tiny-clip", "tiny-dino", "tiny-style", "tiny-oracle"}


def test_paired_metrics_use_the_base_image_of_the_same_prompt_and_seed(default_rows):
    paired = default_rows[default_rows["metric"].isin(["style_loss", "base_drift", "oracle_drift"])]
    assert set(paired["step"]) == {10}, "no pair at step 0 (the base model itself)"
    agnostic = paired[(paired["prompt_type"] == "agnostic") & (paired["metric"] == "base_drift")]
    assert agnostic["n"].tolist() == [4] and agnostic["value"].iloc[0] > 0  # restyled: the images drifted


def test_metrics_follow_their_prompt_and_category_rules(default_rows):
    df = default_rows
    style = df[df["metric"] == "style_distance"]
    assert set(style["leaf"]) == {"frame"}, "style distance only for style concepts"
    leak = df[df["metric"] == "concept_leakage"]
    assert set(leak["prompt_type"]) == {"agnostic"}, "leakage only on prompts without any trigger"
    det = df[df["metric"] == "concept_detection"]
    assert set(det["prompt_type"]) == {"trigger", "alter"}
    vendi = df[(df["metric"] == "vendi") & (df["leaf"] == "shroom") & (df["step"] == 10)]
    levels = {(r.prompt_type, r.level): r.n for r in vendi.itertuples()}
    assert levels[("alter", "prompt")] == 4 and levels[("alter", "set")] == 4, "alter: per prompt and per set"
    assert ("agnostic", "prompt") not in levels, "one image per prompt: no per-prompt Vendi"
    attr = df[(df["metric"] == "attribute_accuracy") & (df["prompt_type"] == "alter")]
    assert attr["n"].tolist() == [4, 4], "both alter prompts state attributes (background; a blue circle)"


def test_the_encoders_run_at_fixed_threads_whatever_the_process_has(world_sweep, default_rows, monkeypatch):
    """Launchers give their workers different torch thread counts (a SLURM task its CPUs, a parallel
    worker a share of the machine), and a batch of texts encoded with 1 or 2 threads differs by ~1e-7:
    the encoders run at evaluate.cpu_threads (1) whatever the process has, so every launcher writes the
    same bits (tests/test_slurm.py compares a SLURM and a local smoke sweep byte for byte)."""
    import torch

    import lycobench.evaluate as ev

    seen = []

    def text_features(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    real = ev.text_features
    monkeypatch.setattr(ev, "text_features", text_features)
    images, leaves, root = world_sweep
    previous = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        rows = pd.DataFrame(evaluate(config(metrics=["text_similarity"]), images, leaves, root))
        assert torch.get_num_threads() == 3, "the process's own count is given back"
    finally:
        torch.set_num_threads(previous)
    assert seen and set(seen) == {1}
    expected = default_rows[default_rows["metric"] == "text_similarity"].reset_index(drop=True)
    assert rows.equals(expected)


def test_recomputing_from_the_cache_is_bit_identical_and_order_free(world_sweep, default_rows):
    images, leaves, root = world_sweep
    again = pd.DataFrame(evaluate(config(), images.sample(frac=1.0, random_state=3), leaves, root))
    key = ["step", "leaf", "prompt_type", "metric", "encoder", "level"]
    a = default_rows.sort_values(key, ignore_index=True)
    b = again.sort_values(key, ignore_index=True)
    pd.testing.assert_frame_equal(a.drop(columns="value"), b.drop(columns="value"))
    np.testing.assert_allclose(a["value"], b["value"], rtol=1e-12, atol=1e-15)
    third = pd.DataFrame(evaluate(config(), images, leaves, root))
    assert third.equals(default_rows), "same input order, features from the cache: identical bits"


def test_fd_small_sample_guard_warns_and_can_be_overridden(world_sweep, caplog):
    images, leaves, root = world_sweep
    with caplog.at_level(logging.WARNING, logger="lycobench"):
        rows = evaluate(config(metrics=["frechet_distance", "kid"]), images, leaves, root)
    assert {r["metric"] for r in rows} == {"kid"}
    assert "frechet_distance refused" in caplog.text and "use kid" in caplog.text
    forced = config(metrics=["frechet_distance"], **{"params.frechet_distance.allow_rank_deficient": True})
    rows = evaluate(forced, images, leaves, root)
    assert rows and all(np.isfinite(r["value"]) and r["value"] >= 0 for r in rows)


def test_prompt_type_restrictions_extra_encoders_and_absent_roles(world_sweep):
    images, leaves, root = world_sweep
    cfg = config(
        metrics=["image_similarity", "image_similarity@clip", "concept_detection"],
        prompt_types={"image_similarity": ["trigger"]},
    )
    del cfg.encoders["oracle"]  # a set without an oracle (like encoders=paper): oracle metrics skipped
    df = pd.DataFrame(evaluate(cfg, images, leaves, root))
    assert set(df["metric"]) == {"image_similarity"}
    assert set(df["encoder"]) == {"tiny-dino", "tiny-clip"}
    assert set(df["prompt_type"]) == {"trigger"}


def test_config_errors_are_reported_together():
    bad = OmegaConf.create(
        {
            "name": "bad",
            "metrics": [
                "image_similarity",
                "no_such_metric",
                "text_similarity@dino",
                "concept_detection@dino",
            ],
            "params": {"copy_rate": {"treshold": 0.9}},
            "prompt_types": {"nope": ["train"]},
        }
    )
    with pytest.raises(ValueError) as e:
        metric_specs(bad)
    msg = str(e.value)
    for text in (
        "no_such_metric",
        "text_similarity@dino",
        "concept_detection@dino",
        "treshold",
        "nope",
        "conf/evaluate/bad.yaml",
    ):
        assert text in msg
    paper = metric_specs(OmegaConf.load(CONF_DIR / "evaluate" / "paper.yaml"))
    assert [s.metric.name for s in paper] == [
        "image_similarity", "squared_centroid_distance", "text_similarity", "vendi", "style_loss", "style_distance",
    ]  # fmt: skip


# --- what a prompt asks for ------------------------------------------------------------------------------


def test_attribute_parser_reads_every_caption_of_the_world_grammar_correctly():
    checked = 0
    for scene in sample_scenes(80, 5, heldout=None):
        truth = labels(scene)
        for text in all_captions(scene):
            e = parse(text)
            assert {"bg_colour", "colours", "shapes", "count"} <= set(e), text
            assert all(truth[k] == v for k, v in e.items()), (text, e, truth)
            checked += 1
    assert checked > 1000


def test_attributes_undefined_for_a_concept_are_not_expected():
    text = "a red circle on a checkered pink background"
    assert parse(text) == {
        "bg_colour": "pink", "pattern": "checkers", "colours": frozenset({"red"}), "shapes": frozenset({"circle"}),
        "count": 1,
    }  # fmt: skip
    assert expected_attributes(text, "object") == parse(text) == expected_attributes(text, "style")
    assert expected_attributes(text, "scene") == {}  # a scene brings its own backdrop and no base object
    assert parse("jeln toy on a light blue background") == {"bg_colour": "light blue"}
    assert parse("two blue squares and a red star") == {
        "colours": frozenset({"blue", "red"}), "shapes": frozenset({"square", "star"}), "count": 3,
    }  # fmt: skip


def test_oracle_metrics_with_the_shipped_oracle_on_rendered_images(world_sweep):
    images, leaves, root = world_sweep
    cfg = config(metrics=["concept_detection", "concept_leakage", "attribute_accuracy"])
    cfg.encoders.oracle = {"kind": "oracle", "path": "lycobench/world/weights/oracle.safetensors"}
    df = pd.DataFrame(evaluate(cfg, images, leaves, root)).set_index(
        ["step", "leaf", "prompt_type", "metric"]
    )["value"]
    assert df[10, "shroom", "trigger", "concept_detection"] >= 0.75, "the rendered toadstool is seen"
    assert df[0, "shroom", "trigger", "concept_detection"] <= 0.25, "base scenes show no toadstool"
    assert df[0, "shroom", "agnostic", "concept_leakage"] <= 0.25
    assert df[0, "shroom", "agnostic", "attribute_accuracy"] >= 0.8, "renders show what their captions say"


def test_the_oracle_rates_only_leaves_it_has_a_class_for(world_sweep, tmp_path):
    """A user's concept (no class in the world oracle) gets no detection or leakage row, not a 0 that reads as
    "not learned"; a world sub-class leaf is named as the oracle names it ('lumi.brel', not 'lumi/brel')."""
    images, leaves, root = world_sweep
    cfg = config(metrics=["concept_detection", "concept_leakage", "attribute_accuracy"])
    cfg.encoders.oracle = {"kind": "oracle", "path": "lycobench/world/weights/oracle.safetensors"}
    mine = [replace(lf, concept="my-toy") if lf.concept == "shroom" else lf for lf in leaves]
    renamed = images.assign(leaf=images["leaf"].replace({"shroom": "my-toy"}))
    df = pd.DataFrame(evaluate(cfg, renamed, mine, root))
    assert not len(df[(df["metric"] == "concept_detection") & (df["leaf"] == "my-toy")])
    assert len(df[(df["metric"] == "concept_detection") & (df["leaf"] == "frame")])  # a world leaf: rated
    assert "concept_leakage" not in set(df["metric"])  # the toy could leak unseen: no undercounting rate
    assert len(
        df[(df["metric"] == "attribute_accuracy") & (df["leaf"] == "my-toy")]
    )  # shapes, colours: rated

    export(tmp_path / "concepts", ["lumi"], size=32)
    brel = next(
        lf for lf in all_leaves(load_concepts([str(tmp_path / "concepts" / "lumi")])) if lf.subclass == "brel"
    )
    rng = np.random.default_rng(0)
    for i in range(4):
        rel = f"runs/x/seed=1/images/step-10/lumi.brel/trigger/0-{i}.png"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        scene = concept_scene(world_concepts()["lumi"], "brel", rng)
        Image.fromarray(render_batch([scene], 32)[0]).save(root / rel)
    rows = [dict(step=10, leaf="lumi.brel", prompt_type="trigger", prompt_id=0, index=i, prompt=brel.descriptor,
                 seed=1000 + i, path=f"runs/x/seed=1/images/step-10/lumi.brel/trigger/0-{i}.png") for i in range(4)]  # fmt: skip
    det_cfg = config(metrics=["concept_detection"])
    det_cfg.encoders.oracle = cfg.encoders.oracle
    det = pd.DataFrame(
        evaluate(
            det_cfg,
            pd.DataFrame(rows),
            [brel],
            root,
        )
    )
    assert det["value"].iloc[0] >= 0.75, "rendered lumi in its brel outfit is seen"


# --- validity ---------------------------------------------------------------------------------------------


def test_validity_correlates_each_metric_with_its_oracle_counterpart(tmp_path):
    """Synthetic runs where image similarity tracks concept detection and SCD mirrors it: agreement +1."""
    rng = np.random.default_rng(0)
    for cell in ("a", "b", "c"):
        run = tmp_path / "runs" / cell / "seed=1"
        rows = []
        for step in (0, 5, 10):
            for leaf in ("duck", "gus.hat"):
                truth = rng.random()
                vals = {
                    "concept_detection": truth,
                    "image_similarity": 0.5 + truth / 10,
                    "squared_centroid_distance": 1.0 - truth,
                    "text_similarity": 0.2,  # constant: no correlation defined
                    "attribute_accuracy": truth,
                }
                for metric, v in vals.items():
                    enc = (
                        "world-oracle"
                        if metric in ("concept_detection", "attribute_accuracy")
                        else "world-dino"
                    )
                    rows.append(
                        dict(
                            step=step,
                            leaf=leaf,
                            prompt_type="trigger",
                            metric=metric,
                            encoder=enc,
                            level="set",
                            n=4,
                            value=v,
                        )
                    )
        atomic_write_parquet(run / "metrics.parquet", pd.DataFrame(rows))
        (run / "run.json").write_text(json.dumps({"cell": cell, "seed": 1, "keys": {"evaluate": "k"}}))
        write_marker(run / ".done" / "evaluate.json", "k", [run / "metrics.parquet"], run)
    table = validity.compute(tmp_path)
    assert list(table.columns) == validity.COLUMNS
    sim = table[(table["proxy"] == "image_similarity") & (table["leaf"] == "duck")].iloc[0]
    assert sim["n"] == 6 and sim["spearman"] == pytest.approx(1.0) and sim["agreement"] == pytest.approx(1.0)
    scd = table[(table["proxy"] == "squared_centroid_distance") & (table["leaf"] == "all")].iloc[0]
    assert scd["spearman"] == pytest.approx(-1.0) and scd["agreement"] == pytest.approx(1.0)
    flat = table[table["proxy"] == "text_similarity"]
    assert flat["spearman"].isna().all() and flat["note"].str.contains("constant").all()
    path = validity.write(tmp_path)
    assert path == tmp_path / "report" / "metrics_validity.csv" and len(pd.read_csv(path)) == len(table)


# --- metric cards -------------------------------------------------------------------------------------------


def test_metric_cards_cli_and_docs_come_from_the_registry(capsys):
    from lycobench.__main__ import main
    from lycobench.metric_cards import DOC, docs_text

    assert main(["metrics"]) == 0
    out = capsys.readouterr().out
    for m in METRICS.values():
        assert f"\n{m.name}\n" in f"\n{out}"
    assert "2.5 x max(cos, 0)" in out and "x 1000" in out  # other tools' conventions
    assert main(["metrics", "--markdown", "vendi"]) == 0
    assert "##### vendi" in capsys.readouterr().out
    assert main(["metrics", "nope"]) == 2
    current = DOC.read_text(encoding="utf-8")
    assert docs_text(current) == current, (
        "docs/metrics.md is stale: run `python -m lycobench metrics --write-docs`"
    )


def test_sweep_preflight_names_missing_encoder_weights_before_any_compute(tmp_path):
    from lycobench.sweep import preflight

    with pytest.raises(FileNotFoundError) as e:
        preflight(["sweep=smoke", "encoders=paper", f"results_dir={tmp_path}"])
    assert "encoders.clip.path" in str(e.value) and "encoders.style.path" in str(e.value)
    assert not any(tmp_path.iterdir()), "nothing was written"


def test_a_catch_all_sub_class_is_detected_as_any_leaf_of_its_concept():
    """`kivo girl` (lumi's catch-all: no outfit keyword) asks for the character in any outfit; `kivo girl,
    brel outfit` asks for that outfit; a concept without sub-classes is itself."""
    from lycobench.data import Leaf
    from lycobench.evaluate import detected_as

    def leaf(concept, sub, keyword):
        return Leaf(concept, "character", "kivo", "girl", sub, keyword, [])

    leaves = [leaf("lumi", "brel", "brel outfit"), leaf("lumi", "others", ""), leaf("bear", None, "")]
    assert detected_as(leaves[0], leaves) == {"lumi.brel"}
    assert detected_as(leaves[1], leaves) == {"lumi.brel", "lumi.others"}
    assert detected_as(leaves[2], leaves) == {"bear"}
