"""Where one worst-case iteration, or one average-case call, spends its time beyond its plain passes, operator
by operator.

    python tests/benchmarks/profile_iteration.py timm-resnet18 --threads 1 [--iterations 5] [--form device]
    python tests/benchmarks/profile_iteration.py digits-mlp --average --batches 8 [--iterations 5]

Profiles `iterations` ascent iterations (adaptive L-inf, one batch of 128) and as many plain passes of the same
model and batch with torch.profiler, and prints, per operator, the self CPU time per iteration minus that of the
plain pass: the operators of the forward and backward cancel (up to noise), and what remains is the non-pass
work (the step, projection, averaging, the point w + delta, the flat gradient, the bookkeeping). With
--average, each of the `iterations` is one whole average-case call (adaptive L2, 20 samples, `batches` batches
of 128) against its 21 forwards and 20 noise draws per batch (tests/benchmarks/passes.py).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.models import MODELS, model_and_batches  # noqa: E402
from benchmarks.passes import forwards_and_draws  # noqa: E402
from sharpbench.kernels.ascent import WorstCaseAscent, WorstCaseConfig  # noqa: E402
from sharpbench.kernels.flat import FlatModel  # noqa: E402
from sharpbench.kernels.scaling import Scaling  # noqa: E402
from sharpbench.kernels.sharpness import average_case_sharpness, make_objective  # noqa: E402


def self_times(function, iterations: int) -> tuple[dict[str, tuple[int, float]], float]:
    """Per operator (calls, self CPU seconds) over `iterations` calls of `function`, and the wall seconds."""
    function()  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        start = time.perf_counter()
        for _ in range(iterations):
            function()
        wall = time.perf_counter() - start
    return {row.key: (row.count, row.self_cpu_time_total / 1e6) for row in profiler.key_averages()}, wall


def worst_case_iteration(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, form: str | None):
    """One ascent iteration (a fresh ascent's state advanced again and again) and one plain pass, as calls."""
    flat = FlatModel.of(model)
    objective = make_objective(flat, F.cross_entropy, normalize_logits=False, bf16=False)
    forms = {} if form is None else {"host": form == "host"}
    ascent = WorstCaseAscent(objective, flat.w0.expand(1, -1), Scaling(adaptive=True).vector(flat), inputs[None],
                             labels[None], WorstCaseConfig(rho=0.002), **forms)
    state = ascent.start()

    def plain():
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(inputs), labels).backward()

    return lambda: ascent.advance(state), plain


def average_case_call(model: nn.Module, data, samples: int = 20):
    """One whole average-case call (adaptive L2, sigma 0.1) and its forwards and draws, as calls."""
    generator = torch.Generator().manual_seed(0)
    noise = torch.empty(sum(p.numel() for p in model.parameters()))
    return (lambda: average_case_sharpness(model, data, rho=0.1, samples=samples),
            lambda: forwards_and_draws(model, data, samples, generator, noise))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=sorted(MODELS))
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--form", choices=["host", "device"], default=None,
                        help="the ascent's bookkeeping: host decisions (the CPU's default) or the GPU's torch.where")
    parser.add_argument("--average", action="store_true", help="profile whole average-case calls instead")
    parser.add_argument("--batches", type=int, default=1, help="batches of 128 per average-case call")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, data = model_and_batches(args.model, torch.device("cpu"), full=True, batches=args.batches)
    if args.average:
        measured, baseline = average_case_call(model, data)
        what, unit = f"average case, {len(data)} batch(es) of {len(data[0][1])}", "call"
    else:
        [(inputs, labels)] = data[:1]
        measured, baseline = worst_case_iteration(model, inputs, labels, args.form)
        what, unit = f"worst case, {args.form or 'default'} form, batch {len(labels)}", "iteration"
    calls, call_wall = self_times(measured, args.iterations)
    passes, pass_wall = self_times(baseline, args.iterations)
    n = args.iterations
    size = sum(p.numel() for p in model.parameters())
    print(f"{args.model}: {size:,} parameters, {what}, {args.threads} thread(s), {n} {unit}s")
    print(f"wall per {unit} {call_wall / n * 1e3:.1f} ms, per its plain passes {pass_wall / n * 1e3:.1f} ms, "
          f"ratio {call_wall / pass_wall:.3f}")
    rows = []
    for name in set(calls) | set(passes):
        count, seconds = calls.get(name, (0, 0.0))
        plain_count, plain_seconds = passes.get(name, (0, 0.0))
        rows.append((name, (count - plain_count) / n, (seconds - plain_seconds) / n * 1e3))
    rows.sort(key=lambda row: -row[2])
    print(f"{'operator':<40} {'extra calls':>11} {'extra ms':>9}")
    for name, count, ms in rows:
        if abs(ms) >= 0.5:
            print(f"{name:<40} {count:>11.1f} {ms:>9.1f}")
    extra = sum(ms for _, _, ms in rows)
    print(f"{'total self CPU beyond the passes':<40} {'':>11} {extra:>9.1f}")

if __name__ == "__main__":
    main()
