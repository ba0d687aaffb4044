"""Where a stage runs and with which numerics: device choice, mixed precision, channels_last, torch.compile.

The CPU path is the reference (float32, fixed thread count, bit-reproducible). On CUDA the usual speed-ups
apply: half-precision autocast for training (adapters keep float32 master weights), channels_last memory
layout for the UNet's convolutions and, optionally, ``torch.compile``. With several GPUs and a parallel
launcher, ``auto`` spreads workers over them (one GPU each, round robin by Hydra job number); with one GPU,
every worker shares it.
"""

from __future__ import annotations

import contextlib

import torch

AMP_CHOICES = ("auto", "no", "fp16", "bf16")


def _job_number() -> int:
    """Hydra's job number within a multirun (0 outside one)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return int(HydraConfig.get().job.get("num", 0) or 0)
    except (ImportError, ValueError):
        return 0


def resolve_device(device: str | None, key: str = "generate.device") -> str:
    """``auto``: CUDA when available (``cuda:<job number mod GPU count>`` with several GPUs), else the CPU."""
    if device in (None, "auto"):
        if not torch.cuda.is_available():
            return "cpu"
        n = torch.cuda.device_count()
        return "cuda" if n == 1 else f"cuda:{_job_number() % n}"
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"{key}={device!r} but CUDA is not available: use {key}=auto or cpu")
    return str(device)


def resolve_amp(mixed_precision: str | None, device: str, key: str = "train.mixed_precision") -> str:
    """``auto``: bf16 on GPUs that support it, else fp16, on CUDA; ``no`` on the CPU (the reference path)."""
    choice = "auto" if mixed_precision in (None, "") else str(mixed_precision)
    if choice not in AMP_CHOICES:
        raise ValueError(f"{key}={choice!r}: choose one of {', '.join(AMP_CHOICES)}")
    if not device.startswith("cuda"):
        if choice in ("fp16", "bf16"):
            raise ValueError(
                f"{key}={choice!r} needs a CUDA device; the CPU trains in float32 (use auto or no)"
            )
        return "no"
    if choice == "auto":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return choice


def autocast(amp: str, device: str):
    """The forward pass's precision context (a no-op for ``no``)."""
    if amp == "no":
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def grad_scaler(amp: str):
    """fp16 needs loss scaling against underflowing gradients; bf16 and float32 do not."""
    return torch.amp.GradScaler("cuda", enabled=amp == "fp16")


def speed_up_unet(unet, device: str, channels_last: bool = True, compile_unet: bool = False):
    """CUDA only: channels_last layout (faster convolutions with cuDNN) and optional torch.compile."""
    if not device.startswith("cuda"):
        return unet
    if channels_last:
        unet.to(memory_format=torch.channels_last)
    if compile_unet:
        # the first call compiles (minutes for SD 1.5); worth it only for long runs
        unet.forward = torch.compile(unet.forward)
    return unet


ACCEL_KEYS = ("device", "mixed_precision", "compile")


def numerics_identity(section: dict, stage: str) -> dict:
    """A stage config as it enters a result's key: the acceleration switches count only where they act.

    On the CPU (the reference path) ``device``, ``mixed_precision`` and ``compile`` change nothing, so they
    are left out and results made before these switches existed stay valid; on CUDA their resolved values
    and the GPU's name are part of the key (half precision and compiled kernels change the bits)."""
    out = {k: v for k, v in section.items() if k not in ACCEL_KEYS or (stage == "generate" and k == "device")}
    device = resolve_device(section.get("device"), f"{stage}.device")
    if stage == "generate" and not device.startswith("cuda") and section.get("cpu_batch_invariant"):
        out.pop("batch_size", None)  # CPU images are the same bits whatever batch they are drawn in
    if device.startswith("cuda"):
        out["numerics"] = {
            "gpu": torch.cuda.get_device_name(torch.device(device)),
            "compile": bool(section.get("compile", False)),
        }
        if stage == "train":
            out["numerics"]["mixed_precision"] = resolve_amp(section.get("mixed_precision"), device)
    return out
