"""`sharpbench evaluate`: score a measure against a collection, once or over a sweep of one parameter."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Iterable, Sequence

from tabulate import tabulate

from sharpbench.cards.discovery import Registry
from sharpbench.cli.executor import add_executor_options, ray_executor
from sharpbench.cli.format import interval, number
from sharpbench.cli.outputs import output_file, output_folder
from sharpbench.collection.builder import build_collection
from sharpbench.collection.collection import Collection, open_collection
from sharpbench.errors import SharpbenchError
from sharpbench.evaluation.report import Report
from sharpbench.evaluation.run import Evaluation, evaluate, resolve_device
from sharpbench.evaluation.store import ResultStore
from sharpbench.evaluation.sweep import Sweep, evaluate_sweep
from sharpbench.leaderboard.builds import build_folder, install_published
from sharpbench.leaderboard.results import publish
from sharpbench.paths import readable_home, sharpbench_home
from sharpbench.scoring.metrics import METRICS, Metric

DEFAULT_COLLECTION = "digits-mlp"


def add_parser(commands: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    """The `evaluate` subcommand and its options."""
    command = commands.add_parser("evaluate", parents=parents, help="score a measure against a collection")
    command.add_argument("--measure", required=True, help="a registered measure name (see `sharpbench list measures`)")
    command.add_argument("--collection", default=DEFAULT_COLLECTION,
                         help=f"a registered collection (default: {DEFAULT_COLLECTION})")
    command.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                         help="override a measure parameter for this run (repeatable), e.g. --set rho=0.001")
    command.add_argument("--json", metavar="PATH",
                         help="write the report (values, targets, scores, provenance) as JSON: the document that "
                              "--publish writes, or for a sweep {sweep, reports: [one per value]}")
    command.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    command.add_argument("--n", type=int, help="sharpness points (default: the collection's protocol, 1024)")
    command.add_argument("--m", type=int, help="m-sharpness batch size (default: the collection's protocol, 128)")
    command.add_argument("--seed", type=int, default=0, help="seed of the measure's random generator (default 0)")
    command.add_argument("--sweep", metavar="PARAM=V1,V2,...",
                         help="evaluate once per value of one parameter and report each, e.g. --sweep "
                              "rho=0.0005,0.001,0.002; PARAM=GRID takes a grid the card documents, e.g. --sweep "
                              "rho=resnet18-cifar10")
    command.add_argument("--no-grouping", action="store_true",
                         help="evaluate one model at a time even when the measure can do same-architecture models "
                              "together (the values agree up to the last bits, which a worst-case ascent can "
                              "amplify: docs/cli.md, leaderboard verify)")
    add_executor_options(command)
    command.add_argument("--recompute", action="store_true",
                         help="ignore the values in the results store: compute every model again and overwrite them")
    command.add_argument("--publish", action="store_true",
                         help="also write the result to DIR/results/COLLECTION/MEASURE.json for the leaderboard")
    command.set_defaults(run=run)


def parse_set(items: Sequence[str]) -> dict[str, str]:
    """The --set KEY=VALUE items as a dict of raw strings (the card types them)."""
    overrides: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SharpbenchError(f"--set {item!r}: expected key=value, e.g. --set rho=0.001")
        overrides[key.strip()] = value.strip()
    return overrides


def ready_collection(registry: Registry, name: str, home: Path, data_paths: Any, progress: bool) -> Collection:
    """The collection, built first when it is not (or scored, when it lacks per-example outcomes); a stale or
    damaged build is an error naming the fix, raised before any work."""
    collection = open_collection(registry.collection(name), home, data_paths)
    if collection.read_manifest() is None:    # a damaged manifest raises here, naming the fix, before any build
        sharpbench_home()
        print(f"collection '{collection.spec.name}' is not built yet: building it now under {collection.root}",
              file=sys.stderr)
        build_collection(collection, progress=progress)
    elif not collection.is_built():
        raise collection.stale_error("manifest.json")
    elif not collection.has_outcomes and not collection.spec.imported:
        sharpbench_home()
        print(f"collection '{collection.spec.name}' has no per-example outcomes yet: scoring its checkpoints on "
              f"every evaluation set (no retraining)", file=sys.stderr)
        build_collection(collection, progress=progress)
    return collection


def published_or_built(registry: Registry, name: str, home: Path, args: argparse.Namespace, *,
                       publishing: bool) -> Collection:
    """The collection ready to evaluate: where it is not built here and the leaderboard (--leaderboard-dir) keeps
    the build its results were published on, that build, installed (so that the values are the published ones on
    any machine); else the one built here, built first where needed. When `publishing`, a local build other than
    the published one is an error naming both fixes: results of one collection must come from one build."""
    collection = open_collection(registry.collection(name), home, args.data_paths)
    if (publishing or collection.read_manifest() is None) and install_published(collection,
                                                                                  Path(args.leaderboard_dir)):
        print(f"collection '{name}': installed the build its results were published on, from "
              f"{build_folder(Path(args.leaderboard_dir), name)}", file=sys.stderr)
    return ready_collection(registry, name, home, args.data_paths, not args.no_progress)


def run(args: argparse.Namespace, registry: Registry) -> int:
    """Evaluate (installing or building the collection first where needed), print the scores, write --json and
    --publish."""
    spec = registry.measure(args.measure)
    params = spec.bind(parse_set(args.set))  # mistakes in --set or --sweep surface before any build
    sweep = Sweep.parse(spec, args.sweep) if args.sweep is not None else None
    spec.implementation()  # and so does a broken or misspelled function
    executor = ray_executor(args)     # and a missing Ray, an unreachable cluster, --device with Ray
    device = resolve_device(args.device)  # and a device this machine lacks, and an output that cannot be written
    json_path = output_file(args.json, "--json") if args.json else None
    if args.publish:
        output_folder(Path(args.leaderboard_dir), "--leaderboard-dir")
    home = readable_home()    # a read-only home still serves the values it holds; building needs a writable one
    collection = published_or_built(registry, args.collection, home, args, publishing=args.publish)
    store_path = home / "results.sqlite"
    store = ResultStore(store_path)
    options: dict[str, Any] = {"device": device, "n": args.n,
                               "m": args.m, "seed": args.seed, "progress": not args.no_progress,
                               "group_models": not args.no_grouping, "recompute": args.recompute,
                               "executor": executor}
    evaluations = []
    try:
        runs: Iterable[Evaluation] = (
            [evaluate(spec, collection, store, overrides=params, **options)] if sweep is None else
            evaluate_sweep(spec, collection, store, sweep, overrides=params, **options))
        for evaluation in runs:
            _print_evaluation(evaluation, store_path)
            evaluations.append(evaluation)
    finally:
        store.close()
    if sweep is not None:
        _print_sweep(sweep.parameter, evaluations)
    reports = [Report.of(evaluation) for evaluation in evaluations] if args.json or args.publish else []
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        document = reports[0].document() if sweep is None else sweep.document(reports)
        json_path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        print(f"report written to {json_path}")
    if args.publish:
        for report in reports:
            print(f"result published to {publish(report, Path(args.leaderboard_dir))}")
        print("run `sharpbench leaderboard build` to update the tables and the page")
    return 0


def _sign_error(score: dict[str, Any]) -> str:
    """Robust sign error over all environments: 'mean / max (kept of total)', or why none was kept."""
    family = (score.get("robust_sign_error") or {}).get("all")
    if not family:
        return "n/a"
    if family["mean"] is None:
        reason = (family.get("reason") or "").split(":")[0]
        return f"n/a (0 of {family['total']} kept: {reason})" if reason else f"n/a (0 of {family['total']} kept)"
    return f"{family['mean']:.3f} / {family['max']:.3f} ({family['kept']} of {family['total']})"


def _metric_text(score: dict[str, Any], metric: Metric) -> str:
    """A metric as the card orients it (oriented metrics), with its interval for the test-set noise."""
    source = score["oriented"] if metric.oriented else score
    return f"{number(source[metric.name])} {interval(source[f'{metric.name}_ci'])}" \
        if source[f"{metric.name}_ci"][0] is not None else number(source[metric.name])


def _print_evaluation(evaluation: Evaluation, store_path: Path) -> None:
    spec, collection = evaluation.spec, evaluation.collection
    params = ", ".join(f"{k}={v}" for k, v in evaluation.params.items()) or "no parameters"
    print(f"{spec.name} on {collection.spec.name}: {len(collection.models)} models ({params})")
    if evaluation.computed == 0 and evaluation.elsewhere == 0:
        print(f"nothing computed: all {evaluation.cached} values came from the results store ({store_path})")
    else:
        meanwhile = f", {evaluation.elsewhere} computed meanwhile by another run" if evaluation.elsewhere else ""
        print(f"computed {evaluation.computed}, reused {evaluation.cached} from the results store ({store_path})"
              f"{meanwhile}")
    scores = evaluation.scores()
    ranked = METRICS["kendall_tau"]
    rows = [(target, number(score["kendall_tau"]), _metric_text(score, ranked),
             interval(score["oriented"]["kendall_tau_ci_models"]),
             f"{number(score['noise_ceiling'])} {interval(score['noise_ceiling_ci'])}",
             f"{number(score['kendall_tau_of_ceiling'])} {interval(score['kendall_tau_of_ceiling_ci'])}")
            for target, score in scores.items()]
    print(tabulate(rows, headers=["target", "Kendall tau-b", "oriented [95% CI]", "95% CI (models)",
                                  "noise ceiling [95% CI]", "oriented / ceiling [95% CI]"],
                   tablefmt="github", disable_numparse=True, colalign=("left",) + ("right",) * 5))
    others = [metric for metric in METRICS.values() if metric.name != ranked.name]
    rows = [[target] + [_metric_text(score, metric) for metric in others] + [_sign_error(score)]
            for target, score in scores.items()]
    print(tabulate(rows, headers=["target"] + [f"{m.symbol}{' (oriented)' if m.oriented else ''}" for m in others]
                   + ["robust sign error"], tablefmt="github", disable_numparse=True))
    tracks = ", ".join(f"{name} {number(tau)}" for name, tau in evaluation.tau_vs_hparams().items())
    print(f"Kendall tau-b against each hyperparameter: {tracks or 'none varies'}")
    notes = sorted({f"{key}: {note}" for score in scores.values() for key, note in score["notes"].items()})
    for note in notes:
        print(f"note: {note}")
    print(f"(a larger value of this measure is expected to mean {spec.higher_means} generalization; 'oriented' "
          f"multiplies by {evaluation.orientation:+d}, so a positive oriented tau agrees with the card. "
          + ("A [95% CI] is the interval of the score's expected value over test sets of this size for these "
             "models; '(models)' resamples the models instead, the targets as observed.)"
             if evaluation.scoring()["examples_resampled"] else "Intervals resample models only: the collection "
                                                                 "keeps no per-example outcomes.)"))


def _print_sweep(name: str, evaluations: list[Evaluation]) -> None:
    targets = [target for target in evaluations[0].scores() if "/" not in target]
    rows = [[evaluation.params[name]] + [number(evaluation.scores()[target]["kendall_tau"]) for target in targets]
            for evaluation in evaluations]
    print(f"sweep of {name}: Kendall tau-b")
    print(tabulate(rows, headers=[name] + targets, tablefmt="github", disable_numparse=True))
