"""Every workaround for a bug of lycoris-lora 4.1.3, in one place.

Each workaround names the bug it covers. tests/test_adapters.py has, for each one, a test that asserts the
bug is still there upstream: when such a test fails after an upgrade, LyCORIS fixed the bug and the
workaround (and its test) can go.

1. LoHa and LoKr ``merge_to`` apply the alpha/dim scale twice (``get_weight`` already scales, then
   ``get_diff_weight`` scales again): merged weights are wrong whenever alpha != dim. -> ``merge``.
2. ``IA3Module.make_module_from_state_dict`` takes only the weight but is handed (weight, on_input), so
   ``create_lycoris_from_weights`` raises TypeError on any (IA)^3 file. -> ``ia3_loadable``.
3. ``lycoris.kohya.create_network_from_weights`` first builds a throw-away network with the class's
   default targets; on a diffusers UNet these name ``TimestepEmbedding`` and ``time_embedding.linear_1``
   both, so it dies with "duplicated lora name". -> ``kohya_loadable``.
4. DyLoRA:
   a. its forward draws a random rank even in eval mode, so inference is not deterministic;
      -> ``dylora_full_rank`` (eval mode uses every block; training keeps the random rank);
   b. it saves ``lora_up``/``lora_down``/``alpha`` (a LoRA file) but cannot load that file back into a
      DyLoRA network (its parameters are per-block lists); -> ``dylora_loadable``;
   c. it saves the up weight of a 1x1 convolution as a 2-D matrix, which LyCORIS's own loader then
      reads as a LoRA with the wrong shape; its scale is alpha / (number of blocks), which a LoRA reader
      takes as alpha / dim. -> ``dylora_export`` writes the file so that any LoRA reader computes the
      same full-rank output.
5. ``FullModule`` (native fine-tuning) loads a saved diff by adding it to the module's *current* weight,
   not to the original one: loading a second checkpoint into a network that holds the first gives
   original + diff1 + diff2. -> ``reset_full_modules`` before every load.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


def _module_classes():
    from lycoris.modules.dylora import DyLoraModule
    from lycoris.modules.full import FullModule
    from lycoris.modules.ia3 import IA3Module
    from lycoris.modules.loha import LohaModule
    from lycoris.modules.lokr import LokrModule

    return LohaModule, LokrModule, IA3Module, DyLoraModule, FullModule


# --- 1. merge -------------------------------------------------------------------------------------


@torch.no_grad()
def merge(networks, multiplier: float = 1.0) -> None:
    """Merge every module's delta into its base weight (the adapter's forwards are restored first).

    LoHa/LoKr go through their own merge with a diff that is scaled once (bug 1); every other module
    uses LyCORIS's ``merge_to``.
    """
    loha, lokr, *_ = _module_classes()
    for net in networks:
        net.restore()
        for m in net.loras:
            if isinstance(m, loha | lokr):
                with _scaled_once(m):
                    m.merge_to(multiplier)
            else:
                m.merge_to(multiplier)


@contextlib.contextmanager
def _scaled_once(module) -> Iterator[None]:
    """Within the block, ``module.get_diff_weight`` returns ``get_weight`` (already scaled) x multiplier."""

    def get_diff_weight(multiplier=1, shape=None, device=None):
        diff = module.get_weight(shape) * multiplier
        return (diff.to(device) if device is not None else diff), None

    module.get_diff_weight = get_diff_weight
    try:
        yield
    finally:
        del module.get_diff_weight  # back to the class's method


# --- 2. (IA)^3 through create_lycoris_from_weights -------------------------------------------------


@contextlib.contextmanager
def ia3_loadable() -> Iterator[None]:
    """Within the block, LyCORIS builds (IA)^3 modules from (weight, on_input) as it should."""
    ia3 = _module_classes()[2]
    original = ia3.__dict__["make_module_from_state_dict"]

    def make(cls, lora_name, orig_module, weight, on_input=None):
        module = cls(lora_name, orig_module, 1, train_on_input=bool(on_input is not None and int(on_input)))
        module.weight.data.copy_(weight)
        return module

    ia3.make_module_from_state_dict = classmethod(make)
    try:
        yield
    finally:
        ia3.make_module_from_state_dict = original


# --- 3. lycoris.kohya.create_network_from_weights ---------------------------------------------------


@contextlib.contextmanager
def kohya_loadable() -> Iterator[None]:
    """Within the block, kohya's throw-away network wraps nothing (its modules are discarded anyway)."""
    from lycoris.kohya import LycorisNetworkKohya as K

    keys = (
        "UNET_TARGET_REPLACE_MODULE",
        "UNET_TARGET_REPLACE_NAME",
        "TEXT_ENCODER_TARGET_REPLACE_MODULE",
        "TEXT_ENCODER_TARGET_REPLACE_NAME",
    )
    saved = {k: getattr(K, k) for k in keys}
    for k in keys:
        setattr(K, k, [])
    try:
        with ia3_loadable():
            yield
    finally:
        for k, v in saved.items():
            setattr(K, k, v)


# --- 4. DyLoRA ---------------------------------------------------------------------------------------


def _dylora_modules(net):
    dylora = _module_classes()[3]
    return [m for m in net.loras if isinstance(m, dylora)]


def dylora_full_rank(net) -> None:
    """Make every DyLoRA module of ``net`` use all its blocks in eval mode (bug 4a) and load its own
    saved files (bug 4b). Training mode keeps DyLoRA's random rank."""
    for m in _dylora_modules(net):
        draw = m.get_random_rank_weight

        def rank_weight(m=m, draw=draw):
            return draw() if m.training else m.get_weight((m.block_count - 1) * m.block_size)

        m.get_random_rank_weight = rank_weight
        m._register_load_state_dict_pre_hook(_dylora_blocks_from_lora, with_module=True)


def _dylora_blocks_from_lora(module, state_dict, prefix, *args) -> None:
    """Pre-load hook: split a saved ``lora_up``/``lora_down`` pair back into DyLoRA's blocks."""
    up, down = (
        state_dict.pop(prefix + "lora_up.weight", None),
        state_dict.pop(prefix + "lora_down.weight", None),
    )
    if up is None or down is None:
        return
    up = up.reshape(up.shape[0], module.lora_dim)
    down = down.reshape(module.lora_dim, -1)
    bs = module.block_size
    for i in range(module.block_count):
        state_dict[f"{prefix}up_list.{i}"] = up[:, i * bs : (i + 1) * bs]
        state_dict[f"{prefix}down_list.{i}"] = down[i * bs : (i + 1) * bs]
    alpha = state_dict.get(prefix + "alpha")
    if alpha is not None:  # undo dylora_export's rescaling (see there)
        state_dict[prefix + "alpha"] = alpha / module.block_size


def dylora_export(net, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rewrite DyLoRA entries of a saved state dict as a LoRA file any reader computes correctly (4c).

    Full rank, DyLoRA computes ``up @ down * alpha / block_count``; a LoRA reader computes
    ``up @ down * alpha' / dim``, so ``alpha' = alpha * block_size``. Convolution up weights get their
    trailing 1x1 kernel dims back.
    """
    out = dict(state_dict)
    for m in _dylora_modules(net):
        prefix = m.lora_name + "."
        if prefix + "lora_up.weight" not in out:
            continue
        up = out[prefix + "lora_up.weight"]
        if len(m.shape) > 2:
            out[prefix + "lora_up.weight"] = up.reshape(up.shape[0], m.lora_dim, *[1] * (len(m.shape) - 2))
        out[prefix + "alpha"] = out[prefix + "alpha"] * m.block_size
    return out


# --- 5. FullModule loading ----------------------------------------------------------------------------


@torch.no_grad()
def reset_full_modules(net) -> None:
    """Put every native-fine-tuning module of ``net`` back to its original weight, so that loading a
    diff gives original + diff (bug 5). Other modules are untouched."""
    full = _module_classes()[4]
    for m in net.loras:
        if isinstance(m, full) and not m.is_diff:
            m.weight.copy_(m._org_weight[0].to(m.weight))
            if m.bias is not None and m.org_bias is not None:
                m.bias.copy_(m.org_bias[0].to(m.bias))
