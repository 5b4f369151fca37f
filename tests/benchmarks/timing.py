"""One timed benchmark call: synchronised on a GPU, several rounds after a warm-up at full size, one at small size."""

from __future__ import annotations

from typing import Callable


def timed(benchmark, setup, function: Callable, rounds: int):
    def run():
        result = function()
        setup.sync()
        return result

    return benchmark.pedantic(run, rounds=rounds if setup.full else 1, warmup_rounds=1 if setup.full else 0)
