"""The `sharpbench` command line: evaluate, list, collection build, leaderboard build."""

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

from sharpbench.collection.collection import Collection, open_collection
from sharpbench.errors import SharpbenchError
from sharpbench.evaluation.report import Report
from sharpbench.evaluation.run import Evaluation, default_device, evaluate, outcome_sets
from sharpbench.measure import MeasureSpec
from sharpbench.leaderboard.build import DEFAULT_DIR as DEFAULT_LEADERBOARD, build as build_leaderboard
from sharpbench.leaderboard.results import publish
from sharpbench.leaderboard.tables import LOW_CEILING
from sharpbench.data.locate import DATA_ENV
from sharpbench.paths import sharpbench_home
from sharpbench.cards.discovery import Registry
from sharpbench.scoring.scores import noise_ceiling, standard_targets
from sharpbench.evaluation.store import ResultStore

DEFAULT_COLLECTION = "digits-mlp"


def _parse_set(items: Sequence[str]) -> dict[str, str]:
    overrides: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SharpbenchError(f"--set {item!r}: expected key=value, e.g. --set rho=0.001")
        overrides[key.strip()] = value.strip()
    return overrides


def _number(value: float | None) -> str:
    return f"{value:+.3f}" if value is not None and math.isfinite(value) else "n/a"


def _interval(interval: list[float | None] | None) -> str:
    return f"[{_number(interval[0])}, {_number(interval[1])}]" if interval else "n/a"


def _sign_error(score: dict[str, Any]) -> str:
    """Robust sign error over all environments: 'mean / max (kept of total)', or why it is undefined."""
    family = (score.get("robust_sign_error") or {}).get("all")
    if not family:
        return "n/a"
    if family["mean"] is None:
        return f"n/a (0 of {family['total']} above noise)"
    return f"{family['mean']:.3f} / {family['max']:.3f} ({family['kept']} of {family['total']})"


def _print_evaluation(evaluation: Evaluation, store_path: Path) -> None:
    spec, collection = evaluation.spec, evaluation.collection
    params = ", ".join(f"{k}={v}" for k, v in evaluation.params.items()) or "no parameters"
    print(f"{spec.name} on {collection.spec.name}: {len(collection.models)} models ({params})")
    if evaluation.computed == 0:
        print(f"nothing computed: all {evaluation.cached} values came from the results store ({store_path})")
    else:
        print(f"computed {evaluation.computed}, reused {evaluation.cached} from the results store ({store_path})")
    rows = [(target, _number(score["kendall_tau"]), _interval(score["kendall_tau_ci"]),
             _interval(score["kendall_tau_ci_models"]), _number(score["oriented"]["kendall_tau"]),
             _number(score["noise_ceiling"]), _number(score["kendall_tau_of_ceiling"]), _number(score["spearman"]),
             _number(score["granulated_kendall"]), _number(score["conditional_mi_pgdl"]), _sign_error(score))
            for target, score in evaluation.scores().items()]
    print(tabulate(rows, headers=["target", "Kendall tau-b", "95% CI", "95% CI (models only)", "oriented",
                                  "noise ceiling", "oriented / ceiling", "Spearman", "Psi", "CMI (PGDL)",
                                  "robust sign error"],
                   tablefmt="github", disable_numparse=True, colalign=("left",) + ("right",) * 10))
    tracks = ", ".join(f"{name} {_number(tau)}" for name, tau in evaluation.tau_vs_hparams().items())
    print(f"Kendall tau-b against each hyperparameter: {tracks or 'none varies'}")
    print(f"(a larger value of this measure is expected to mean {spec.higher_means} generalization; 'oriented' "
          f"multiplies tau by {evaluation.orientation:+d}, so a positive oriented tau agrees with the card. "
          + ("Intervals resample models and test examples together; 'models only' treats the targets as exact.)"
             if evaluation.scoring()["two_way"] else "Intervals resample models only: the collection keeps no "
                                                     "per-example outcomes.)"))


def _sweep(spec: MeasureSpec, text: str | None) -> tuple[str, list[Any]] | None:
    """--sweep PARAM=V1,V2,... or PARAM=FAMILY (a grid the card documents): the parameter and its values."""
    if text is None:
        return None
    name, sep, raw = text.partition("=")
    name, raw = name.strip(), raw.strip()
    if not sep or not name or not raw:
        raise SharpbenchError(f"--sweep {text!r}: expected PARAM=V1,V2,... or PARAM=GRID, e.g. --sweep "
                              f"rho=0.0005,0.001,0.002")
    grids = spec.grids.get(name, {})
    if raw in grids:
        return name, list(grids[raw])
    values = [value.strip() for value in raw.split(",")]
    if len(values) == 1 and grids and not _is_number(values[0]):
        raise SharpbenchError(f"--sweep {text!r}: measure '{spec.name}' has no grid '{raw}' for {name}; its grids "
                              f"are {sorted(grids)} (see {spec.path}), or give values: {name}=V1,V2,...")
    return name, [spec.bind({name: value})[name] for value in values]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _print_sweep(name: str, evaluations: list[Evaluation]) -> None:
    targets = [target for target in evaluations[0].scores() if "/" not in target]
    rows = [[evaluation.params[name]] + [_number(evaluation.scores()[target]["kendall_tau"]) for target in targets]
            for evaluation in evaluations]
    print(f"sweep of {name}: Kendall tau-b")
    print(tabulate(rows, headers=[name] + targets, tablefmt="github", disable_numparse=True))


def _cmd_evaluate(args: argparse.Namespace, registry: Registry) -> int:
    spec = registry.measure(args.measure)
    params = spec.bind(_parse_set(args.set))  # mistakes in --set or --sweep surface before any build
    sweep = _sweep(spec, args.sweep)
    spec.implementation()  # and so does a broken or misspelled function
    runs = [params] if sweep is None else [{**params, sweep[0]: value} for value in sweep[1]]
    collection = open_collection(registry.collection(args.collection), sharpbench_home())
    if not collection.is_built():
        print(f"collection '{collection.spec.name}' is not built yet: building it now under {collection.root}",
              file=sys.stderr)
        collection.build(progress=not args.no_progress)
    elif not collection.has_outcomes and not collection.spec.imported:
        print(f"collection '{collection.spec.name}' has no per-example outcomes yet: scoring its checkpoints on "
              f"every evaluation set (no retraining)", file=sys.stderr)
        collection.build(progress=not args.no_progress)
    store_path = sharpbench_home() / "results.sqlite"
    store = ResultStore(store_path)
    evaluations = []
    try:
        for run_params in runs:
            evaluation = evaluate(spec, collection, store, overrides=run_params,
                                  device=torch.device(args.device) if args.device else default_device(),
                                  n=args.n, m=args.m, seed=args.seed, progress=not args.no_progress,
                                  group_models=not args.no_grouping, recompute=args.recompute)
            _print_evaluation(evaluation, store_path)
            evaluations.append(evaluation)
    finally:
        store.close()
    if sweep is not None:
        _print_sweep(sweep[0], evaluations)
    reports = [Report.of(evaluation) for evaluation in evaluations] if args.json or args.publish else []
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        document = (reports[0].document() if sweep is None else
                    {"sweep": {"parameter": sweep[0], "values": sweep[1]},
                     "reports": [report.document() for report in reports]})
        path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        print(f"report written to {path}")
    if args.publish:
        for report in reports:
            print(f"result published to {publish(report, Path(args.leaderboard_dir))}")
        print("run `sharpbench leaderboard build` to update the tables and the page")
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
        rows.append((spec.name, "built" if built else "not built", models, _ceiling_text(collection) if built else "",
                     _one_line(spec.description)))
    print(tabulate(rows, headers=["collection", "status", "models", "test-error noise ceiling", "description"],
                   tablefmt="plain"))
    return 0


def _ceiling_text(collection: Collection) -> str:
    """The test-error noise ceiling of a built collection with its interval, flagged when below one half."""
    sets = outcome_sets(collection)
    if sets is None:
        return "n/a (no per-example outcomes: run `sharpbench collection build`)"
    value, interval = noise_ceiling(standard_targets(collection.shifts)["test_error"], sets)
    text = f"{_number(value)} {_interval(interval)}"
    return text + (f" (below {LOW_CEILING}: mostly test-set noise)" if value < LOW_CEILING else "")


def _cmd_collection(args: argparse.Namespace, registry: Registry) -> int:
    if args.action == "import":
        from sharpbench.collection.importer import import_collection

        collection = import_collection(args.folder, sharpbench_home())
        print(f"{collection.spec.name}: {len(collection.models)} models imported under {collection.root}; "
              f"evaluate with `sharpbench evaluate --collection {collection.spec.name} --measure NAME`")
        return 0
    collection = open_collection(registry.collection(args.name), sharpbench_home())
    if args.action == "pull":
        from sharpbench.collection.pull import pull_collection

        fetched = pull_collection(collection, args.source, args.manifest_sha256)
        print(f"{collection.spec.name}: {len(collection.models)} models pulled from {args.source} and verified "
              f"({fetched} files fetched), under {collection.root}")
        return 0
    collection.build(progress=not args.no_progress, force=args.force, workers=args.workers, device=args.device)
    print(f"{collection.spec.name}: {len(collection.models)} models kept, {len(collection.excluded)} excluded "
          f"(did not converge), under {collection.root}")
    return 0


def _cmd_leaderboard(args: argparse.Namespace, registry: Registry) -> int:
    for path in build_leaderboard(Path(args.leaderboard_dir)):
        print(f"wrote {path}")
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

    leaderboard_dir = argparse.ArgumentParser(add_help=False)
    leaderboard_dir.add_argument("--leaderboard-dir", default=str(DEFAULT_LEADERBOARD), metavar="DIR",
                                 help=f"the leaderboard folder (default: ./{DEFAULT_LEADERBOARD} under the current "
                                      f"directory)")

    run = commands.add_parser("evaluate", parents=[common, leaderboard_dir],
                              help="score a measure against a collection")
    run.add_argument("--measure", required=True, help="a registered measure name (see `sharpbench list measures`)")
    run.add_argument("--collection", default=DEFAULT_COLLECTION,
                     help=f"a registered collection (default: {DEFAULT_COLLECTION})")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a measure parameter for this run (repeatable), e.g. --set rho=0.001")
    run.add_argument("--json", metavar="PATH",
                     help="write the report (values, targets, scores, provenance) as JSON: the document that "
                          "--publish writes, or for a sweep {sweep, reports: [one per value]}")
    run.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    run.add_argument("--n", type=int, help="sharpness points (default: the collection's protocol, 1024)")
    run.add_argument("--m", type=int, help="m-sharpness batch size (default: the collection's protocol, 128)")
    run.add_argument("--seed", type=int, default=0, help="seed of the measure's random generator (default 0)")
    run.add_argument("--sweep", metavar="PARAM=V1,V2,...",
                     help="evaluate once per value of one parameter and report each, e.g. --sweep "
                          "rho=0.0005,0.001,0.002; PARAM=GRID takes a grid the card documents, e.g. --sweep "
                          "rho=resnet18-cifar10")
    run.add_argument("--no-grouping", action="store_true",
                     help="evaluate one model at a time even when the measure can do same-architecture models "
                          "together (the values are the same)")
    run.add_argument("--recompute", action="store_true",
                     help="ignore the values in the results store: compute every model again and overwrite them")
    run.add_argument("--publish", action="store_true",
                     help="also write the result to DIR/results/COLLECTION/MEASURE.json for the leaderboard")

    listing = commands.add_parser("list", parents=[common], help="list registered measures or collections")
    listing.add_argument("what", choices=["measures", "collections"])

    collection = commands.add_parser("collection", help="manage checkpoint collections")
    actions = collection.add_subparsers(dest="action", required=True)
    build = actions.add_parser("build", parents=[common],
                               help="train a collection's models, or fetch and score its pretrained checkpoints "
                                    "(resumes)")
    build.add_argument("name")
    build.add_argument("--force", action="store_true", help="discard what was built and build again")
    build.add_argument("--workers", type=int, default=1, metavar="K",
                       help="train K models at a time in separate processes (default 1); for a card of "
                            "pretrained checkpoints, K processes load its data")
    build.add_argument("--device", default="cpu", help="torch device to train or score on (default cpu; e.g. cuda)")
    pull = actions.add_parser("pull", parents=[common], help="fetch a published collection, verifying every sha256")
    pull.add_argument("name")
    pull.add_argument("--from", dest="source", required=True, metavar="URL_OR_DIR",
                      help="a folder or URL holding manifest.json and checkpoints/")
    pull.add_argument("--manifest-sha256", metavar="HEX", help="the published sha256 of manifest.json, checked first")
    importing = actions.add_parser("import", parents=[common],
                                   help="make a collection of a folder of checkpoints (card.yaml + models.csv)")
    importing.add_argument("folder", metavar="DIR")

    board = commands.add_parser("leaderboard", help="the published leaderboard")
    board_actions = board.add_subparsers(dest="action", required=True)
    board_actions.add_parser("build", parents=[common, leaderboard_dir],
                             help="render DIR/README.md and DIR/index.html from DIR/results/*/*.json")
    return parser


_COMMANDS = {"evaluate": _cmd_evaluate, "list": _cmd_list, "collection": _cmd_collection,
             "leaderboard": _cmd_leaderboard}


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
