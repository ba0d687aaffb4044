"""Stable Diffusion 1.5's pipeline parts that every model of lycobench shares: the DDIM schedule, the CLIP
text ids, the assembly of a ``StableDiffusionPipeline`` from its models (the tiny test model, the
embedded world's pretraining), and the loading of a saved one. A ground module: the world's pretraining and ``models`` both build on it."""

from __future__ import annotations

SCHEDULER_KW = dict(
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    steps_offset=1,
    clip_sample=False,
    set_alpha_to_one=False,
)

# The real CLIP tokenizer's vocabulary and special tokens, for text encoders built from scratch.
CLIP_TEXT_IDS = dict(
    vocab_size=49408, max_position_embeddings=77, bos_token_id=49406, eos_token_id=49407, pad_token_id=49407
)


def assemble_pipeline(vae, text_encoder, unet):
    """A ``StableDiffusionPipeline`` from its models: the real CLIP tokenizer, SD 1.5's DDIM schedule."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    from .tokenizer import clip_tokenizer

    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=clip_tokenizer(),
        unet=unet,
        scheduler=DDIMScheduler(**SCHEDULER_KW),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def load_pipeline(folder):
    """A saved diffusers folder as a float32 ``StableDiffusionPipeline``, offline, progress bar off."""
    import torch
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(
        str(folder), safety_checker=None, requires_safety_checker=False, local_files_only=True,
        torch_dtype=torch.float32,
    )  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    return pipe
