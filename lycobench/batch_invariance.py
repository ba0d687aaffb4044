"""CPU sampling that gives the same bits for an image whatever batch it is drawn in (``sampling``).

Sweeps draw images in batches whose make-up depends on what is cached and on the worker; results must not.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

# below this many rows the CPU matrix multiply may take another kernel (see below): 4 on the machines this
# was first measured on; up to 16 on an Intel Xeon with AVX-512, where the bound depends on the layer's
# width (e.g. 2 rows for 32 -> 128, 11 for 256 -> 1024, 16 for 1280 -> 1280)
MIN_GEMM_ROWS = 16
MIN_CONV_BATCH = 2  # a oneDNN convolution of one image takes another path than a batch (see below)


@contextlib.contextmanager
def cpu_batch_invariance(pipe) -> Iterator[None]:
    """Make CPU sampling give the same bits for an image whatever batch it is drawn in.

    Some CPU kernels of torch 2.x pick their algorithm from the batch size, so an image drawn alone and the
    same image drawn among others differ by about 1e-6 (enough to flip a uint8 level now and then). Found
    by comparing every module's output for a batch with its output image by image; handled here:

    - oneDNN convolutions: a k x k convolution of a single image takes another path than a batch of two or
      more, so a batch of one is padded with a zero image; a 1 x 1 convolution (a matrix multiply over
      batch x pixels) depends on the batch size, so it runs without oneDNN, on PyTorch's own path, which
      works image by image (NNPACK, which that path uses from batch 16, is switched off);
    - convolution and GroupNorm take other kernels for channels-last inputs, which diffusers' VAE produces
      after its attention block: their inputs are made contiguous;
    - a matrix multiply with few rows (the time embedding: one row per image, two under CFG) uses a
      small-matrix kernel: such inputs are padded with zero rows to ``MIN_GEMM_ROWS``.

    Padding is dropped from the outputs. Measured on the tiny model: without this, batch 1 and batch 4
    differ by up to 3e-6 after the VAE; with it they are identical (tests/test_generate.py). Not used on
    CUDA, where cuDNN and cuBLAS make their own per-shape choices.
    """
    hooks, pending = [], {}

    def contiguous(module, args):
        if args and torch.is_tensor(args[0]) and not args[0].is_contiguous():
            return (args[0].contiguous(), *args[1:])
        return None

    def pad_images(module, args):
        x = args[0].contiguous()
        if module.kernel_size == (1, 1):
            pending[id(module)] = torch.backends.mkldnn.enabled
            torch._C._set_mkldnn_enabled(False)  # the flags() context would also warn about TF32
            return (x, *args[1:])
        if x.dim() != 4 or x.shape[0] >= MIN_CONV_BATCH:
            return (x, *args[1:])
        pending[id(module)] = x.shape[0]
        return (torch.cat([x, x.new_zeros(MIN_CONV_BATCH - x.shape[0], *x.shape[1:])]), *args[1:])

    def pad_rows(module, args):
        x = args[0] if args else None
        if not torch.is_tensor(x) or x.dim() == 0 or x.numel() == 0:
            return None
        rows = x.numel() // x.shape[-1]
        if rows >= MIN_GEMM_ROWS:
            return None
        flat = x.reshape(rows, x.shape[-1])
        pending[id(module)] = (rows, tuple(x.shape[:-1]))
        return (torch.cat([flat, flat.new_zeros(MIN_GEMM_ROWS - rows, flat.shape[1])]), *args[1:])

    def unpad(module, args, out):
        info = pending.pop(id(module), None)
        if info is None:
            return None
        if isinstance(info, bool):  # a 1 x 1 convolution ran without oneDNN
            torch._C._set_mkldnn_enabled(info)
            return None
        if isinstance(info, int):  # images
            return out[:info]
        rows, lead = info
        return out[:rows].reshape(*lead, out.shape[-1])

    for part in (pipe.unet, pipe.vae, pipe.text_encoder):
        for m in part.modules():
            if isinstance(m, torch.nn.Conv2d):
                hooks += [m.register_forward_pre_hook(pad_images), m.register_forward_hook(unpad)]
            elif isinstance(m, torch.nn.GroupNorm):
                hooks.append(m.register_forward_pre_hook(contiguous))
            elif isinstance(m, torch.nn.Linear):
                hooks += [m.register_forward_pre_hook(pad_rows), m.register_forward_hook(unpad)]
    try:
        with torch.backends.nnpack.flags(enabled=False):
            yield
    finally:
        for h in hooks:
            h.remove()


def sampling(pipe, invariant: bool):
    """The context every image is drawn in."""
    return cpu_batch_invariance(pipe) if invariant else contextlib.nullcontext()
