"""`sharpbench list measures|collections`: the registered cards, and each collection's state."""

from __future__ import annotations

import argparse

from tabulate import tabulate

from sharpbench.cards.discovery import Registry
from sharpbench.cli.format import interval, number
from sharpbench.collection.collection import Collection, open_collection
from sharpbench.evaluation.run import outcome_sets
from sharpbench.leaderboard.tables import LOW_CEILING
from sharpbench.paths import sharpbench_home
from sharpbench.scoring.scores import noise_ceiling, standard_targets


def add_parser(commands: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    """The `list` subcommand."""
    command = commands.add_parser("list", parents=parents, help="list registered measures or collections")
    command.add_argument("what", choices=["measures", "collections"])
    command.set_defaults(run=run)


def run(args: argparse.Namespace, registry: Registry) -> int:
    """Print one row per measure (name, description) or per collection (state, models, noise ceiling)."""
    if args.what == "measures":
        rows = [(spec.name, _one_line(spec.description)) for spec in registry.measures.values()]
        print(tabulate(rows, headers=["measure", "description"], tablefmt="plain"))
        return 0
    rows = []
    for spec in registry.collections.values():
        collection = open_collection(spec, sharpbench_home(), args.data_paths)
        built = collection.is_built()
        models = f"{len(collection.models)}" if built else f"0 of up to {spec.grid_size()}"
        rows.append((spec.name, "built" if built else "not built", models, _ceiling_text(collection) if built else "",
                     _one_line(spec.description)))
    print(tabulate(rows, headers=["collection", "status", "models", "test-error noise ceiling", "description"],
                   tablefmt="plain"))
    return 0


def _one_line(description: str) -> str:
    """The first sentence of a card's description, for listings."""
    first, _, rest = " ".join(description.split()).partition(". ")
    return first + ("." if rest else "")


def _ceiling_text(collection: Collection) -> str:
    """The test-error noise ceiling of a built collection with its interval, flagged when below one half."""
    sets = outcome_sets(collection)
    if sets is None:
        return "n/a (no per-example outcomes: run `sharpbench collection build`)"
    value, bounds = noise_ceiling(standard_targets(collection.shifts)["test_error"], sets)
    text = f"{number(value)} {interval(bounds)}"
    return text + (f" (below {LOW_CEILING}: mostly test-set noise)" if value < LOW_CEILING else "")
