"""LyCORIS glue for diffusers: explicit target lists, network creation, save and strict reload.

LyCORIS keeps its preset in class attributes that leak into every later network of the process, and its
named presets are ignored by the generic wrapper. So every network here is created right after a
*complete* preset dict is applied, and the target lists come from conf/target/*.yaml, never from
LyCORIS's preset names.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

PREFIXES = {"unet": "lora_unet", "text_encoder": "lora_te"}  # kohya-style key prefixes


@dataclass
class Adapter:
    """The LyCORIS networks wrapping a pipeline's UNet and (optionally) its text encoder."""

    networks: dict  # part name -> LycorisNetwork

    def parameters(self):
        return [p for net in self.networks.values() for p in net.parameters()]

    def state_dict(self) -> dict[str, torch.Tensor]:
        out = {}
        for net in self.networks.values():
            out.update(net.state_dict())
        return out

    def set_multiplier(self, m: float) -> None:
        for net in self.networks.values():
            net.set_multiplier(m)

    def train(self, mode: bool = True) -> None:
        for net in self.networks.values():
            net.train(mode)


def _preset(part_cfg: dict, prefix: str) -> dict:
    return {
        "enable_conv": bool(part_cfg.get("enable_conv", False)),
        "target_module": list(part_cfg.get("target_module", [])),
        "target_name": list(part_cfg.get("target_name", [])),
        "module_algo_map": {},
        "name_algo_map": {},
        "exclude_name": [],
        "use_fnmatch": False,
        "lora_prefix": prefix,
    }


def create_network(module: torch.nn.Module, part: str, adapter_cfg: dict, target_cfg: dict):
    from lycoris import LycorisNetwork

    LycorisNetwork.apply_preset(_preset(target_cfg[part], PREFIXES[part]))
    a = adapter_cfg
    dim = int(a.get("dim") or 1)
    alpha = float(a.get("alpha") or dim)
    conv_dim = int(a.get("conv_dim") or dim)
    conv_alpha = float(a.get("conv_alpha") or alpha)
    net = LycorisNetwork(
        module,
        multiplier=1.0,
        lora_dim=dim,
        conv_lora_dim=conv_dim,
        alpha=alpha,
        conv_alpha=conv_alpha,
        network_module=a["algo"],
        train_norm=bool(target_cfg.get("train_norm", False)),
        factor=int(a.get("factor") or -1),
        warn_on_unmatched=False,
    )
    if not net.loras:
        raise ValueError(
            f"target {target_cfg.get('name')!r} wraps no module of the {part}: check conf/target/"
        )
    return net


def attach(pipe, adapter_cfg: dict, target_cfg: dict, train_text_encoder: bool, seed: int) -> Adapter:
    """Create (seeded) and apply the adapter networks to the pipeline's UNet and text encoder."""
    torch.manual_seed(seed)
    nets = {"unet": create_network(pipe.unet, "unet", adapter_cfg, target_cfg)}
    if train_text_encoder:
        nets["text_encoder"] = create_network(pipe.text_encoder, "text_encoder", adapter_cfg, target_cfg)
    for net in nets.values():
        net.apply_to()
    return Adapter(nets)


def save(adapter: Adapter, path: Path, metadata: dict[str, str]) -> None:
    """fp32 safetensors with string metadata, written atomically (LyCORIS writes in place)."""
    from safetensors.torch import save_file

    from .store import atomic_write_with

    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in adapter.state_dict().items()}
    atomic_write_with(
        path, lambda tmp: save_file(tensors, str(tmp), metadata={k: str(v) for k, v in metadata.items()})
    )


def load(pipe, path: Path, adapter_cfg: dict, target_cfg: dict, multiplier: float = 1.0) -> Adapter:
    """Rebuild the networks from the config, apply them, and load the weights strictly."""
    sd = read_weights(path)
    parts = {p for p, pre in PREFIXES.items() if any(k.startswith(pre + "_") for k in sd)}
    adapter = attach(pipe, adapter_cfg, target_cfg, train_text_encoder="text_encoder" in parts, seed=0)
    load_weights(adapter, path, sd)
    adapter.set_multiplier(multiplier)
    return adapter


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: adapters are loaded only from .safetensors (pickles can run code)")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{path}: truncated or not a safetensors file ({e}); delete it and rerun") from None


def load_weights(adapter: Adapter, path: Path, sd: dict | None = None) -> None:
    """Load a checkpoint into existing networks; any missing or unexpected key is an error."""
    sd = read_weights(path) if sd is None else sd
    used = 0
    for part, net in adapter.networks.items():
        pre = PREFIXES[part] + "_"
        own = {k: v for k, v in sd.items() if k.startswith(pre)}
        missing, unexpected = net.load_state_dict(own, strict=False)
        if missing or unexpected:
            raise ValueError(
                f"{path}: adapter keys do not match the {part} ({len(missing)} missing, {len(unexpected)} unexpected)"
            )
        used += len(own)
    if used != len(sd):
        raise ValueError(f"{path}: {len(sd) - used} tensors belong to no network of this adapter")
