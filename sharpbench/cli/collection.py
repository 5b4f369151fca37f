"""`sharpbench collection build|show|pull|export|import`: make a collection's checkpoints and manifest, or show its card."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sharpbench.cards.discovery import Registry
from sharpbench.cli.executor import add_executor_options, ray_executor
from sharpbench.collection.builder import build_collection
from sharpbench.collection.collection import open_collection
from sharpbench.evaluation.run import resolve_device
from sharpbench.errors import SharpbenchError
from sharpbench.paths import sharpbench_home


def add_parser(commands: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    """The `collection` subcommand and its actions."""
    actions = commands.add_parser("collection", help="manage checkpoint collections").add_subparsers(
        dest="action", required=True)
    build_action = actions.add_parser("build", parents=parents,
                                      help="train a collection's models, or fetch and score its pretrained "
                                           "checkpoints (resumes)")
    build_action.add_argument("name")
    build_action.add_argument("--force", action="store_true", help="discard what was built and build again")
    build_action.add_argument("--workers", type=int, default=1, metavar="K",
                              help="train K models at a time in separate processes (default 1); for a card of "
                                   "pretrained checkpoints, K processes load its data")
    build_action.add_argument("--device", help="torch device to train or score on (default cpu; e.g. cuda)")
    add_executor_options(build_action)
    build_action.set_defaults(run=build)
    show_action = actions.add_parser("show", parents=parents,
                                     help="print a collection card as loaded (dataset, shifts, architecture and its "
                                          "parameter count, hyperparameters, models, protocol); builds nothing")
    show_action.add_argument("name")
    show_action.add_argument("--json", action="store_true", help="print it as JSON")
    show_action.set_defaults(run=show)
    pull_action = actions.add_parser("pull", parents=parents,
                                     help="fetch a published collection, verifying every sha256")
    pull_action.add_argument("name")
    pull_action.add_argument("--from", dest="source", required=True, metavar="URL_OR_DIR",
                             help="a folder or URL holding manifest.json and checkpoints/")
    pull_action.add_argument("--manifest-sha256", metavar="HEX",
                             help="the published sha256 of manifest.json, checked first")
    pull_action.set_defaults(run=pull)
    export_action = actions.add_parser("export", parents=parents,
                                       help="write a built collection as the folder `collection pull --from DIR` "
                                            "installs (manifest.json, checkpoints/, outcomes/), every file checked "
                                            "against its sha256")
    export_action.add_argument("name")
    export_action.add_argument("--to", dest="target", required=True, metavar="DIR",
                               help="the folder to write (files of another build in it are replaced)")
    export_action.set_defaults(run=export)
    import_action = actions.add_parser("import", parents=parents,
                                       help="make a collection of a folder of checkpoints (card.yaml + models.csv)")
    import_action.add_argument("folder", metavar="DIR")
    import_action.set_defaults(run=import_folder)


def build(args: argparse.Namespace, registry: Registry) -> int:
    """Train (or fetch and score) the collection's models; resumes unless --force."""
    executor = ray_executor(args)
    if executor is not None and args.workers != 1:
        raise SharpbenchError("--workers does not apply with --executor ray: each model is a task of its own "
                              "(as many at once as the cluster has CPUs, or GPUs with --gpus-per-task).")
    device = resolve_device(args.device or "cpu")
    collection = open_collection(registry.collection(args.name), sharpbench_home(), args.data_paths)
    build_collection(collection, progress=not args.no_progress, force=args.force, workers=args.workers,
                     device=device, executor=executor)
    print(f"{collection.spec.name}: {len(collection.models)} models kept, {len(collection.excluded)} excluded "
          f"(did not converge), under {collection.root}")
    return 0


def show(args: argparse.Namespace, registry: Registry) -> int:
    """Print the card as loaded, so that a setting can be checked without building it."""
    from sharpbench.collection.summary import card_summary

    summary = card_summary(registry.collection(args.name))
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    architecture = dict(summary["architecture"])
    parameters = architecture.pop("parameters")
    architecture.pop("parameters_by_model", None)
    count = (f"{parameters:,}" if isinstance(parameters, int) else
             f"{parameters['min']:,} to {parameters['max']:,}" if parameters else "given by the imported table")
    lines = [
        f"{summary['name']}: {summary['description']}",
        f"card: {summary['card']}",
        f"dataset: {_fields(summary['dataset'])} ({summary['num_classes']} classes)",
        f"out of distribution: {', '.join(summary['ood']) or 'none'}",
        f"architecture: {_fields(architecture)}; {count} parameters",
        f"models: {summary['n_models']}" + (f" (seeds {summary['seeds']})" if summary["seeds"] else ""),
        *(f"  {name}: {values}" for name, values in summary["hyperparameters"].items()),
        *([f"training: {_fields(summary['training'])}"] if summary["training"] else []),
        f"kept when train error <= {summary['max_train_error']}; loss {summary['loss']}",
        f"sharpness protocol: n = {summary['protocol']['n']} points in batches of m = {summary['protocol']['m']} "
        f"(seed {summary['protocol']['seed']})",
    ]
    print("\n".join(lines))
    return 0


def _fields(mapping: dict) -> str:
    return ", ".join(f"{key}={value}" for key, value in mapping.items())


def pull(args: argparse.Namespace, registry: Registry) -> int:
    """Fetch a published collection from a folder or URL, verifying every sha256."""
    from sharpbench.collection.pull import pull_collection

    collection = open_collection(registry.collection(args.name), sharpbench_home(), args.data_paths)
    fetched = pull_collection(collection, args.source, args.manifest_sha256)
    print(f"{collection.spec.name}: {len(collection.models)} models pulled from {args.source} and verified "
          f"({fetched} files fetched), under {collection.root}")
    return 0


def export(args: argparse.Namespace, registry: Registry) -> int:
    """Write the built collection as a folder that `collection pull` installs."""
    from sharpbench.collection.export import export_collection

    collection = open_collection(registry.collection(args.name), sharpbench_home(), args.data_paths)
    written = export_collection(collection, Path(args.target))
    print(f"{collection.spec.name}: {len(collection.models)} models exported to {args.target} ({written} files "
          f"written); install elsewhere with `sharpbench collection pull {collection.spec.name} --from DIR`")
    return 0


def import_folder(args: argparse.Namespace, registry: Registry) -> int:
    """Make a collection of a folder of checkpoints (card.yaml + models.csv)."""
    from sharpbench.collection.importer import import_collection

    collection = import_collection(args.folder, sharpbench_home(), args.data_paths, registry.collections)
    print(f"{collection.spec.name}: {len(collection.models)} models imported under {collection.root}; "
          f"evaluate with `sharpbench evaluate --collection {collection.spec.name} --measure NAME`")
    return 0
