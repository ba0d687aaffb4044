"""The command line: help for every command, clear errors before any compute."""

import pytest

from conftest import lycobench


@pytest.mark.parametrize("command", ["sweep", "run", "report"])
def test_help(command):
    r = lycobench(command, "--help")
    assert r.returncode == 0
    assert f"python -m lycobench {command}" in r.stdout


def test_sweep_help_lists_groups_and_options():
    out = lycobench("sweep", "--help").stdout
    for text in (
        "sweep=<name>",
        "results_dir=<path>",
        "smoke",
        "quick",
        "adapter",
        "loha",
        "hydra/launcher=local_parallel",  # the launcher preset the configs use, by its name
        "hydra/launcher=slurm_gpu",
    ):
        assert text in out
    assert "hydra/launcher=joblib" not in out


def test_top_level_usage():
    r = lycobench("--help")
    assert r.returncode == 0 and "sweep" in r.stdout and "report" in r.stdout
    assert lycobench("bogus").returncode == 2


def test_bad_concept_fails_before_any_compute(tmp_path):
    r = lycobench("sweep", "sweep=smoke", f"results_dir={tmp_path}", f"concepts=[{tmp_path}/missing]")
    assert r.returncode == 2
    assert "no such folder" in r.stderr and "missing" in r.stderr
    assert not (tmp_path / "smoke").exists(), "nothing written before validation passes"


def test_report_of_a_non_sweep_folder(tmp_path):
    r = lycobench("report", str(tmp_path))
    assert r.returncode == 2 and "not a sweep folder" in r.stderr
