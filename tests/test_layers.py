"""The package's layers: what `import sharpbench` loads, what measures may import, and which way imports point."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "sharpbench"

# What the public API must not pull in: the collections and datasets, the evaluation loop, scoring's scipy, the
# results store's sqlite3, and the model zoos.
HEAVY = ("scipy", "sqlite3", "sharpbench.collection", "sharpbench.data", "sharpbench.evaluation.run",
         "sharpbench.evaluation.store", "sharpbench.cards.discovery", "sharpbench.scoring", "sharpbench.leaderboard",
         "sharpbench.cli", "transformers", "datasets", "timm")


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every import in a file, at any depth (a function's lazy import counts too)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def test_import_sharpbench_loads_only_the_measure_api_and_the_kernels():
    code = "import json, sys, sharpbench; print(json.dumps(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    heavy = [name for name in loaded if any(name == h or name.startswith(h + ".") for h in HEAVY)]
    assert heavy == []
    ours = {name for name in loaded if name.startswith("sharpbench")}
    assert {"sharpbench.measure", "sharpbench.kernels.sharpness", "sharpbench.kernels.flat"} <= ours


def test_the_public_api_offers_what_measures_need():
    import sharpbench

    for name in ("FlatModel", "MeasureError", "MeasureContext", "computes_many", "compute_measure",
                 "worst_case_sharpness", "average_case_sharpness_many"):
        assert name in sharpbench.__all__ and hasattr(sharpbench, name), name


@pytest.mark.parametrize("path", sorted((REPO / "measures").glob("*.py")), ids=lambda path: path.name)
def test_measures_import_nothing_private(path):
    private = [f"{path.name}:{line}: {module}" for line, module in imported_modules(path)
               if module.startswith("sharpbench.")]
    assert private == [], "measures import `from sharpbench import ...` only"


def test_the_checker_sees_a_private_import(tmp_path):
    sample = tmp_path / "m.py"
    sample.write_text("def f():\n    from sharpbench.kernels.flat import FlatModel\nimport sharpbench.errors\n")
    assert sorted(imported_modules(sample)) == [(2, "sharpbench.kernels.flat"), (3, "sharpbench.errors")]


# Dependencies point one way: cli -> evaluation/leaderboard -> collection/scoring/store -> models/data/kernels.
# Each entry: the subpackages (or modules) of sharpbench, and the subpackages that they must never import.
UPWARD = [
    (("kernels", "scoring", "data", "models", "training", "collection", "cards", "measure", "errors", "losses",
      "version", "paths", "jsonsafe"), ("evaluation", "leaderboard", "cli")),
    (("evaluation", "leaderboard"), ("cli",)),
    (("data", "models", "training", "kernels"), ("collection", "scoring")),
    (("kernels", "scoring"), ("collection", "data", "models", "training", "cards")),
]


@pytest.mark.parametrize("lower,upper", UPWARD, ids=lambda names: "+".join(names))
def test_no_module_imports_a_layer_above_its_own(lower, upper):
    offending = []
    for path in sorted(PACKAGE.rglob("*.py")):
        part = path.relative_to(PACKAGE).with_suffix("").parts[0]
        if part not in lower:
            continue
        for line, module in imported_modules(path):
            names = module.split(".")
            if names[0] == "sharpbench" and len(names) > 1 and names[1] in upper:
                offending.append(f"{path.relative_to(REPO)}:{line}: {module}")
    assert offending == []
