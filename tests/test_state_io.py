"""The resumable-state file: safetensors + JSON, never a pickle."""

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from lycobench.state_io import FORMAT, StateFileError, load_state, save_state


class WritesAFile:
    """Unpickling this object creates ``path``."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def optimiser_state():
    p = torch.nn.Parameter(torch.randn(3, 2))
    opt = torch.optim.AdamW([p], lr=1e-3, betas=(0.9, 0.99))
    p.grad = torch.ones_like(p)
    opt.step()
    return opt.state_dict()


def test_a_training_state_round_trips_with_its_types(tmp_path):
    gen = torch.Generator().manual_seed(3)
    rng = np.random.default_rng(5)
    state = {
        "key": "k",
        "saved": {2: Path("/runs/a/step-2.safetensors")},
        "log": [(1, 1, 0.5, 1e-4, float("inf"), None)],
        "optimizer": optimiser_state(),
        "generator": gen.get_state(),
        "python_random": random.getstate(),
        "numpy": rng.bit_generator.state,  # a 128-bit integer inside
        "array": np.arange(6, dtype=np.uint32).reshape(2, 3),
        "half": torch.ones(2, dtype=torch.bfloat16),
    }
    back = load_state(save_state(tmp_path / "s.safetensors", state))
    assert back["saved"] == {2: Path("/runs/a/step-2.safetensors")}
    assert back["log"] == [(1, 1, 0.5, 1e-4, float("inf"), None)]
    assert back["python_random"] == state["python_random"]
    assert back["numpy"] == state["numpy"]
    assert back["array"].dtype == np.uint32 and (back["array"] == state["array"]).all()
    assert back["half"].dtype == torch.bfloat16
    assert torch.equal(back["generator"], state["generator"])
    opt = back["optimizer"]
    assert opt["param_groups"] == state["optimizer"]["param_groups"]
    for k, v in state["optimizer"]["state"][0].items():
        assert torch.equal(opt["state"][0][k], v)
    # the restored states drive the generators exactly as the originals
    gen2 = torch.Generator()
    gen2.set_state(back["generator"])
    assert torch.equal(torch.rand(4, generator=gen2), torch.rand(4, generator=gen))
    rng2 = np.random.default_rng()
    rng2.bit_generator.state = back["numpy"]
    assert rng2.random() == rng.random()


def test_a_pickle_is_refused_without_being_run(tmp_path):
    ran, path = tmp_path / "code-ran", tmp_path / "train_state.safetensors"
    torch.save({"key": "k", "payload": WritesAFile(ran)}, path)
    with pytest.raises(StateFileError) as e:
        load_state(path)
    assert not ran.exists()
    assert str(path) in str(e.value) and "delete" in str(e.value)


def test_a_safetensors_file_of_another_kind_is_refused(tmp_path):
    plain = tmp_path / "weights.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain))
    with pytest.raises(StateFileError, match="not a state of format"):
        load_state(plain)
    damaged = tmp_path / "damaged.safetensors"
    save_file(
        {}, str(damaged), metadata={"format": FORMAT, "tree": '{"x": {"__state__": "tensor", "name": "t9"}}'}
    )
    with pytest.raises(StateFileError, match="damaged"):
        load_state(damaged)


def test_an_object_without_a_safe_form_is_not_saved(tmp_path):
    with pytest.raises(TypeError, match="cannot hold a WritesAFile"):
        save_state(tmp_path / "s.safetensors", {"x": WritesAFile(tmp_path / "x")})
    assert not (tmp_path / "s.safetensors").exists()
