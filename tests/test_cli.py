"""The command line: help for every command, clear errors before any compute."""

import pytest

from conftest import ROOT, lycobench


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


def test_run_on_a_bad_concept_lists_the_problems_without_a_traceback(tmp_path):
    """`run` checks its inputs as `sweep` does: every problem, exit 2, nothing written, no traceback."""
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(ROOT / "concepts" / "examples" / "zq-star", bad)
    (bad / "00.txt").unlink()
    (bad / "01.txt").write_text("a photo of a toy\n")
    r = lycobench("run", "sweep=smoke", f"results_dir={tmp_path / 'r'}", f"concepts=[{bad}]")
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and "2 problem(s)" in r.stderr
    assert f"{bad / '00'}.*: image without caption" in r.stderr and f"{bad / '01.txt'}" in r.stderr
    missing = tmp_path / "x" / "seed=1" / "a.safetensors"  # '=' in the path: quoted for Hydra
    r = lycobench(
        "run", "sweep=smoke", f"results_dir={tmp_path / 'r'}", "adapter=external", f"adapter.path={missing}"
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr and "needs an existing .safetensors" in r.stderr
    assert not (tmp_path / "r").exists()


def test_run_refusing_an_adapter_file_records_cause_data_and_prints_one_line(tmp_path):
    """A NaN adapter is refused before any image: FAILED says cause data and the key, `run` prints that line
    (no traceback) and exits 1, `status` shows it."""
    from omegaconf import OmegaConf
    from safetensors.torch import save_file

    from lycobench import adapters
    from lycobench.config import compose
    from lycobench.models import load_pipeline

    cfg = compose(["sweep=smoke"])
    pipe = load_pipeline(cfg.model, tmp_path / "cache")
    net = adapters.attach(
        pipe, OmegaConf.to_container(cfg.adapter), OmegaConf.to_container(cfg.target), True, 0
    )
    sd = {k: v.detach().clone() for k, v in net.state_dict().items()}
    key = sorted(k for k in sd if k.endswith("lora_up.weight"))[0]
    sd[key][0] = float("nan")
    save_file(sd, str(tmp_path / "nan.safetensors"))
    r = lycobench(
        "run",
        "sweep=smoke",
        f"results_dir={tmp_path / 'r'}",
        "adapter=external",
        f"adapter.path={tmp_path / 'nan.safetensors'}",
    )
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert (
        f"lycobench: error: {tmp_path / 'nan.safetensors'}: 1 tensor(s) hold NaN" in r.stderr
        and key in r.stderr
    )
    (failed,) = (tmp_path / "r" / "smoke" / "runs").glob("custom-external-*/seed=23/FAILED")
    assert failed.read_text().startswith("cause: data\nerror: ") and not (failed.parent / "images").exists()
    status = lycobench("status", str(tmp_path / "r" / "smoke"))
    assert (
        status.returncode == 1
        and f"data: {tmp_path / 'nan.safetensors'}: 1 tensor(s) hold NaN" in status.stdout
    )
