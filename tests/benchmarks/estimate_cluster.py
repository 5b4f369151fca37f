"""Estimate the wall time of every registered measure on a collection run on a cluster of GPUs, from measured costs.

Two measurements, multiplied: each measure's cost in forward+backward passes of the loss, as `sharpbench measure
check` measured it on its tiny check model of the nearest architecture (the published `leaderboard/properties`),
and the seconds of one forward+backward pass of the collection's architecture over the sharpness points, from a
throughput measured on a GPU (images per second of a training step: a pass plus an optimizer step, so a slight
over-estimate). Models are independent tasks, so with G GPUs the wall time of a measure is ceil(models / G)
models in sequence. Load times, the per-task overhead of Ray (milliseconds) and scoring (seconds) are left out.

    python tests/benchmarks/estimate_cluster.py --collection clip-imagenet-finetuned --gpus 8 \\
        --check-model vit --images-per-second 1703.57 --throughput-source "timm, RTX 3090, AMP"
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from sharpbench.cards.discovery import Registry
from sharpbench.collection.summary import card_summary

ROOT = Path(__file__).resolve().parents[2]


def _duration(seconds: float) -> str:
    """Seconds as 'Hh MMm' (or 'MMm SSs' under an hour)."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s"


def estimate(collection: str, gpus: int, check_model: str, images_per_second: float,
             properties: Path) -> tuple[dict, list[tuple[str, float, float, float]]]:
    """The card's summary and, per measure, (name, cost in passes, seconds per model, wall seconds on `gpus`)."""
    summary = card_summary(Registry.discover().collection(collection))
    pass_seconds = summary["protocol"]["n"] / images_per_second
    waves = math.ceil(summary["n_models"] / gpus)
    rows = []
    for path in sorted(properties.glob("*.json")):
        document = json.loads(path.read_text(encoding="utf-8"))
        cost = document["models"].get(check_model, {}).get("cost_passes")
        if cost is not None:
            rows.append((document["measure"], cost, cost * pass_seconds, cost * pass_seconds * waves))
    return summary, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collection", default="clip-imagenet-finetuned")
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--check-model", default="vit", help="the check model whose measured cost stands in")
    parser.add_argument("--images-per-second", type=float, required=True,
                        help="measured forward+backward throughput of the architecture on one GPU")
    parser.add_argument("--throughput-source", required=True, help="who measured it, on what GPU and precision")
    parser.add_argument("--properties", type=Path, default=ROOT / "leaderboard" / "properties")
    args = parser.parse_args()
    summary, rows = estimate(args.collection, args.gpus, args.check_model, args.images_per_second, args.properties)
    n, models = summary["protocol"]["n"], summary["n_models"]
    print(f"Estimate: {args.collection} ({models} models, {summary['architecture']['parameters']:,} parameters, "
          f"n = {n} sharpness points), {args.gpus} GPUs; one pass = {n} / {args.images_per_second:g} images/s = "
          f"{n / args.images_per_second:.2f} s ({args.throughput_source}); costs in passes measured on the "
          f"'{args.check_model}' check model")
    print()
    print("| measure | cost (passes) | s / model | wall time, " f"{args.gpus} GPUs |")
    print("|---|---:|---:|---:|")
    for name, cost, per_model, wall in sorted(rows, key=lambda row: -row[3]):
        print(f"| {name} | {cost:.3g} | {per_model:.3g} | {_duration(wall)} |")
    print(f"| **all {len(rows)} measures** | {sum(r[1] for r in rows):.4g} | {sum(r[2] for r in rows):.4g} | "
          f"**{_duration(sum(r[3] for r in rows))}** |")


if __name__ == "__main__":
    main()
