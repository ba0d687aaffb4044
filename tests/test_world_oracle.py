"""The shipped oracle: small fp16 weights, a manifest with its measured accuracy, and accurate on held-out renders."""

import json

import numpy as np
import pytest
from safetensors.torch import load_file

from lycobench.world.cli import main
from lycobench.world.concepts import load_concepts
from lycobench.world.degrade import DEGRADATIONS, degrade
from lycobench.world.oracle import MANIFEST, WEIGHTS, Oracle
from lycobench.world.oracle_train import check_set, evaluate


@pytest.fixture(scope="module")
def oracle():
    return Oracle.load()


def test_weights_are_small_fp16_with_a_manifest():
    assert WEIGHTS.stat().st_size < 2_000_000
    floats = [t for t in load_file(str(WEIGHTS)).values() if t.is_floating_point()]
    assert floats and all(str(t.dtype) == "torch.float16" for t in floats)
    manifest = json.loads(MANIFEST.read_text(encoding="utf-8"))
    assert {"heads", "seed", "train", "accuracy", "sha256"} <= set(manifest)
    assert all(v >= 0.98 for v in manifest["accuracy"]["clean"].values()), manifest["accuracy"]["clean"]
    assert set(DEGRADATIONS) <= set(manifest["accuracy"])


def test_oracle_reads_images_as_the_shipped_autoencoder_returns_them(oracle):
    """Half of its training images went through the base model's VAE (the manifest names which one, by
    hash), and it reads the world after that round trip as well as clean."""
    from lycobench.world.codec import BASE_MODEL, codec_identity, codec_roundtrip, load_codec

    manifest = json.loads(MANIFEST.read_text(encoding="utf-8"))
    trip = manifest["train"]["autoencoder_roundtrip"]
    assert trip["share"] == 0.5 and trip["vae"]["sha256"] == codec_identity(BASE_MODEL)["sha256"]
    assert all(v >= 0.9 for v in manifest["accuracy"]["vae"].values()), manifest["accuracy"]["vae"]
    scenes, images = check_set(64, load_concepts(), size=32)
    tripped = codec_roundtrip(load_codec(), images)
    assert tripped.shape == images.shape and tripped.dtype == np.uint8 and not np.array_equal(tripped, images)
    acc = evaluate(oracle, scenes, tripped)
    assert acc["concept"] >= 0.85 and acc["shapes"] >= 0.85, acc


def test_oracle_knows_the_current_concepts(oracle):
    # True: trained on today's drawings (caption-only YAML keys such as bare_captions do not count)
    concepts = load_concepts()
    assert oracle.check_leaves(concepts) is True
    from dataclasses import replace

    from lycobench.world.oracle import concepts_digest

    hatch = concepts["hatch"]
    recaptioned = {**concepts, "hatch": replace(hatch, spec={**hatch.spec, "bare_captions": 0.5})}
    repainted = {**concepts, "hatch": replace(hatch, spec={**hatch.spec, "paint": {"kind": "outline"}})}
    assert concepts_digest(recaptioned) == concepts_digest(concepts) != concepts_digest(repainted)


def test_oracle_accuracy_on_held_out_renders(oracle):
    scenes, images = check_set(300, load_concepts())
    acc = evaluate(oracle, scenes, images)
    assert all(v >= 0.97 for v in acc.values()), acc


def test_oracle_handles_any_resolution(oracle):
    scenes, images = check_set(40, load_concepts(), size=48)
    pred = oracle.predict(images)
    assert len(pred["shapes"]) == 40 and set(pred) >= {"count", "bg_colour", "concept", "leaf"}


def test_degradations_are_deterministic_and_change_images():
    _, images = check_set(8, load_concepts())
    for kind in DEGRADATIONS:
        a, b = degrade(images, kind, seed=1), degrade(images, kind, seed=1)
        assert a.shape == images.shape and a.dtype == np.uint8 and np.array_equal(a, b)
        assert np.abs(a.astype(int) - images).mean() > 0.3, kind


def test_oracle_check_cli(tmp_path):
    out = tmp_path / "check.json"
    code = main(["oracle-check", "--out", str(out), "--n", "150"])
    acc = json.loads(out.read_text(encoding="utf-8"))
    assert {"shapes", "colours", "count", "bg_colour", "pattern", "concept", "near_miss_rejected"} <= set(acc)
    assert code == (0 if all(v >= 0.98 for v in acc.values()) else 1)


def test_a_near_miss_is_a_figure_taken_apart_with_no_concept():
    """Oracle negatives: a character's or object's parts, scattered; labelled no
    concept, with the base-object heads undefined (the parts are no base objects)."""
    from lycobench.world.oracle_train import near_miss
    from lycobench.world.scenes import NEAR_MISS, labels

    concepts = load_concepts()
    rng = np.random.default_rng(5)
    for _ in range(40):
        s = near_miss(concepts, rng)
        lab = labels(s)
        assert s.category == NEAR_MISS and lab["concept"] == "none" and lab["leaf"] == "none"
        assert lab["shapes"] is None and lab["count"] is None and lab["bg_colour"] is not None
        assert len(s.figure) >= 2 and not s.objects


def test_oracle_rejects_near_misses(oracle):
    """Fragments in a concept's colours are not the concept: the oracle calls most held-out near misses
    no concept (measured in the manifest, clean and after the autoencoder round trip)."""
    from lycobench.world.oracle_train import near_miss_rejected

    manifest = json.loads(MANIFEST.read_text(encoding="utf-8"))
    stated = manifest["accuracy"]["near_miss_rejected"]
    assert stated["clean"] >= 0.9 and stated["vae"] >= 0.85, stated
    assert near_miss_rejected(oracle, 200, load_concepts())["clean"] >= 0.9
