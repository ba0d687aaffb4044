"""Checks of an adapter file trained elsewhere (adapter=external), before LyCORIS builds anything from it.

LyCORIS's loader skips tensors whose names it does not know, copies tensors into modules with
broadcasting (a wrong shape either crashes with a bare RuntimeError or is silently broadcast), and loads
NaN as readily as numbers. So every tensor is checked first, and every problem of the file is reported
at once, each naming the tensor and the fix: non-finite values, names that match no module of the
model, tensors that form no LyCORIS algorithm, and shapes that do not fit the module they name.
"""

from __future__ import annotations

from pathlib import Path

import torch

from . import lycoris_fixes

MAX_NAMED = 3  # keys named in one problem line; the count says how many more


def _some(keys: list[str]) -> str:
    more = f", ... ({len(keys) - MAX_NAMED} more)" if len(keys) > MAX_NAMED else ""
    return ", ".join(keys[:MAX_NAMED]) + more


def non_finite(path: Path, sd: dict[str, torch.Tensor]) -> list[str]:
    """One problem naming the tensors that hold NaN or infinite values (every image would be black)."""
    bad = sorted(k for k, v in sd.items() if v.is_floating_point() and not bool(torch.isfinite(v).all()))
    if not bad:
        return []
    return [
        f"{path}: {len(bad)} tensor(s) hold NaN or infinite values ({_some(bad)}): the training that wrote "
        "it diverged or the file is damaged; use an earlier checkpoint or retrain"
    ]


def module_names(root: torch.nn.Module, prefix: str) -> dict[str, torch.nn.Module]:
    """kohya-style name (``<prefix>_down_blocks_0_...``) -> module of the model."""
    return {f"{prefix}_{name}".replace(".", "_"): m for name, m in root.named_modules() if name}


def _rule_shapes(own: dict[str, torch.Tensor], weight: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """The shape each tensor of the common forms must have for a module whose weight is ``weight``
    (LoRA/LoCon, LoHa without Tucker, native fine-tuning, alpha); the rank is read from the file."""
    out_f, in_f, kernel = weight[0], weight[1] if len(weight) > 1 else 1, tuple(weight[2:])
    flat_in = in_f * int(torch.tensor(kernel).prod()) if kernel else in_f
    shapes: dict[str, tuple[int, ...]] = {"alpha": ()}
    down = own.get("lora_down.weight")
    if down is not None and "lora_mid.weight" not in own and down.dim() >= 1:
        r = down.shape[0]
        shapes["lora_down.weight"] = (r, in_f, *kernel)
        shapes["lora_up.weight"] = (out_f, r, *([1] * len(kernel)))
    if "hada_w1_a" in own and "hada_t1" not in own:
        for w in ("hada_w1", "hada_w2"):
            a = own.get(f"{w}_a")
            r = a.shape[1] if a is not None and a.dim() == 2 else None
            if r is not None:
                shapes[f"{w}_a"], shapes[f"{w}_b"] = (out_f, r), (r, flat_in)
    if "diff" in own:
        shapes["diff"], shapes["diff_b"] = tuple(weight), (out_f,)
    return shapes


def _shape(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(int(d) for d in t.shape)


def shape_problems(path: Path, name: str, module: torch.nn.Module, own: dict[str, torch.Tensor]) -> list[str]:
    """Tensors of module ``name`` (``own``: suffix -> tensor) whose shape does not fit ``module``: first the
    exact rule of the common forms, then (other forms) the module LyCORIS builds from the file."""
    from lycoris.modules import get_module

    weight = getattr(module, "weight", None)
    if weight is None:
        return []
    rules = _rule_shapes(own, _shape(weight))
    wrong = [
        f"{name}.{k} (the model needs {list(rules[k])}, the file has {list(_shape(v))})"
        for k, v in own.items()
        if k in rules and _shape(v) != rules[k] and not (k == "alpha" and v.numel() == 1)
    ]
    if not wrong and not set(own) <= set(rules):
        cls, params = get_module({f"{name}.{k}": v for k, v in own.items()}, name)
        try:
            with torch.no_grad(), lycoris_fixes.ia3_loadable():
                built = dict(cls.make_module_from_state_dict(name, module, *params).state_dict())
        except (RuntimeError, ValueError, TypeError) as e:
            shapes = ", ".join(f"{k} {list(_shape(v))}" for k, v in sorted(own.items()))
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            return [
                f"{path}: the tensors of {name} ({shapes}) do not fit its module, whose weight is "
                f"{list(_shape(weight))} (LyCORIS: {first}): the adapter was made for another model"
            ]
        wrong = [
            f"{name}.{k} (the model needs {list(_shape(built[k]))}, the file has {list(_shape(v))})"
            for k, v in own.items()
            if k in built and _shape(v) != _shape(built[k]) and v.numel() != 1
        ]
    if not wrong:
        return []
    return [
        f"{path}: shape does not fit the model: {'; '.join(wrong)}: the adapter was made for another model"
    ]


def part_problems(path: Path, part: str, prefix: str, root: torch.nn.Module, own: dict) -> list[str]:
    """Every problem of the tensors ``own`` meant for ``root`` (the UNet or the text encoder): names that
    match no module, modules whose tensors form no LyCORIS algorithm, shapes that do not fit."""
    from lycoris.modules import get_module

    modules = module_names(root, prefix)
    names = sorted({k.split(".")[0] for k in own})
    problems = []
    foreign = [n for n in names if n not in modules]
    if foreign:
        problems.append(
            f"{path}: {len(foreign)} module name(s) match no module of this {part} ({_some(foreign)}): the "
            "adapter was made for another model architecture or naming (lycobench reads diffusers/kohya names)"
        )
    for n in names:
        if n not in modules:
            continue
        tensors = {k.split(".", 1)[1]: v for k, v in own.items() if k.split(".")[0] == n}
        if get_module(own, n)[0] is None:
            problems.append(
                f"{path}: the tensors of {n} ({', '.join(sorted(tensors))}) form no LyCORIS algorithm: the "
                "file is incomplete or not a LyCORIS/kohya adapter"
            )
            continue
        problems += shape_problems(path, n, modules[n], tensors)
    return problems
