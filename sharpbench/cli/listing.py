"""`sharpbench list measures|collections`: the registered cards, and each collection's state."""

from __future__ import annotations

import argparse
import re

from tabulate import tabulate

from sharpbench.cards.discovery import Registry
from sharpbench.cards.measure_card import MeasureSpec
from sharpbench.cli.format import interval, number
from sharpbench.collection.collection import Collection, open_collection
from sharpbench.evaluation.run import outcome_sets
from sharpbench.leaderboard.tables import LOW_CEILING
from sharpbench.paths import home_path
from sharpbench.scoring.scores import noise_ceiling, standard_targets


def add_parser(commands: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    """The `list` subcommand."""
    command = commands.add_parser("list", parents=parents, help="list registered measures or collections")
    command.add_argument("what", choices=["measures", "collections"])
    command.set_defaults(run=run)


def run(args: argparse.Namespace, registry: Registry) -> int:
    """Print one row per measure (name, origin, description, parameters with their defaults) or per collection
    (origin, state, models, noise ceiling). Only reads: a home that is read-only or missing is fine."""
    if args.what == "measures":
        rows = [(spec.name, registry.origin(spec), first_sentence(spec.description), parameters(spec))
                for spec in registry.measures.values()]
        print(tabulate(rows, headers=["measure", "origin", "description", "parameters"], tablefmt="plain"))
        return 0
    rows = []
    for spec in registry.collections.values():
        collection = open_collection(spec, home_path(), args.data_paths)
        built = collection.is_built()
        models = f"{len(collection.models)}" if built else f"0 of up to {spec.grid_size()}"
        rows.append((spec.name, registry.origin(spec), "built" if built else "not built", models,
                     _ceiling_text(collection) if built else "", first_sentence(spec.description)))
    print(tabulate(rows, headers=["collection", "origin", "status", "models", "test-error noise ceiling",
                                  "description"], tablefmt="plain"))
    return 0


def parameters(spec: MeasureSpec) -> str:
    """The parameters a user may set, with their defaults ('rho=0.0005, steps=20'); fixed values are not among
    them."""
    return ", ".join(f"{name}={param.default}" for name, param in spec.params.items())


# A period that ends a sentence is followed by a space and a capital letter, is outside parentheses, and does not
# end one of these abbreviations ("Keskar et al. (2017)", "e.g. SAM", "McCoy et al. 2020").
_SENTENCE_END = re.compile(r"\.(?= [A-Z])")
_ABBREVIATION = re.compile(r"(?:^|[\s(])(?:e\.g|i\.e|et al|cf|vs|etc|approx|resp|Fig|Eq|Sec|No)\.$")


def first_sentence(description: str) -> str:
    """The first sentence of a card's description, for listings; never cut inside an abbreviation or a
    parenthesis (the whole description when no sentence ends earlier)."""
    text = " ".join(description.split())
    for end in _SENTENCE_END.finditer(text):
        sentence = text[:end.end()]
        if sentence.count("(") == sentence.count(")") and not _ABBREVIATION.search(sentence):
            return sentence
    return text


def _ceiling_text(collection: Collection) -> str:
    """The test-error noise ceiling of a built collection with its interval, flagged when below one half."""
    sets = outcome_sets(collection)
    if sets is None:
        return "n/a (no per-example outcomes: run `sharpbench collection build`)"
    value, bounds = noise_ceiling(standard_targets(collection.shifts)["test_error"], sets)
    text = f"{number(value)} {interval(bounds)}"
    return text + (f" (below {LOW_CEILING}: test-set noise blurs much of the ranking)" if value < LOW_CEILING else "")
