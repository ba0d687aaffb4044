"""The package's layers (face > stages > analysis > parts > sources > ground): imports point down only,
and no two top-level units import each other."""

import ast
from pathlib import Path

import lycobench

PACKAGE = Path(lycobench.__file__).parent
LAYERS = {
    "face": {"__main__", "sweep", "status", "prune", "hydra_app", "input_check", "metric_cards", "calibrate", "slurm"},
    "stages": {"cell", "train", "generate", "evaluate"},
    "analysis": {"analysis", "report"},
    "parts": {
        "models", "adapters", "adapter_checks", "lycoris_fixes", "data", "image_policy", "prompts", "attributes",
        "metric_encoders", "metrics", "metric_validity", "batch_invariance", "external_adapter",
    },
    "sources": {"world"},
    "ground": {"__init__", "store", "state_io", "config", "tokenizer", "devices", "sd_pipeline"},
}  # fmt: skip
ORDER = list(LAYERS)  # top to bottom
PENDING: set[tuple[str, str]] = set()  # upward imports still to remove (none)
LAYER_OF = {unit: layer for layer, units in LAYERS.items() for unit in units}


def unit_of(path: Path) -> str:
    """The top-level unit of a file: its module name, or the sub-package it is in."""
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def imported_units(path: Path) -> set[str]:
    """The lycobench units a file imports (at any depth of the file: lazy imports count too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    depth = len(path.relative_to(PACKAGE).parts) - 1  # package depth of the file
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                up = node.level - 1  # levels above the file's own package
                if up > depth:
                    continue
                base = list(path.relative_to(PACKAGE).parts[: depth - up])
                parts = base + (node.module.split(".") if node.module else [])
                if parts:
                    out.add(parts[0])
                else:  # `from . import x` at the package root
                    out |= {a.name for a in node.names}
            elif node.module and node.module.startswith("lycobench."):
                out.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            out |= {a.name.split(".")[1] for a in node.names if a.name.startswith("lycobench.")}
    return out


def file_edges() -> list[tuple[str, str, str]]:
    """(file under lycobench/, its unit, a unit it imports) for every import between units."""
    return [
        (path.relative_to(PACKAGE).as_posix(), unit_of(path), dep)
        for path in sorted(PACKAGE.rglob("*.py"))
        for dep in sorted(imported_units(path))
        if dep != unit_of(path)
    ]


def edges() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        graph.setdefault(unit_of(path), set())
    for file, unit, dep in file_edges():
        if (file, dep) not in PENDING:
            graph[unit].add(dep)
    return graph


def test_every_unit_has_a_layer():
    assert set(edges()) <= set(LAYER_OF), sorted(set(edges()) - set(LAYER_OF))


def test_imports_point_down_the_layers():
    up = [
        f"{file} ({LAYER_OF[unit]}) imports {dep} ({LAYER_OF[dep]})"
        for file, unit, dep in file_edges()
        if dep in LAYER_OF
        and ORDER.index(LAYER_OF[dep]) < ORDER.index(LAYER_OF[unit])
        and (file, dep) not in PENDING
    ]
    assert not up, up


def test_no_two_units_import_each_other():
    graph = edges()
    cycles = sorted(
        {tuple(sorted((a, b))) for a, deps in graph.items() for b in deps if a in graph.get(b, ())}
    )
    assert not cycles, cycles
