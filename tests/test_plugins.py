"""Plugins: an installed package registers measures and collections through the entry-point group
`sharpbench.registry`, and a broken one is a one-line error naming it and the fix."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from tiny_cards import tiny_mlp_card

from sharpbench.cli.main import main

SHARPBENCH = Path(sys.executable).parent / "sharpbench"

MEASURES_PY = """\
def weight_sum(model, context, *, scale, offset):
    return scale * float(sum(p.detach().sum() for p in model.parameters())) + offset
"""

MEASURE_CARD = """\
name: plug-weight-sum
description: The sum of the weights, scaled. A measure from a plugin (e.g. for tests).
function: plugpkg.measures:weight_sum
source: tests
higher_means: worse
fixed: {offset: 0.0}
params:
  scale: {type: float, default: 2.0, help: the factor}
"""

# Two entry points, one of each form: a path string (plug-a, the measure) and a function returning a Path
# (plug-b, the collection).
INIT_PY = """\
from pathlib import Path

CARDS = str(Path(__file__).parent / "cards")


def more_cards():
    return Path(__file__).parent / "more_cards"
"""

PYPROJECT = """\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "plugpkg"
version = "0.1.0"

[project.entry-points."sharpbench.registry"]
plug-a = "plugpkg:CARDS"
plug-b = "plugpkg:more_cards"

[tool.setuptools]
packages = ["plugpkg"]

[tool.setuptools.package-data]
plugpkg = ["cards/measures/*.yaml", "more_cards/collections/*.yaml"]
"""


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package plugpkg, built and installed with pip into a folder of its own (used as PYTHONPATH)."""
    source = tmp_path_factory.mktemp("plugpkg-source")
    package = source / "plugpkg"
    (package / "cards" / "measures").mkdir(parents=True)
    (package / "more_cards" / "collections").mkdir(parents=True)
    (source / "pyproject.toml").write_text(PYPROJECT, encoding="utf-8")
    (package / "__init__.py").write_text(INIT_PY, encoding="utf-8")
    (package / "measures.py").write_text(MEASURES_PY, encoding="utf-8")
    (package / "cards" / "measures" / "plug-weight-sum.yaml").write_text(MEASURE_CARD, encoding="utf-8")
    (package / "more_cards" / "collections" / "plug-digits.yaml").write_text(
        yaml.safe_dump(tiny_mlp_card("plug-digits", epochs=1)), encoding="utf-8")
    site = tmp_path_factory.mktemp("plugpkg-site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-q", "--target",
                    str(site), str(source)], check=True, capture_output=True, timeout=300)
    return site


def sharpbench(site: Path, *args: str) -> subprocess.CompletedProcess:
    """`sharpbench ARGS` in a fresh process with the plugin's folder on PYTHONPATH, outside the checkout."""
    return subprocess.run([str(SHARPBENCH), *args], check=False, capture_output=True, text=True, timeout=300, cwd=site,
                          env={**os.environ, "PYTHONPATH": str(site)})


def row(listing: str, name: str) -> str:
    return next(line for line in listing.splitlines() if line.startswith(name + " "))


def test_an_installed_plugin_registers_a_measure_and_a_collection_that_evaluate(plugin_site, tmp_path, capsys,
                                                                                 monkeypatch):
    monkeypatch.syspath_prepend(str(plugin_site))       # the listings in this process (a fresh one costs seconds)
    assert main(["list", "measures"]) == 0
    listed = capsys.readouterr().out
    measure = row(listed, "plug-weight-sum")
    assert " plugin plug-a " in measure and measure.endswith(" scale=2.0")      # the fixed offset is no parameter
    assert "The sum of the weights, scaled." in measure and "A measure from a plugin" not in measure
    assert " built-in " in row(listed, "param-norm")
    assert main(["list", "collections"]) == 0
    listed = capsys.readouterr().out
    assert " plugin plug-b " in row(listed, "plug-digits") and " not built " in row(listed, "plug-digits")

    report = tmp_path / "report.json"
    evaluated = sharpbench(plugin_site, "evaluate", "--measure", "plug-weight-sum", "--collection", "plug-digits",
                           "--no-progress", "--json", str(report))
    assert evaluated.returncode == 0, evaluated.stderr
    document = json.loads(report.read_text())
    assert document["n_models"] == 4 and document["params"] == {"scale": 2.0}
    implementation = document["provenance"]["implementation"]
    assert implementation["origin"] == "plugin plug-a (package module plugpkg.measures)"
    assert implementation["function"] == "plugpkg.measures:weight_sum"


def register(site: Path, monkeypatch: pytest.MonkeyPatch, value: str, module: str = "") -> None:
    """Install, as pip would, a distribution 'brokenpkg' whose entry point 'broken' is `value`, with the module
    brokenpkg.py holding `module`; the folder goes first on sys.path."""
    (site / "brokenpkg-1.0.dist-info").mkdir(parents=True)
    (site / "brokenpkg-1.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: brokenpkg\n"
                                                               "Version: 1.0\n", encoding="utf-8")
    (site / "brokenpkg-1.0.dist-info" / "entry_points.txt").write_text(
        f"[sharpbench.registry]\nbroken = {value}\n", encoding="utf-8")
    (site / "brokenpkg.py").write_text(textwrap.dedent(module), encoding="utf-8")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "brokenpkg", raising=False)


@pytest.mark.parametrize("value,module,problem", [
    ("brokenpkg:CARDS", "import no_such_module\n",
     "failed to load (ModuleNotFoundError: No module named 'no_such_module')"),
    ("brokenpkg:cards", "def cards():\n    raise RuntimeError('no\\ncards')\n",
     "failed to load (RuntimeError: no cards)"),
    ("brokenpkg:CARDS", "CARDS = 42\n", "gave int 42, not the path of a folder of cards"),
    ("brokenpkg:cards", "def cards():\n    return None\n", "gave NoneType None, not the path of a folder of cards"),
    ("brokenpkg:CARDS", "CARDS = '/no/such/folder'\n", "no such folder /no/such/folder"),
    ("brokenpkg:CARDS", "import os\nCARDS = os.path.dirname(__file__)\n", "holds neither measures/ nor collections/"),
])
def test_a_broken_plugin_is_one_line_naming_it_and_the_fix(capsys, monkeypatch, tmp_path, value, module, problem):
    register(tmp_path / "site", monkeypatch, value, module)
    assert main(["list", "measures"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"sharpbench: error: plugin 'broken' (entry point '{value}' in group sharpbench.registry "
                          f"of the package brokenpkg 1.0)")
    assert problem in err and err.rstrip().endswith("fix the package or uninstall it (pip uninstall brokenpkg)")


def test_a_plugin_card_with_a_taken_name_is_an_error_naming_both_files(capsys, monkeypatch, tmp_path):
    cards = tmp_path / "cards"
    (cards / "measures").mkdir(parents=True)
    (cards / "measures" / "param-norm.yaml").write_text(MEASURE_CARD.replace("plug-weight-sum", "param-norm"),
                                                        encoding="utf-8")
    register(tmp_path / "site", monkeypatch, "brokenpkg:CARDS", f"CARDS = {str(cards)!r}\n")
    assert main(["list", "measures"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"sharpbench: error: {cards / 'measures' / 'param-norm.yaml'}: field 'name': expected a "
                          f"name not already used by ")            # the built-in card is read first
    assert err.rstrip().endswith("measures/param-norm.yaml (found 'param-norm')")
