"""Merge ``world check`` results measured in separate processes (parts, or algorithms run side by side on
the cores of one machine) into one JSON, refusing results of different experiments."""

from __future__ import annotations

import json
from pathlib import Path

# The settings each part depends on: two files measuring the same part with other values are two experiments.
RELEVANT = {
    "base": ("model", "oracle", "prompts", "heldout_prompts", "sampler", "fast"),
    "concepts": ("model", "oracle", "train", "overrides", "seeds", "together", "fast"),
    "encoders": ("fast",),
}
PER_ADAPTER = (
    "curve_by_adapter",
    "tuned_by_adapter",
    "checkpoint_steps",
    "train_s",
    "leaf_curves_by_adapter",
    "curve_by_seed",
)
ADAPTER_ORDER = ("lora", "loha", "lokr", "full")  # the paper's; ``tuned`` is the first measured


class MergeError(ValueError):
    pass


def _order(adapters: list[str]) -> list[str]:
    known = [a for a in ADAPTER_ORDER if a in adapters]
    return known + [a for a in adapters if a not in known]


def _merge_concept(name: str, a: dict, b: dict) -> dict:
    for key in ("category", "base", "prompts", "images", "sampler"):
        if a.get(key) != b.get(key):
            raise MergeError(f"concept {name}: '{key}' differs ({a.get(key)!r} vs {b.get(key)!r})")
    twice = set(a["curve_by_adapter"]) & set(b["curve_by_adapter"])
    if twice:
        raise MergeError(f"concept {name}: {', '.join(sorted(twice))} measured in two files; keep one")
    keys = [k for k in PER_ADAPTER if k in a or k in b]  # per-leaf curves: concepts with sub-classes only
    out = {**a, **{k: {**a.get(k, {}), **b.get(k, {})} for k in keys}}
    order = _order(list(out["curve_by_adapter"]))
    out.update({k: {ad: out[k][ad] for ad in order if ad in out[k]} for k in keys})
    out["tuned"] = out["tuned_by_adapter"][order[0]]
    return out


def merge_checks(results: list[tuple[str, dict]]) -> dict:
    """``results``: (file name, parsed JSON) pairs. Concepts measured by different algorithms join per
    concept; base, encoder and concept parts join as they are; a part or an (algorithm, concept) measured
    twice, or settings that differ (train recipe, overrides, model, sampler...), are refused."""
    if len(results) < 2:
        raise MergeError("give at least two world check JSON files to merge")
    merged: dict = {}
    settings: dict = {}
    for name, res in results:
        s = res.get("settings")
        if not isinstance(s, dict):
            raise MergeError(f"{name}: not a world check result (no 'settings')")
        if not settings:
            settings = {"adapters": [], "parts": [], "seconds": 0, "merged_from": []}
        for part in s.get("parts", []):
            for key in RELEVANT.get(part, ()):
                if key in settings and key in s and s[key] != settings[key]:
                    raise MergeError(
                        f"{name}: setting '{key}' is {s[key]!r}, another file has {settings[key]!r}"
                    )
                if key in s:
                    settings[key] = s[key]
        for key, value in res.items():
            if key == "settings":
                continue
            if key == "concepts" and "concepts" in merged:
                both = merged["concepts"]
                for concept, entry in value.items():
                    both[concept] = (
                        _merge_concept(concept, both[concept], entry) if concept in both else entry
                    )
            elif key in merged:
                raise MergeError(f"{name}: '{key}' is measured in another file too; keep one")
            else:
                merged[key] = json.loads(json.dumps(value))  # a copy
        settings["adapters"] = _order(sorted(set(settings["adapters"]) | set(s.get("adapters", []))))
        settings["parts"] = [
            p for p in ("base", "concepts", "encoders") if p in settings["parts"] + s.get("parts", [])
        ]
        settings["seconds"] += int(s.get("seconds", 0)) + int(s.get("seconds_encoders", 0))
        settings["merged_from"].append(Path(name).name)
    settings.pop("seconds_encoders", None)
    merged["settings"] = settings
    return merged
