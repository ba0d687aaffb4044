"""LyCORIS glue for diffusers: explicit target lists, network creation, save, strict reload, merge.

LyCORIS keeps its preset in class attributes that leak into every later network of the process, and its
named presets are ignored by the generic wrapper. So every network here is created right after a
*complete* preset dict is applied, and the target lists come from conf/target/*.yaml, never from
LyCORIS's preset names. Bugs of lycoris-lora 4.1.3 are worked around in lycoris_fixes.py only.

Keys use kohya's prefixes (``lora_unet_``, ``lora_te_``), so a checkpoint is a LyCORIS/kohya file: LyCORIS's
own loaders (``create_lycoris_from_weights``, ``lycoris.kohya.create_network_from_weights``) read it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from . import lycoris_fixes

PREFIXES = {"unet": "lora_unet", "text_encoder": "lora_te"}  # kohya-style key prefixes
# lycobench's algorithm names (conf/adapter/<name>.yaml) are LyCORIS's; "full" is the paper's native FT.
ALGORITHMS = ("lora", "loha", "lokr", "full", "glora", "diag-oft", "boft", "ia3", "dylora")
DORA_ALGORITHMS = ("lora", "loha", "lokr")  # DoRA weight decomposition (adapter.dora_wd=true)
# Modules switched to LyCORIS's bypass forward (train/generate.bypass_forward): LoRA/LoCon only. Measured on the
# world model, one thread: LoRA steps 21% and sampling 14% faster; LoHa unchanged; LoKr 7-24% slower.
BYPASS_MODULES = ("LoConModule",)
# Optional per-algorithm settings passed through to LyCORIS's modules when a config sets them.
PASSTHROUGH = ("block_size", "constraint", "rescaled", "use_tucker", "decompose_both", "full_matrix")


@dataclass
class Adapter:
    """The LyCORIS networks wrapping a pipeline's UNet and (optionally) its text encoder."""

    networks: dict  # part name -> LycorisNetwork

    def parameters(self) -> list[torch.nn.Parameter]:
        return [p for net in self.networks.values() for p in net.parameters()]

    def modules(self) -> list:
        return [m for net in self.networks.values() for m in net.loras]

    def state_dict(self) -> dict[str, torch.Tensor]:
        out = {}
        for net in self.networks.values():
            out.update(lycoris_fixes.dylora_export(net, dict(net.state_dict())))
        return out

    def set_bypass(self, on: bool) -> int:
        """LyCORIS's bypass forward, y = W0 x + B(A x), on the BYPASS_MODULES (not with DoRA, whose weight
        norm needs the whole weight): the same function, computed without rebuilding every wrapped weight
        at every call. Returns the number of modules switched."""
        n = 0
        for m in self.modules():
            if type(m).__name__ in BYPASS_MODULES and not getattr(m, "wd", False):
                m.bypass_mode = bool(on)
                n += 1
        return n

    def set_multiplier(self, m: float) -> None:
        for net in self.networks.values():
            net.set_multiplier(m)

    def train(self, mode: bool = True) -> None:
        for net in self.networks.values():
            net.train(mode)

    def merge(self, multiplier: float = 1.0) -> None:
        """Fold the deltas into the base weights and restore the plain forwards (irreversible)."""
        lycoris_fixes.merge(self.networks.values(), multiplier)


def _preset(part_cfg: dict, prefix: str) -> dict:
    """A complete preset: every class-level key LyCORIS reads, so nothing leaks from an earlier network."""
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


def network_kwargs(adapter_cfg: dict) -> dict:
    """LycorisNetwork arguments for conf/adapter/<name>.yaml.

    dim 0 / alpha 0 follow LyCORIS: alpha 0 means alpha = dim (scale 1). ``conv_dim``/``conv_alpha`` 0 mean
    "same as the linear ones"; whether k x k convolutions are wrapped at all is the target's
    ``enable_conv`` (1x1 convolutions always get the linear dim, the paper's rule).
    """
    a = adapter_cfg
    algo = a.get("algo")
    if algo not in ALGORITHMS:
        raise ValueError(
            f"adapter.algo={algo!r} is not a trainable algorithm; choose one of {', '.join(ALGORITHMS)} "
            "(conf/adapter/<name>.yaml), or adapter=external adapter.path=<file> to evaluate an existing adapter"
        )
    dim = int(a.get("dim") or 1)  # full and ia3 ignore dim; LyCORIS wraps linear layers only if dim > 0
    alpha = float(a.get("alpha") or dim)
    kw = {
        "lora_dim": dim,
        "alpha": alpha,
        "conv_lora_dim": int(a.get("conv_dim") or dim),
        "conv_alpha": float(a.get("conv_alpha") or alpha),
        "network_module": algo,
        "factor": int(a.get("factor") or -1),
    }
    if a.get("dora_wd"):
        if algo not in DORA_ALGORITHMS:
            raise ValueError(
                f"adapter.dora_wd=true works with {', '.join(DORA_ALGORITHMS)} only, not {algo!r}: "
                f"drop the override or pick one of those adapters"
            )
        kw["weight_decompose"] = True
        kw["wd_on_out"] = bool(a.get("wd_on_output", True))
    for key in PASSTHROUGH:
        if a.get(key) is not None:
            kw[key] = a[key]
    return kw


def _lycoris():
    """Import LyCORIS, quietened: it logs every module it creates at INFO (its import sets that level)."""
    import lycoris

    logging.getLogger("LyCORIS").setLevel(logging.WARNING)
    return lycoris


def create_network(module: torch.nn.Module, part: str, adapter_cfg: dict, target_cfg: dict):
    LycorisNetwork = _lycoris().LycorisNetwork

    kw = network_kwargs(adapter_cfg)
    LycorisNetwork.apply_preset(_preset(target_cfg[part], PREFIXES[part]))
    net = LycorisNetwork(
        module,
        multiplier=1.0,
        train_norm=bool(target_cfg.get("train_norm", False)),
        warn_on_unmatched=False,
        **kw,
    )
    if not net.loras:
        raise ValueError(
            f"target {target_cfg.get('name')!r} wraps no module of the {part}: check conf/target/{target_cfg.get('name')}.yaml"
        )
    lycoris_fixes.dylora_full_rank(net)
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


def checkpoint_metadata(adapter_cfg: dict, target_cfg: dict, train_cfg: dict, step: int, epoch: int) -> dict:
    """safetensors metadata: lycobench's own keys plus kohya's ``ss_*`` keys that LoRA tools read."""
    args = {
        k: adapter_cfg.get(k) for k in ("algo", "factor", "conv_dim", "conv_alpha", "dora_wd", *PASSTHROUGH)
    }
    args = {k: v for k, v in args.items() if v is not None} | {"preset": target_cfg.get("name")}
    return {
        "lycobench.format": "1",
        "lycobench.algo": adapter_cfg.get("algo"),
        "lycobench.adapter": json.dumps(adapter_cfg, sort_keys=True, default=str),
        "lycobench.target": target_cfg.get("name"),
        "lycobench.train": json.dumps(train_cfg, sort_keys=True, default=str),
        "lycobench.step": step,
        "lycobench.epoch": epoch,
        "ss_network_module": "lycoris.kohya",
        "ss_network_dim": adapter_cfg.get("dim"),
        "ss_network_alpha": adapter_cfg.get("alpha"),
        "ss_network_args": json.dumps(args, sort_keys=True, default=str),
        "ss_steps": step,
        "ss_epoch": epoch,
        "ss_learning_rate": float(adapter_cfg.get("lr") or 0)
        * float(train_cfg.get("lr_scale", 1.0))
        * float(adapter_cfg.get("lr_scale", 1.0)),
    }


def save(adapter: Adapter, path: Path, metadata: dict[str, str]) -> None:
    """fp32 safetensors with string metadata, written atomically (LyCORIS writes in place)."""
    from safetensors.torch import save_file

    from .store import atomic_write_with

    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in adapter.state_dict().items()}
    bad = [k for k, v in tensors.items() if not torch.isfinite(v).all()]
    if bad:  # never publish a NaN checkpoint
        raise FloatingPointError(f"{path}: not saved, {len(bad)} tensor(s) are not finite (e.g. {bad[0]})")
    atomic_write_with(
        path, lambda tmp: save_file(tensors, str(tmp), metadata={k: str(v) for k, v in metadata.items()})
    )
    # Continue from exactly what was saved: native fine-tuning stores weight - original, and original +
    # (weight - original) can differ from weight in the last bit. Also checks that the file loads strictly.
    load_weights(adapter, path, tensors)


def load(pipe, path: Path, adapter_cfg: dict, target_cfg: dict, multiplier: float = 1.0) -> Adapter:
    """Rebuild the networks from the config, apply them, and load the weights strictly.

    ``adapter=external`` files are read by LyCORIS's own loader instead (no config describes them).
    """
    if adapter_cfg.get("algo") == "external":
        adapter = load_external(pipe, path)
    else:
        sd = read_weights(path)
        parts = {p for p, pre in PREFIXES.items() if any(k.startswith(pre + "_") for k in sd)}
        adapter = attach(pipe, adapter_cfg, target_cfg, train_text_encoder="text_encoder" in parts, seed=0)
        load_weights(adapter, path, sd)
    adapter.set_multiplier(multiplier)
    return adapter


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a .safetensors file; anything else is refused as bad input (cause ``data``)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from .data import InputError

    path = Path(path)
    if path.suffix != ".safetensors":
        raise InputError([f"{path}: adapters are loaded only from .safetensors (pickles can run code)"])
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such adapter file")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise InputError(
            [
                f"{path}: truncated or not a safetensors file ({e}); replace it (a checkpoint of a run: delete it and rerun)"
            ]
        ) from None


def read_metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


def load_weights(adapter: Adapter, path: Path, sd: dict | None = None) -> None:
    """Load a checkpoint into existing networks; any missing or unexpected key is an error, and so is an
    alpha that differs from the network's (LyCORIS would load it but keep scaling with the old one)."""
    sd = read_weights(path) if sd is None else sd
    used = 0
    for part, net in adapter.networks.items():
        pre = PREFIXES[part] + "_"
        own = {k: v for k, v in sd.items() if k.startswith(pre)}
        current = lycoris_fixes.dylora_export(net, dict(net.state_dict()))
        for k, v in own.items():
            if k.endswith(".alpha") and k in current and not torch.allclose(v.float(), current[k].float()):
                raise ValueError(
                    f"{path}: {k} is {float(v):g} in the file but {float(current[k]):g} in adapter config: "
                    "load it with the adapter settings it was trained with"
                )
        lycoris_fixes.reset_full_modules(net)
        missing, unexpected = net.load_state_dict(own, strict=False)
        if missing or unexpected:
            raise ValueError(
                f"{path}: adapter keys do not match the {part} ({len(missing)} missing, {len(unexpected)} "
                f"unexpected, e.g. {(list(missing) + list(unexpected))[0]}): was it trained with another "
                "adapter or target config?"
            )
        used += len(own)
    if used != len(sd):
        raise ValueError(f"{path}: {len(sd) - used} tensors belong to no network of this adapter")


# --- adapters trained elsewhere (adapter=external) -------------------------------------------------


def _rename_transformers4_keys(sd: dict[str, torch.Tensor], text_encoder) -> dict[str, torch.Tensor]:
    """kohya files from transformers 4 name text-encoder modules ``lora_te_text_model_...``; transformers 5's
    CLIPTextModel has no ``text_model`` wrapper, so its modules are ``lora_te_encoder_...``."""
    if hasattr(text_encoder, "text_model"):
        return sd
    old = PREFIXES["text_encoder"] + "_text_model_"
    return {
        (PREFIXES["text_encoder"] + "_" + k[len(old) :] if k.startswith(old) else k): v for k, v in sd.items()
    }


def load_external(pipe, path: Path) -> Adapter:
    """A LyCORIS/kohya adapter trained elsewhere, built by LyCORIS's own loader once every tensor passed the
    checks of adapter_checks (all problems of the file in one InputError, cause ``data``)."""
    from .adapter_checks import non_finite, part_problems
    from .data import InputError

    lycoris = _lycoris()
    path = Path(path)
    sd = _rename_transformers4_keys(read_weights(path), pipe.text_encoder)
    parts = {"unet": pipe.unet, "text_encoder": pipe.text_encoder}
    owns = {part: {k: v for k, v in sd.items() if k.startswith(PREFIXES[part] + "_")} for part in parts}
    problems = non_finite(path, sd)
    for part, own in owns.items():
        if own:
            problems += part_problems(path, part, PREFIXES[part], parts[part], own)
    stray = sorted(k for k in sd if not k.startswith(tuple(p + "_" for p in PREFIXES.values())))
    if stray:
        problems.append(
            f"{path}: {len(stray)} tensor(s) have neither the lora_unet_ nor the lora_te_ prefix (e.g. "
            f"{stray[0]}): lycobench reads LyCORIS/kohya files for SD-style models"
        )
    if not sd:
        problems.append(f"{path}: holds no tensors; pass the adapter file itself")
    if problems:
        raise InputError(problems)
    nets = {}
    for part, own in owns.items():
        if not own:
            continue
        # the loader maps module names with the class's LORA_PREFIX
        lycoris.LycorisNetwork.apply_preset(_preset({}, PREFIXES[part]))
        with lycoris_fixes.ia3_loadable():
            net, _ = lycoris.create_lycoris_from_weights(1.0, str(path), parts[part], weights_sd=own)
        net.apply_to()
        unused = sorted(k for k in own if k not in set(net.state_dict()))
        if unused:  # the checks above should have caught it: a gap in them, not the user's file
            raise ValueError(
                f"{path}: LyCORIS loaded no module for {len(unused)} tensor(s), e.g. {unused[0]}"
            )
        nets[part] = net
    return Adapter(nets)


@torch.no_grad()
def effect(pipe, adapter: Adapter, seed: int = 0) -> dict[str, float]:
    """Largest change of each wrapped part's output when the adapter is switched on (multiplier 1 vs 0),
    on a fixed random input: a zero means the adapter does nothing to that part."""
    g = torch.Generator().manual_seed(seed)
    dev = pipe.unet.device
    ids = pipe.tokenizer(
        ["a photo"], padding="max_length", max_length=pipe.tokenizer.model_max_length, return_tensors="pt"
    ).input_ids.to(dev)
    cfg = pipe.unet.config
    size = cfg.sample_size if isinstance(cfg.sample_size, int) else cfg.sample_size[0]
    x = torch.randn(1, cfg.in_channels, size, size, generator=g).to(dev, pipe.unet.dtype)
    t = torch.tensor([500], device=dev)
    was_training = [net.training for net in adapter.networks.values()]
    adapter.train(False)

    def outputs():
        cond = pipe.text_encoder(ids)[0]
        return {
            "text_encoder": cond.float(),
            "unet": pipe.unet(x, t, encoder_hidden_states=cond).sample.float(),
        }

    try:
        adapter.set_multiplier(0.0)
        off = outputs()
        adapter.set_multiplier(1.0)
        on = outputs()
    finally:
        adapter.set_multiplier(1.0)
        for net, mode in zip(adapter.networks.values(), was_training):
            net.train(mode)
    return {part: float((on[part] - off[part]).abs().max()) for part in adapter.networks}
