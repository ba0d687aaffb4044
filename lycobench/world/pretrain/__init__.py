"""Pretraining of the embedded world's models: a tiny Stable Diffusion and two metric encoders.

- ``data``: renders and captions of the base world (never a concept, never a held-out colour-shape pair)
- ``vae``, ``generator``: the autoencoder, then the UNet and its text encoder; ``run`` ties them into
  ``python -m lycobench world pretrain`` and writes the shipped diffusers folder
- ``clip_model``, ``dino``: the world CLIP (image-text, contrastive) and a self-supervised image encoder
- ``check``: ``python -m lycobench world check``, the quality measurement
"""

# The shipped base model's recipe, the defaults of ``world pretrain`` (candidates with other settings and
# why they were not shipped: docs/world-model.md).
# World v2: 4 latent channels, plain noise, a VAE of base scenes only (with 16 channels and offset noise the
# UNet never bound shape words to shapes).
# The decoder is then fine-tuned (encoder frozen) with a third of its images framed by a random border, so
# that a picture-level style (the frame concept) survives the round trip (docs/world-v2.md).
SHIPPED_RECIPE = {
    "vae_figures": 0.0, "latent_channels": 4, "noise_offset": 0.0, "partial_captions": 0.0,
    "decoder_borders": 0.33,
}  # fmt: skip
