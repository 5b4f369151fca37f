"""Where one worst-case iteration spends its time beyond a plain forward+backward pass, operator by operator.

    python tests/benchmarks/profile_iteration.py timm-resnet18 --threads 1 [--iterations 5] [--form device]

Profiles `iterations` ascent iterations (adaptive L-inf, one batch of 128) and as many plain passes of the same
model and batch with torch.profiler, and prints, per operator, the self CPU time per iteration minus that of the
plain pass: the operators of the forward and backward cancel (up to noise), and what remains is the non-pass
work (the step, projection, averaging, the point w + delta, the flat gradient, the bookkeeping).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.models import MODELS, model_and_batches  # noqa: E402
from sharpbench.kernels.ascent import WorstCaseAscent, WorstCaseConfig  # noqa: E402
from sharpbench.kernels.flat import FlatModel  # noqa: E402
from sharpbench.kernels.scaling import Scaling  # noqa: E402
from sharpbench.kernels.sharpness import make_objective  # noqa: E402


def self_times(function, iterations: int) -> tuple[dict[str, tuple[int, float]], float]:
    """Per operator (calls, self CPU seconds) over `iterations` calls of `function`, and the wall seconds."""
    function()  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        start = time.perf_counter()
        for _ in range(iterations):
            function()
        wall = time.perf_counter() - start
    return {row.key: (row.count, row.self_cpu_time_total / 1e6) for row in profiler.key_averages()}, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=sorted(MODELS))
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--form", choices=["host", "device"], default=None,
                        help="the ascent's bookkeeping: host decisions (the CPU's default) or the GPU's torch.where")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, [(inputs, labels)] = model_and_batches(args.model, torch.device("cpu"), full=True)
    flat = FlatModel.of(model)
    objective = make_objective(flat, F.cross_entropy, normalize_logits=False, bf16=False)
    form = {} if args.form is None else {"host": args.form == "host"}
    ascent = WorstCaseAscent(objective, flat.w0.expand(1, -1), Scaling(adaptive=True).vector(flat), inputs[None],
                             labels[None], WorstCaseConfig(rho=0.002), **form)
    state = ascent.start()

    def plain():
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(inputs), labels).backward()

    iteration, iteration_wall = self_times(lambda: ascent.advance(state), args.iterations)
    passes, pass_wall = self_times(plain, args.iterations)
    n = args.iterations
    print(f"{args.model}: {flat.trainable:,} parameters, batch {len(labels)}, {args.threads} thread(s), "
          f"{args.form or 'default'} form, {n} iterations")
    print(f"wall per iteration {iteration_wall / n * 1e3:.1f} ms, per plain pass {pass_wall / n * 1e3:.1f} ms, "
          f"ratio {iteration_wall / pass_wall:.3f}")
    rows = []
    for name in set(iteration) | set(passes):
        calls, seconds = iteration.get(name, (0, 0.0))
        plain_calls, plain_seconds = passes.get(name, (0, 0.0))
        rows.append((name, (calls - plain_calls) / n, (seconds - plain_seconds) / n * 1e3))
    rows.sort(key=lambda row: -row[2])
    print(f"{'operator':<40} {'extra calls':>11} {'extra ms':>9}")
    for name, calls, ms in rows:
        if abs(ms) >= 0.5:
            print(f"{name:<40} {calls:>11.1f} {ms:>9.1f}")
    extra = sum(ms for _, _, ms in rows)
    print(f"{'total self CPU beyond the pass':<40} {'':>11} {extra:>9.1f}")


if __name__ == "__main__":
    main()
