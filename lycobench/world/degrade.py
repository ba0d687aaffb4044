"""Image degradations that imitate what a small generator produces: blur, noise, colour shifts, resampling.

Two uses: fixed, named degradations of uint8 images for reporting how the oracle degrades, and random
augmentation of float batches while training it (so that soft, colour-shifted generations still read right).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def _to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    return (x.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
    """Blur [N,3,H,W] with a per-image (or shared) sigma in pixels; sigma 0 leaves an image unchanged."""
    n = x.shape[0]
    sigma = torch.as_tensor(sigma, dtype=x.dtype).expand(n).clamp_min(1e-3)
    radius = max(1, int(torch.ceil(3 * sigma.max()).item()))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    k = torch.exp(-0.5 * (t[None, :] / sigma[:, None]) ** 2)
    k = k / k.sum(1, keepdim=True)  # [N, K]
    c = x.shape[1]
    # separable, per-image kernels through grouped convolution
    xs = x.reshape(1, n * c, *x.shape[2:])
    kh = k.repeat_interleave(c, 0)[:, None, None, :]
    kv = k.repeat_interleave(c, 0)[:, None, :, None]
    xs = F.conv2d(F.pad(xs, (radius, radius, 0, 0), mode="replicate"), kh, groups=n * c)
    xs = F.conv2d(F.pad(xs, (0, 0, radius, radius), mode="replicate"), kv, groups=n * c)
    return xs.reshape_as(x)


def resample(x: torch.Tensor, through: int) -> torch.Tensor:
    """Down to ``through`` pixels (area) and back up (bilinear): the softness of a low-resolution generator."""
    size = x.shape[-1]
    small = F.interpolate(x, size=(through, through), mode="area")
    return F.interpolate(small, size=(size, size), mode="bilinear", align_corners=False)


def colour_shift(x: torch.Tensor, gain, offset, saturation) -> torch.Tensor:
    """Per-channel gain and offset, then a saturation change about the grey value."""
    gain = torch.as_tensor(gain, dtype=x.dtype).reshape(-1, 3, 1, 1)
    offset = torch.as_tensor(offset, dtype=x.dtype).reshape(-1, 3, 1, 1)
    sat = torch.as_tensor(saturation, dtype=x.dtype).reshape(-1, 1, 1, 1)
    y = x * gain + offset
    grey = y.mean(1, keepdim=True)
    return grey + (y - grey) * sat


# Named degradations at the image's own resolution (64 px for the checks), for the report.
DEGRADATIONS = ("blur", "noise", "colour", "resample32", "resample16", "jpeg", "combined")


def degrade(images: np.ndarray, kind: str, seed: int = 0) -> np.ndarray:
    """A fixed, named degradation of uint8 images [N,H,W,3]; deterministic given ``seed``."""
    if kind == "jpeg":
        return _jpeg(images, 40)
    g = torch.Generator().manual_seed(seed)
    x = _to_tensor(images)
    scale = images.shape[1] / 64.0  # strengths are defined for 64-px images
    if kind == "blur":
        x = gaussian_blur(x, 1.2 * scale)
    elif kind == "noise":
        x = x + 0.06 * torch.randn(x.shape, generator=g)
    elif kind == "colour":
        x = colour_shift(x, [1.1, 0.92, 0.95], [-0.03, 0.02, 0.04], 0.8)
    elif kind == "resample32":
        x = resample(x, max(4, round(32 * scale)))
    elif kind == "resample16":
        x = resample(x, max(4, round(16 * scale)))
    elif kind == "combined":  # what a soft, slightly off generator might give
        x = resample(x, max(4, round(32 * scale)))
        x = gaussian_blur(x, 0.8 * scale)
        x = colour_shift(x, [1.06, 0.95, 0.97], [-0.02, 0.01, 0.03], 0.88)
        x = x + 0.03 * torch.randn(x.shape, generator=g)
    else:
        raise KeyError(f"unknown degradation {kind!r}; known: {', '.join(DEGRADATIONS)}")
    return _to_uint8(x)


def _jpeg(images: np.ndarray, quality: int) -> np.ndarray:
    import io

    from PIL import Image

    out = []
    for im in images:
        buf = io.BytesIO()
        Image.fromarray(im).save(buf, format="JPEG", quality=quality)
        out.append(np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")))
    return np.stack(out)


def augment(x: torch.Tensor, g: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Random degradations of a float batch [N,3,H,W] in [0,1]; each image is degraded with probability p."""
    n = x.shape[0]
    on = (torch.rand(n, generator=g) < p).float()

    def pick(prob):  # which of the degraded images get this degradation
        return on * (torch.rand(n, generator=g) < prob).float()

    # resampling through a lower resolution, for a random half
    m = pick(0.5)[:, None, None, None]
    through = int(torch.randint(12, 25, (1,), generator=g))
    x = m * resample(x, through) + (1 - m) * x
    sigma = pick(0.5) * torch.rand(n, generator=g) * 1.2
    x = gaussian_blur(x, sigma)
    m = pick(0.6)
    gain = 1 + m[:, None] * (torch.rand(n, 3, generator=g) - 0.5) * 0.26
    offset = m[:, None] * (torch.rand(n, 3, generator=g) - 0.5) * 0.12
    sat = 1 + m * (torch.rand(n, generator=g) - 0.5) * 0.5
    x = colour_shift(x, gain, offset, sat)
    noise = pick(0.5) * torch.rand(n, generator=g) * 0.07
    x = x + noise[:, None, None, None] * torch.randn(x.shape, generator=g)
    return x.clamp(0, 1)
