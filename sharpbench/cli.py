"""The `sharpbench` command line: evaluate, list, collection build."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Any, Sequence

import torch
from tabulate import tabulate

from sharpbench.collections import open_collection
from sharpbench.errors import SharpbenchError
from sharpbench.evaluate import Evaluation, default_device, evaluate
from sharpbench.jsonsafe import finite_or_none
from sharpbench.locate import DATA_ENV
from sharpbench.paths import sharpbench_home
from sharpbench.registry import Registry
from sharpbench.store import ResultStore

DEFAULT_COLLECTION = "digits-mlp"


def _parse_set(items: Sequence[str]) -> dict[str, str]:
    overrides: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SharpbenchError(f"--set {item!r}: expected key=value, e.g. --set rho=0.001")
        overrides[key.strip()] = value.strip()
    return overrides


def _print_evaluation(evaluation: Evaluation, store_path: Path) -> None:
    spec, collection = evaluation.spec, evaluation.collection
    params = ", ".join(f"{k}={v}" for k, v in evaluation.params.items()) or "no parameters"
    print(f"{spec.name} on {collection.spec.name}: {len(collection.models)} models ({params})")
    if evaluation.computed == 0:
        print(f"nothing computed: all {evaluation.cached} values came from the results store ({store_path})")
    else:
        print(f"computed {evaluation.computed}, reused {evaluation.cached} from the results store ({store_path})")
    rows = [(target, f"{score['kendall_tau']:+.3f}" if math.isfinite(score["kendall_tau"]) else "undefined")
            for target, score in evaluation.scores().items()]
    print(tabulate(rows, headers=["target", "Kendall tau-b"], tablefmt="github", disable_numparse=True,
                   colalign=("left", "right")))
    print(f"(a larger value of this measure is expected to mean {spec.higher_means} generalization; "
          f"positive tau against an error agrees with that)")


def _cmd_evaluate(args: argparse.Namespace, registry: Registry) -> int:
    spec = registry.measure(args.measure)
    params = spec.bind(_parse_set(args.set))  # mistakes in --set surface before any collection is built
    collection = open_collection(registry.collection(args.collection), sharpbench_home())
    if not collection.is_built():
        print(f"collection '{collection.spec.name}' is not built yet: building it now under {collection.root}",
              file=sys.stderr)
        collection.build(progress=not args.no_progress)
    store_path = sharpbench_home() / "results.sqlite"
    store = ResultStore(store_path)
    try:
        evaluation = evaluate(spec, collection, store, overrides=params,
                              device=torch.device(args.device) if args.device else default_device(),
                              n=args.n, m=args.m, seed=args.seed, progress=not args.no_progress)
    finally:
        store.close()
    _print_evaluation(evaluation, store_path)
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(finite_or_none(evaluation.report()), indent=2) + "\n", encoding="utf-8")
        print(f"report written to {path}")
    return 0


def _one_line(description: str) -> str:
    """The first sentence of a card's description, for listings."""
    first, _, rest = " ".join(description.split()).partition(". ")
    return first + ("." if rest else "")


def _cmd_list(args: argparse.Namespace, registry: Registry) -> int:
    if args.what == "measures":
        rows = [(spec.name, _one_line(spec.description)) for spec in registry.measures.values()]
        print(tabulate(rows, headers=["measure", "description"], tablefmt="plain"))
        return 0
    rows = []
    for spec in registry.collections.values():
        collection = open_collection(spec, sharpbench_home())
        built = collection.is_built()
        models = f"{len(collection.models)}" if built else f"0 of up to {spec.grid_size()}"
        rows.append((spec.name, "built" if built else "not built", models, _one_line(spec.description)))
    print(tabulate(rows, headers=["collection", "status", "models", "description"], tablefmt="plain"))
    return 0


def _cmd_collection(args: argparse.Namespace, registry: Registry) -> int:
    if args.action == "import":
        from sharpbench.importer import import_collection

        collection = import_collection(args.folder, sharpbench_home())
        print(f"{collection.spec.name}: {len(collection.models)} models imported under {collection.root}; "
              f"evaluate with `sharpbench evaluate --collection {collection.spec.name} --measure NAME`")
        return 0
    collection = open_collection(registry.collection(args.name), sharpbench_home())
    if args.action == "pull":
        from sharpbench.pull import pull_collection

        fetched = pull_collection(collection, args.source, args.manifest_sha256)
        print(f"{collection.spec.name}: {len(collection.models)} models pulled from {args.source} and verified "
              f"({fetched} files fetched), under {collection.root}")
        return 0
    collection.build(progress=not args.no_progress, force=args.force, workers=args.workers, device=args.device)
    print(f"{collection.spec.name}: {len(collection.models)} models kept, {len(collection.excluded)} excluded "
          f"(did not converge), under {collection.root}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="sharpbench", description=__doc__)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--include-path", action="append", default=[], metavar="DIR",
                        help="a folder with measures/*.yaml and/or collections/*.yaml cards of your own "
                             "(repeatable)")
    common.add_argument("--no-progress", action="store_true", help="hide progress bars")
    common.add_argument("--data-dir", metavar="DIR",
                        help=f"a folder with datasets (DIR/NAME/ or DIR itself); same as ${DATA_ENV}=DIR")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("evaluate", parents=[common], help="score a measure against a collection")
    run.add_argument("--measure", required=True, help="a registered measure name (see `sharpbench list measures`)")
    run.add_argument("--collection", default=DEFAULT_COLLECTION,
                     help=f"a registered collection (default: {DEFAULT_COLLECTION})")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a measure parameter for this run (repeatable), e.g. --set rho=0.001")
    run.add_argument("--json", metavar="PATH", help="write the full report (values, targets, scores) as JSON")
    run.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    run.add_argument("--n", type=int, help="sharpness points (default: the collection's protocol, 1024)")
    run.add_argument("--m", type=int, help="m-sharpness batch size (default: the collection's protocol, 128)")
    run.add_argument("--seed", type=int, default=0, help="seed of the measure's random generator (default 0)")

    listing = commands.add_parser("list", parents=[common], help="list registered measures or collections")
    listing.add_argument("what", choices=["measures", "collections"])

    collection = commands.add_parser("collection", help="manage checkpoint collections")
    actions = collection.add_subparsers(dest="action", required=True)
    build = actions.add_parser("build", parents=[common], help="train a collection's models (resumes)")
    build.add_argument("name")
    build.add_argument("--force", action="store_true", help="discard what was built and build again")
    build.add_argument("--workers", type=int, default=1, metavar="K",
                       help="train K models at a time in separate processes (default 1)")
    build.add_argument("--device", default="cpu", help="torch device to train on (default cpu; e.g. cuda)")
    pull = actions.add_parser("pull", parents=[common], help="fetch a published collection, verifying every sha256")
    pull.add_argument("name")
    pull.add_argument("--from", dest="source", required=True, metavar="URL_OR_DIR",
                      help="a folder or URL holding manifest.json and checkpoints/")
    pull.add_argument("--manifest-sha256", metavar="HEX", help="the published sha256 of manifest.json, checked first")
    importing = actions.add_parser("import", parents=[common],
                                   help="make a collection of a folder of checkpoints (card.yaml + models.csv)")
    importing.add_argument("folder", metavar="DIR")
    return parser


_COMMANDS = {"evaluate": _cmd_evaluate, "list": _cmd_list, "collection": _cmd_collection}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; user errors are one message and exit status 2, never a traceback."""
    args = build_parser().parse_args(argv)
    if getattr(args, "data_dir", None):
        os.environ[DATA_ENV] = str(Path(args.data_dir).expanduser())   # read by the loaders and build workers
    try:
        registry = Registry.discover(args.include_path)
        return _COMMANDS[args.command](args, registry)
    except SharpbenchError as error:
        print(f"sharpbench: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("\ninterrupted: finished work is kept; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
