"""Model loading: one path for every model (a diffusers folder through from_pretrained, offline), the error
when weights are absent, precision and attention settings."""

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from lycobench.config import compose
from lycobench.generate import draw, sampler_settings
from lycobench.models import (
    ModelNotFound,
    _save_atomically,
    build_tiny_pipeline,
    load_pipeline,
    model_identity,
    resolve_dtype,
    resolve_pretrained,
)


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_missing_weights_say_where_lycobench_looked_and_how_to_provide_them(tmp_path):
    folder = tmp_path / "stable-diffusion-v1-5"
    for spec in (str(folder), "someone/a-model-that-is-not-cached"):
        with pytest.raises(ModelNotFound) as e:
            resolve_pretrained(spec)
        text = str(e.value)
        assert repr(spec) in text and "model_index.json" in text and "never downloads" in text
        assert "model.path=/path/to/folder" in text and f"huggingface-cli download {spec}" in text
    # the sweep's own config fails the same way, before any work
    cfg = compose(["sweep=smoke", "model=sd15", f"model.path={folder}"])
    with pytest.raises(ModelNotFound, match="model.path="):
        model_identity(cfg.model)


def test_a_saved_folder_loads_through_the_pretrained_path_and_draws_the_same_images(tmp_path):
    tiny = compose(["sweep=smoke"]).model
    folder = tmp_path / "my-sd"
    _save_atomically(build_tiny_pipeline(OmegaConf.to_container(tiny)), folder)
    pretrained = compose(["sweep=smoke", "model=sd15", f"model.path={folder}", "model.resolution=32"]).model
    identity = model_identity(pretrained)
    assert (
        identity["kind"] == "pretrained" and "unet/diffusion_pytorch_model.safetensors" in identity["weights"]
    )

    settings = sampler_settings(compose(["sweep=smoke", "generate.steps=2"]).generate, 32)
    a = draw(load_pipeline(tiny, tmp_path / "cache"), ["zqx toy", "a red star"], [1000, 1001], settings)
    b = draw(
        load_pipeline(pretrained, tmp_path / "unused"), ["zqx toy", "a red star"], [1000, 1001], settings
    )
    assert a.shape == (2, 32, 32, 3) and np.array_equal(a, b)


def test_precision_follows_the_device():
    assert resolve_dtype("auto", "cpu") == "float32"
    assert resolve_dtype(None, "cuda") == "float16"
    assert resolve_dtype("bfloat16", "cuda:0") == "bfloat16"
    with pytest.raises(ValueError, match="needs a CUDA device"):
        resolve_dtype("float16", "cpu")
    with pytest.raises(ValueError, match="choose auto or one of"):
        resolve_dtype("int8", "cuda")


def test_pipelines_use_pytorch_sdpa_attention(tmp_path):
    from diffusers.models.attention_processor import AttnProcessor2_0

    pipe = load_pipeline(compose(["sweep=smoke"]).model, tmp_path / "cache")
    assert pipe.unet.dtype == torch.float32
    for part in (pipe.unet, pipe.vae):
        assert all(isinstance(p, AttnProcessor2_0) for p in part.attn_processors.values())


def test_the_template_setting_is_not_part_of_the_model_identity():
    a = model_identity(compose(["model=tiny"]).model)
    b = model_identity(compose(["model=tiny", "model.templates=paper"]).model)
    assert a == b and "templates" not in a
