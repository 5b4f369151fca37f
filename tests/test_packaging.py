"""The built-in measures and cards work from an installed wheel, not only from the source tree."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHECK = """
import sys, torch, sharpbench
from sharpbench.cards.discovery import Registry
from sharpbench.paths import builtin_registry
target = sys.argv[1]
assert sharpbench.__file__.startswith(target), sharpbench.__file__
assert str(builtin_registry()).startswith(target), builtin_registry()
registry = Registry.discover()
assert len(registry.measures) >= 10 and "digits-mlp" in registry.collections, sorted(registry.measures)
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(4, 3))
batches = [(torch.randn(8, 4), torch.randint(0, 3, (8,)))]
value = sharpbench.compute_measure("sharpness-worst-linf-adaptive", model, batches)
assert value >= 0
from sharpbench.leaderboard.results import result_schema
assert result_schema()["title"] == "sharpbench leaderboard result"
print("ok", len(registry.measures), value)
"""


def test_the_wheel_carries_the_builtin_measures_and_cards(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(wheels)], check=True, capture_output=True, timeout=300)
    (wheel,) = wheels.glob("sharpbench-*.whl")
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                    str(wheel)], check=True, capture_output=True, timeout=300)
    # Run outside the checkout, with the wheel's copy first on the path (before the editable install).
    result = subprocess.run([sys.executable, "-c", CHECK, str(target)], cwd=tmp_path, capture_output=True,
                            text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(target)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok")
