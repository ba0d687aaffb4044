"""benchmarks/bench.py: the Markdown tables (null baselines, targets) and the sweep + rerun cases on the
smoke sweep through the real CLI."""

from __future__ import annotations

import importlib.util
import json

import pytest

from lycobench.config import PROJECT_ROOT


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench", PROJECT_ROOT / "benchmarks" / "bench.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MACHINE = {
    "date": "2026-11-25 10:00 UTC",
    "platform": "Linux",
    "cpus": 2,
    "torch": "2",
    "torch_threads": 1,
    "load_average": [0.5, 0.5, 0.5],
}


def test_markdown_prints_a_null_baseline_as_a_dash_and_lists_the_targets(bench):
    results = {
        "generate": {
            **bench._ratio(6.0, 2.0, "images/s"),
            "variants": {"invariance_off": bench._ratio(7.0, 2.0, "images/s")},
            "machine": MACHINE,
        },
        "sweep": {
            **bench._ratio(250.0, None, "s"),
            "targets": {"quick sweep, wall time": bench._target(250.0, 300, "s")},
            "setting": "sweep=quick",
            "machine": MACHINE,
        },
    }
    assert results["sweep"]["baseline"] is None and results["sweep"]["ratio"] is None
    table = bench.markdown(results)
    assert "| generate | 6.0 | 2.0 | 3.0x | images/s |" in table
    assert "| generate (invariance_off) | 7.0 | 2.0 | 3.5x | images/s |" in table
    assert "| sweep | 250.0 | — | — | s |" in table
    assert "| quick sweep, wall time: <= 300 s | 250.0 | yes |" in table
    assert "None" not in table and "null" not in table
    assert "sweep: sweep=quick; 2026-11-25 10:00 UTC, Linux, 2 CPUs" in table


@pytest.mark.slow
def test_sweep_and_rerun_share_one_first_run_on_the_smoke_sweep(bench, tmp_path):
    out = tmp_path / "bench.json"
    argv = ["--case", "sweep", "--case", "rerun", "--sweep", "smoke", "--repeats", "1", "--out", str(out)]
    assert bench.main(argv) == 0
    results = json.loads(out.read_text())
    assert set(results) == {"sweep-smoke", "rerun-smoke"}
    sweep, rerun = results["sweep-smoke"], results["rerun-smoke"]
    for r in (sweep, rerun):
        assert {"lycobench", "baseline", "ratio", "unit", "machine", "targets"} <= set(r)
        assert r["unit"] == "s" and all(isinstance(t["met"], bool) for t in r["targets"].values())
    assert sweep["baseline"] is None and sweep["ratio"] is None
    assert 0 < sweep["peak_memory_gb"] == max(sweep["peak_tree_rss_gb"], sweep["max_process_rss_gb"])
    assert rerun["baseline"] == sweep["lycobench"], "rerun is measured against the sweep case's own run"
    assert 0 < rerun["lycobench"] < sweep["lycobench"]
    assert rerun["ratio"] == pytest.approx(sweep["lycobench"] / rerun["lycobench"], rel=1e-2)
    assert out.with_suffix(".md").read_text().count("| rerun-smoke |") == 1


def test_keep_refuses_a_results_dir_that_already_holds_the_sweep(bench, tmp_path, capsys):
    """A first run into a finished sweep folder would time a rerun: refused before any work."""
    (tmp_path / "smoke").mkdir()
    argv = ["--case", "sweep", "--sweep", "smoke", "--keep", str(tmp_path), "--out", str(tmp_path / "b.json")]
    with pytest.raises(SystemExit) as e:
        bench.main(argv)
    assert e.value.code == 2 and f"{tmp_path / 'smoke'} exists" in capsys.readouterr().err
    assert not (tmp_path / "b.json").exists()


def test_merge_adds_cases_to_earlier_results_and_keeps_their_own_provenance(bench, tmp_path, monkeypatch):
    out = tmp_path / "bench.json"
    monkeypatch.setitem(bench.CASES, "one", lambda: bench._ratio(2.0, 1.0, "x/s"))
    monkeypatch.setitem(bench.CASES, "two", lambda: bench._ratio(3.0, None, "s"))
    assert bench.main(["--case", "one", "--out", str(out)]) == 0
    first = json.loads(out.read_text())["one"]
    assert bench.main(["--case", "two", "--out", str(out), "--merge"]) == 0
    merged = json.loads(out.read_text())
    assert set(merged) == {"one", "two"} and merged["one"] == first and merged["one"]["machine"]["date"]
    table = out.with_suffix(".md").read_text()
    assert "| one | 2.0 | 1.0 | 2.0x | x/s |" in table and "| two | 3.0 | — | — | s |" in table
    assert bench.main(["--case", "two", "--out", str(out)]) == 0  # without --merge: only this run's cases
    assert set(json.loads(out.read_text())) == {"two"}


def test_the_metrics_case_names_concepts_the_world_has(bench):
    """The metrics case renders world concepts by name: an object and a style (every metric applies)."""
    from lycobench.world.concepts import load_concepts

    world = load_concepts()
    assert [world[n].category for n in bench.METRIC_CONCEPTS] == ["object", "style"]
