"""Scoring at the field's population sizes: every metric, both intervals, the ceiling and the robust sign error
against all standard targets (9: test error, gap, OOD error, two shifts, and the losses) of synthetic populations
(tests/benchmarks/populations.py: 10,000 test examples, two OOD sets on the test images, a 1,000-example train
subset), each size in a fresh process so that its peak memory (the process's maximum resident set) is its own.

    python tests/benchmarks/scoring_scale.py [MODELS ...]     (default 60 1000 10000 50000)

prints a Markdown row per size: models, seconds to load the compiled kernels (once per process, before the timing),
seconds to generate, seconds to score, seconds per target, peak memory.
The compiled kernels of the scoring run on NUMBA_NUM_THREADS threads (default: every core), numpy's own on
OMP_NUM_THREADS; set both to the threads you want to report (the table in docs/benchmarks.md names them)."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

SIZES = (60, 1_000, 10_000, 50_000)


def measure(models: int) -> dict[str, float]:
    """Generate and score one population in this process."""
    sys.path.insert(0, str(Path(__file__).parent))
    from populations import population
    from sharpbench.scoring.resampling import Bootstrap
    from sharpbench.scoring.scores import score_targets, standard_targets

    start = time.perf_counter()       # the compiled kernels load from numba's cache once per process: not timed
    small = population(30, test=200, train=100)
    score_targets(small.values, standard_targets(small.shifts), small.sets, small.hparams)
    loaded = time.perf_counter() - start
    start = time.perf_counter()
    found = population(models)
    generated = time.perf_counter() - start
    targets = standard_targets(found.shifts)
    start = time.perf_counter()
    scores = score_targets(found.values, targets, found.sets, found.hparams, bootstrap=Bootstrap())
    scored = time.perf_counter() - start
    entry = scores.targets["test_error"]
    return {"models": models, "load_s": loaded, "generate_s": generated, "score_s": scored, "per_target_s": scored / len(targets),
            "peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20,
            "tau": entry["kendall_tau"], "tau_ci": entry["kendall_tau_ci"], "ceiling": entry["noise_ceiling"]}


def main(sizes: list[int]) -> None:
    print(f"threads: NUMBA_NUM_THREADS={os.environ.get('NUMBA_NUM_THREADS', 'unset')}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    print("| models | kernels loaded, once (s) | generate (s) | score, 9 targets (s) | per target (s) | "
          "peak memory (GiB) | τ test [CI] |")
    print("|---:|---:|---:|---:|---:|---:|---|")
    for models in sizes:
        done = subprocess.run([sys.executable, __file__, "--one", str(models)], capture_output=True, text=True)
        if done.returncode:
            print(f"| {models} | failed: {done.stderr.strip().splitlines()[-1]} |", flush=True)
            continue
        row = json.loads(done.stdout.strip().splitlines()[-1])
        low, high = row["tau_ci"]
        print(f"| {models:,} | {row['load_s']:.1f} | {row['generate_s']:.1f} | {row['score_s']:.1f} | {row['per_target_s']:.2f} | "
              f"{row['peak_gib']:.2f} | {row['tau']:+.3f} [{low:+.3f}, {high:+.3f}] |", flush=True)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--one":
        print(json.dumps(measure(int(sys.argv[2]))))
    else:
        main([int(x) for x in sys.argv[1:]] or list(SIZES))
