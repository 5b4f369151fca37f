"""Benchmark sizes, the device option, and the ratio table printed at the end of a benchmark run.

Each ratio divides two benchmarks of the same run (medians), so the machine's speed cancels out. Without
--benchmark-only every benchmark runs once at a small size, as a test that the code paths work.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

_MEDIANS: dict[tuple[str, str, str], float] = {}

# (group, denominator label, what the ratio says, target): the numerator's label is the group's name.
RATIOS = [
    ("iteration", "plain", "one worst-case iteration / one plain forward+backward", "<= 1.10 CPU, <= 1.05 GPU"),
    ("oracle", "fast", "straightforward oracle / fast path (speed-up)", ">= 1.6 ResNet-18, >= 2 / >= 5 MLP L-inf / L2"),
    ("sequential", "vmapped", "one batch at a time / vmapped batches (speed-up)", "> 1 where vmap is used"),
    ("one-at-a-time", "grouped", "one model at a time / same-architecture models together", "> 1 small models"),
    ("one-model-training", "grouped-training", "training one model at a time / in a group (speed-up)", "> 1"),
    ("whole-call", "passes", "one whole call / the passes it makes, done plainly", "<= 1.5 digits MLP compute_measure"),
    ("average", "forwards", "average case / its plain forwards + noise draws", "<= 1.15"),
    ("study", "sharpbench", "the study's released code / sharpbench (speed-up)", "> 1"),
    ("ray", "local", "Ray executor (2 workers) / local executor", "< 1 one model per task"),
    ("scoring", "floor", "one target's scoring / its resampled targets + one tau per resample", ""),
]
# (group, the larger label, the smaller, what the difference per model says): seconds, not ratios
DIFFERENCES = [("overhead", "ray", "local", "Ray's overhead per task (s), param-norm one model per task")]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--bench-device", default="cpu", help="device of the kernel benchmarks (cpu or cuda)")
    parser.addoption("--bench-json", default=None, help="write the ratio table to this JSON file")
    parser.addoption("--study-code", default=None,
                     help="a checkout of the study's released code (tml-epfl/sharpness-vs-generalization), to time "
                          "its eval_APGD_sharpness beside sharpbench's; those benchmarks are skipped without it")


@dataclass(frozen=True)
class Setup:
    """What a benchmark needs to know: where it runs and whether at full size."""

    device: torch.device
    full: bool
    study_code: Path | None = None

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


@pytest.fixture(scope="session")
def setup(request: pytest.FixtureRequest) -> Setup:
    device = torch.device(request.config.getoption("--bench-device"))
    if device.type == "cuda" and not torch.cuda.is_available():
        pytest.skip("--bench-device cuda asked for, but no GPU is available")
    study_code = request.config.getoption("--study-code")
    return Setup(device=device, full=bool(request.config.getoption("benchmark_only")),
                 study_code=Path(study_code) if study_code else None)


@pytest.fixture()
def record(benchmark):
    """record(group, case, label, per=1): after the benchmark call, keeps its median (divided by `per`) for
    the ratio table."""

    def keep(group: str, case: str, label: str, per: int = 1) -> None:
        if benchmark.stats is not None:
            _MEDIANS[group, case, label] = benchmark.stats.stats.median / per

    return keep


def ratio_rows() -> list[dict]:
    rows = []
    for group, denominator, meaning, target in RATIOS:
        cases = sorted({case for (g, case, label) in _MEDIANS if g == group})
        for case in cases:
            top, bottom = _MEDIANS.get((group, case, group)), _MEDIANS.get((group, case, denominator))
            if top is not None and bottom is not None:
                rows.append({"ratio": meaning, "case": case, "value": top / bottom, "target": target,
                             "numerator_s": top, "denominator_s": bottom})
    for group, larger, smaller, meaning in DIFFERENCES:
        for case in sorted({case for (g, case, label) in _MEDIANS if g == group}):
            top, bottom = _MEDIANS.get((group, case, larger)), _MEDIANS.get((group, case, smaller))
            if top is not None and bottom is not None:
                rows.append({"ratio": meaning, "case": case, "value": top - bottom, "target": "",
                             "numerator_s": top, "denominator_s": bottom})
    for (group, case, label), median in sorted(_MEDIANS.items()):
        if group == "collection":
            rows.append({"ratio": "seconds per model, whole collection", "case": case, "value": median,
                         "target": "", "numerator_s": median, "denominator_s": None})
    return rows


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    rows = ratio_rows()
    if not rows:
        return
    device = config.getoption("--bench-device")
    name = torch.cuda.get_device_name() if device.startswith("cuda") and torch.cuda.is_available() else "cpu"
    terminalreporter.section(f"sharpbench ratios ({device}: {name}, {torch.get_num_threads()} threads)")
    for row in rows:
        terminalreporter.write_line(f"{row['ratio']:<55} {row['case']:<28} {row['value']:8.3f}   {row['target']}")
    path = config.getoption("--bench-json")
    if path:
        Path(path).write_text(json.dumps({"device": device, "name": name, "rows": rows}, indent=2) + "\n")
