"""A new user's path end to end through the CLI, on a concept folder drawn here (not a world concept, a shape
the world has none of): validate -> run -> report -> status, then the adapter that run trained, evaluated with
adapter=external into a fresh results folder -> report -> status. No traceback anywhere; exit codes as the
README documents. The default study's model and encoders (the world's), with the smallest budget."""

import numpy as np
import pytest
from PIL import Image, ImageDraw

from conftest import lycobench

# the smallest run: 2 training steps, one checkpoint, 2 trigger images with 2 sampler steps
SMALL = [
    "train=smoke",
    "train.epochs=1",
    "train.checkpoint_epochs=[1]",
    "train.exposures_per_epoch=4",
    "generate=smoke",
    "generate.steps=2",
    "generate.prompt_types=[trigger]",
    "generate.images_per_type={trigger:2}",
]
BACKGROUNDS = [(255, 255, 255), (40, 90, 200), (30, 160, 60), (220, 220, 80)]


def draw_concept(folder):
    """An orange ring with a black dot in it: no world shape, so no class in the world oracle."""
    folder.mkdir(parents=True)
    (folder / "concept.yaml").write_text("name: zwx-ring\ncategory: object\ntrigger: zwx\nclass_word: ring\n")
    for i, bg in enumerate(BACKGROUNDS):
        im = Image.new("RGB", (32, 32), bg)
        d = ImageDraw.Draw(im)
        d.ellipse([5 + i, 5, 26 + i - 2, 26], outline=(255, 140, 0), width=4)
        d.rectangle([14, 14, 17, 17], fill=(0, 0, 0))
        im.save(folder / f"{i:02d}.png")
        (folder / f"{i:02d}.txt").write_text(f"zwx ring, background {i}\n")


def ok(r, what):
    assert "Traceback" not in r.stderr, f"{what}: {r.stderr[-3000:]}"
    assert r.returncode == 0, f"{what} exited {r.returncode}: {r.stderr[-3000:]}"
    return r


def pixels(folder):
    return {
        p.relative_to(folder).as_posix(): np.asarray(Image.open(p)) for p in sorted(folder.rglob("*.png"))
    }


@pytest.fixture(scope="module")
def walked(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("user")
    concept, results = tmp / "zwx-ring", tmp / "results"
    draw_concept(concept)
    ok(lycobench("validate", str(concept)), "validate")
    run = ok(lycobench("run", f"concepts=[{concept}]", f"results_dir={results}", *SMALL), "run")
    return dict(tmp=tmp, concept=concept, results=results, run=run)


def test_run_says_where_its_results_land_and_report_and_status_read_them(walked):
    results, run = walked["results"], walked["run"]
    runs = list((results / "quick" / "runs").glob("custom-lora-*/seed=23"))  # the default sweep's name
    assert len(runs) == 1 and (runs[0] / "metrics.parquet").is_file()
    assert f"results: {runs[0]}" in run.stdout and f"report {results / 'quick'}" in run.stdout
    ok(lycobench("report", str(results / "quick")), "report")
    page = (results / "quick" / "report" / "index.html").read_text()
    assert "No oracle for this concept: zwx-ring" in page and "no checkpoint learned" not in page
    status = ok(lycobench("status", str(results / "quick")), "status")
    assert "1 done" in status.stdout


def test_the_trained_adapter_evaluated_as_an_external_file_reproduces_its_images(walked):
    results = walked["results"]
    run_dir = next((results / "quick" / "runs").glob("custom-lora-*/seed=23"))
    (checkpoint,) = (run_dir / "checkpoints").glob("step-*.safetensors")  # a path with '=' in it, unquoted
    fresh = walked["tmp"] / "fresh"
    args = ["adapter=external", f"adapter.path={checkpoint}", f"concepts=[{walked['concept']}]", *SMALL]
    ok(lycobench("run", f"results_dir={fresh}", *args), "run adapter=external")
    ext = next((fresh / "quick" / "runs").glob("custom-external-*/seed=23"))
    mine, theirs = pixels(ext / "images"), pixels(run_dir / "images")
    assert mine.keys() == theirs.keys() and all((mine[k] == theirs[k]).all() for k in mine)
    ok(lycobench("report", str(fresh / "quick")), "report of one checkpoint")  # was: all NA values
    assert "1 done" in ok(lycobench("status", str(fresh / "quick")), "status").stdout
