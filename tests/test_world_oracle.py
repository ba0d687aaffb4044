"""The shipped oracle: small fp16 weights, a manifest with its measured accuracy, and accurate on held-out renders."""

import json

import numpy as np
import pytest
from safetensors.torch import load_file

from lycobench.world.cli import main
from lycobench.world.concepts import load_concepts
from lycobench.world.degrade import DEGRADATIONS, degrade
from lycobench.world.oracle import MANIFEST, WEIGHTS, Oracle, check_set, evaluate


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


def test_oracle_knows_the_current_concepts(oracle):
    oracle.check_leaves(load_concepts())


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
    assert {"shapes", "colours", "count", "bg_colour", "pattern", "style", "concept"} <= set(acc)
    assert code == (0 if all(v >= 0.98 for v in acc.values()) else 1)
