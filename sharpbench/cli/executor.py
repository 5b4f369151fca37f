"""The executor options of `evaluate` and `collection build`: this process, or tasks on a Ray cluster."""

from __future__ import annotations

import argparse
from typing import Any

from sharpbench.errors import SharpbenchError


def add_executor_options(command: argparse.ArgumentParser) -> None:
    """--executor and the Ray options, shared by `evaluate` and `collection build`."""
    command.add_argument("--executor", choices=["local", "ray"], default="local",
                         help="compute in this process (local, the default) or as tasks on a Ray cluster (ray; "
                              "needs pip install \"sharpbench[ray]\")")
    command.add_argument("--ray-address", metavar="ADDRESS",
                         help="the Ray cluster to use, e.g. ray://head:10001 or auto (default: start a local one)")
    command.add_argument("--cpus-per-task", type=float, default=1.0, metavar="C",
                         help="CPUs each Ray task asks for, and its torch threads (default 1)")
    command.add_argument("--gpus-per-task", type=float, default=0.0, metavar="G",
                         help="GPUs each Ray task asks for (default 0); a task with a GPU computes on it")


def ray_executor(args: argparse.Namespace) -> Any:
    """The RayExecutor the options ask for, or None for --executor local (where the Ray options are refused)."""
    ray_options = {"--ray-address": args.ray_address is not None, "--cpus-per-task": args.cpus_per_task != 1.0,
                   "--gpus-per-task": args.gpus_per_task != 0.0}
    if args.executor == "local":
        given = [name for name, set_ in ray_options.items() if set_]
        if given:
            raise SharpbenchError(f"{', '.join(given)} only apply with --executor ray; add --executor ray or leave "
                                  f"them out.")
        return None
    if getattr(args, "device", None) is not None:
        raise SharpbenchError("--device does not apply with --executor ray: a task computes on a GPU when "
                              "--gpus-per-task gives it one, else on its CPUs; leave out --device.")
    if args.cpus_per_task <= 0 or args.gpus_per_task < 0:
        raise SharpbenchError(f"--cpus-per-task must be > 0 and --gpus-per-task >= 0 (got {args.cpus_per_task:g} "
                              f"and {args.gpus_per_task:g}).")
    from sharpbench.evaluation.cluster import RayExecutor, connect, require_ray

    require_ray()       # a missing Ray, or a cluster given that cannot be reached, is said before any work
    if args.ray_address is not None:
        connect(args.ray_address)
    return RayExecutor(args.ray_address, args.cpus_per_task, args.gpus_per_task)
