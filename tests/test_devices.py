"""Device and numerics choices: the CPU reference path, the CUDA switches, and what enters a result's key."""

import pytest
import torch

from lycobench import devices as D


def test_cpu_is_the_reference_path_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert D.resolve_device("auto") == "cpu"
    assert D.resolve_device(None) == "cpu"
    with pytest.raises(RuntimeError, match=r"train.device='cuda'.*use train.device=auto or cpu"):
        D.resolve_device("cuda", "train.device")
    assert D.resolve_amp("auto", "cpu") == "no"
    with pytest.raises(ValueError, match="needs a CUDA device"):
        D.resolve_amp("bf16", "cpu")
    with pytest.raises(ValueError, match="choose one of auto, no, fp16, bf16"):
        D.resolve_amp("half", "cpu")


def test_auto_spreads_parallel_workers_over_several_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    for job, expected in [(0, "cuda:0"), (3, "cuda:3"), (6, "cuda:2")]:
        monkeypatch.setattr(D, "_job_number", lambda job=job: job)
        assert D.resolve_device("auto") == expected
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert D.resolve_device("auto") == "cuda"  # one GPU: every worker shares it


def test_amp_auto_prefers_bf16_where_supported(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert D.resolve_amp("auto", "cuda") == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert D.resolve_amp("auto", "cuda:1") == "fp16"
    assert D.resolve_amp("no", "cuda") == "no"


def test_acceleration_switches_do_not_change_cpu_keys(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    train = {"epochs": 10, "lr_scale": 10}
    with_switches = {**train, "device": "auto", "mixed_precision": "auto", "compile": False}
    assert D.numerics_identity(with_switches, "train") == train
    gen = {"steps": 10, "device": "auto", "dtype": "auto"}
    assert (
        D.numerics_identity({**gen, "compile": False}, "generate") == gen
    )  # generate.device was always keyed


def test_cuda_keys_record_the_numerics(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d: "Fake GPU")
    key = D.numerics_identity({"epochs": 10, "device": "auto", "compile": True}, "train")
    assert key == {"epochs": 10, "numerics": {"gpu": "Fake GPU", "compile": True, "mixed_precision": "bf16"}}


def test_autocast_and_scaler_are_inert_on_the_reference_path():
    with D.autocast("no", "cpu"):
        assert (torch.ones(2) @ torch.ones(2)).dtype == torch.float32
    assert not D.grad_scaler("no").is_enabled()
    unet = torch.nn.Conv2d(2, 2, 1)
    assert D.speed_up_unet(unet, "cpu", compile_unet=True) is unet
    assert unet.weight.is_contiguous()
