"""`sharpbench leaderboard build|verify|reproduce|rescore`: the leaderboard's README.md and index.html from its
result files, the recomputation of a sample of each result file's values, the whole publication redone, and the
published values scored again by the current scoring code."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from tabulate import tabulate
from tqdm.auto import tqdm

from sharpbench.cards.discovery import Registry
from sharpbench.collection.collection import open_collection
from sharpbench.collection.export import export_collection
from sharpbench.evaluation.run import resolve_device
from sharpbench.leaderboard.build import build as build_leaderboard
from sharpbench.cli.evaluate import published_or_built
from sharpbench.cli.outputs import output_folder
from sharpbench.errors import SharpbenchError
from sharpbench.evaluation.store import ResultStore
from sharpbench.leaderboard.builds import build_folder, published_sha256
from sharpbench.leaderboard.reproduce import Outcome, plan, reproduce as run_reproduction
from sharpbench.leaderboard.rescore import Rescored, rescore
from sharpbench.leaderboard.verify import FileCheck, plan as verify_plan, recompute
from sharpbench.paths import sharpbench_home

DEFAULT_SAMPLE = 3


def add_parser(commands: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    """The `leaderboard` subcommand and its actions."""
    actions = commands.add_parser("leaderboard", help="the published leaderboard").add_subparsers(
        dest="action", required=True)
    build_action = actions.add_parser("build", parents=parents,
                                      help="render DIR/README.md and DIR/index.html from DIR/results/*/*.json")
    build_action.set_defaults(run=build)
    verify_action = actions.add_parser(
        "verify", parents=parents,
        help="recompute a seeded sample of the models of every result file under DIR/results/ and compare the "
             "values within each measure card's tolerance (exit 1 when one differs, 2 when a file cannot be "
             "checked here)")
    verify_action.add_argument("--sample", type=sample_size, default=DEFAULT_SAMPLE, metavar="K",
                               help=f"models per result file, drawn by a seeded generator (default "
                                    f"{DEFAULT_SAMPLE}; a measure published in groups of models also recomputes "
                                    f"one of its group beside a model sampled alone); 0 or 'all' for every model")
    verify_action.add_argument("--seed", type=int, default=0,
                               help="seed of the sample (default 0): two runs with one seed check the same models")
    verify_action.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    verify_action.set_defaults(run=verify)
    reproduce_action = actions.add_parser(
        "reproduce", parents=parents,
        help="redo the whole publication: every built-in measure on every published collection (building those "
             "not built here) at its defaults, and the study's radius sweeps of the sharpness variants; publish "
             "each and build the tables (values the results store holds for the current code are reused)")
    _collection_option(reproduce_action)
    reproduce_action.add_argument("--measure", action="append", metavar="NAME",
                                  help="only this measure (repeatable; default: every built-in measure)")
    reproduce_action.add_argument("--no-sweeps", action="store_true", help="the defaults only, no radius sweeps")
    reproduce_action.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    reproduce_action.set_defaults(run=reproduce)
    rescore_action = actions.add_parser(
        "rescore", parents=parents,
        help="score every result file under DIR/results again with this checkout's scoring code, from the file's "
             "own values and the published build's per-example outcomes (a file computed by other code is left "
             "as it is and listed; exit 1 then); then build the tables")
    _collection_option(rescore_action)
    rescore_action.set_defaults(run=rescore_results)


def _collection_option(action: argparse.ArgumentParser) -> None:
    action.add_argument("--collection", action="append", metavar="NAME",
                        help="only this collection (repeatable; default: every collection with results under "
                             "DIR/results)")


def sample_size(text: str) -> int:
    """--sample K: a count of models, 0 or 'all' for every model."""
    if text.strip().lower() == "all":
        return 0
    try:
        count = int(text)
    except ValueError:
        count = -1
    if count < 0:
        raise argparse.ArgumentTypeError(f"expected a number of models (0 or 'all' for every model), got {text!r}")
    return count


def build(args: argparse.Namespace, registry: Registry) -> int:
    """Write the leaderboard's README.md and index.html; prints each path."""
    for path in build_leaderboard(Path(args.leaderboard_dir)):
        print(f"wrote {path}")
    return 0


def verify(args: argparse.Namespace, registry: Registry) -> int:
    """Recompute each result file's sample, print a table of verdicts and a line per failure, note or problem;
    exit 0 when every file verified, 1 when a value differs beyond its tolerance, 2 when a file could not be
    checked here (and none differs)."""
    start = time.perf_counter()
    device = resolve_device(args.device)
    checks = verify_plan(Path(args.leaderboard_dir), registry, sample=args.sample, seed=args.seed, home=sharpbench_home(),
                  data_paths=args.data_paths)
    total = sum(len(check.models) for check in checks if check.problem is None)
    with tqdm(total=total, desc="verifying", unit="model", disable=args.no_progress) as bar:
        for check in checks:
            if check.problem is None:
                bar.set_postfix_str(f"{check.document['collection']}/{check.document['variant']}")
                recompute(check, device, bar.update)
    print(tabulate([_row(check) for check in checks],
                   headers=["file", "models checked", "max relative difference", "tolerance", "verdict"],
                   tablefmt="github", disable_numparse=True, colalign=("left", "right", "right", "right", "left")))
    for check in checks:
        for line in _lines(check):
            print(line)
    verdicts = [check.verdict for check in checks]
    failed, unverifiable = verdicts.count("failed"), verdicts.count("not verifiable")
    sample = "every model" if args.sample == 0 else (f"{args.sample} sampled models each, a model published in a "
                                                     f"group recomputed in one")
    print(f"{verdicts.count('verified')} of {len(checks)} result files verified ({sample}, sample seed "
          f"{args.seed}, on {device}) in {time.perf_counter() - start:.0f} s; {failed} failed; {unverifiable} not "
          f"verifiable here")
    return 1 if failed else 2 if unverifiable else 0


def _row(check: FileCheck) -> list[str]:
    largest = check.max_relative
    return [str(check.path), f"{len(check.differences)} of {len(check.document['models'])}",
            "n/a" if largest is None else f"{largest:.1e}",
            "n/a" if check.tolerance is None else f"{check.tolerance:g}", check.verdict]


def _lines(check: FileCheck) -> list[str]:
    """What a user reads under the table about one file: each failing model, other code, the fix."""
    # main imports this module to register the subcommand
    from sharpbench.cli.main import render_error

    lines = [f"FAILED {check.path}: model '{mismatch.model}': stored {mismatch.stored!r}, recomputed "
             f"{mismatch.recomputed!r} (relative difference {mismatch.relative:.1e} > tolerance {check.tolerance:g})"
             for mismatch in check.mismatches]
    if check.other_code:
        lines.append(f"note: {check.path} was computed by other code ({', '.join(check.other_code)} differ from "
                     f"this checkout's); its values were compared all the same")
    if check.other_collection:
        lines.append(f"note: {check.path} was computed on another build of collection "
                     f"'{check.document['collection']}' (its manifest sha256 differs from the one built here); its "
                     f"values were compared all the same")
    if check.problem is not None:
        label = "NOT VERIFIABLE" if check.verdict == "not verifiable" else "NOT FINISHED"
        lines.append(f"{label} {check.path}: {render_error(check.problem)}")
    return lines


def rescore_results(args: argparse.Namespace, registry: Registry) -> int:
    """Re-score the result files with a bar of files, list those left alone and why, then build the tables."""
    root = Path(args.leaderboard_dir)
    output_folder(root, "--leaderboard-dir")
    start = time.perf_counter()
    total = len(list((root / "results").glob("*/*.json")))
    with tqdm(total=total, desc="rescoring", unit="file", disable=args.no_progress) as bar:
        def report(outcome: Rescored) -> None:
            bar.set_postfix_str(f"{outcome.path.parent.name}/{outcome.path.stem}")
            bar.update(1)
        done = rescore(root, registry, home=sharpbench_home(), data_paths=args.data_paths,
                       collections=args.collection, on_file=report)
    left = [outcome for outcome in done if outcome.problem]
    for outcome in left:
        print(f"left as it is: {outcome.path}: {outcome.problem}")
    print(f"{len(done) - len(left)} of {len(done)} result files re-scored in {time.perf_counter() - start:.0f} s")
    for path in build_leaderboard(root):
        print(f"wrote {path}")
    return 1 if left else 0


def reproduce(args: argparse.Namespace, registry: Registry) -> int:
    """Evaluate, publish and build every step of the publication with a bar of steps; print what each skipped
    step lacked and the wall time per collection and measure. Exit 0 when every step published or was skipped for
    a stated reason."""
    root = Path(args.leaderboard_dir)
    output_folder(root, "--leaderboard-dir")
    device = resolve_device(args.device)
    measures = args.measure or sorted(name for name, spec in registry.measures.items()
                                      if registry.origin(spec) == "built-in")
    for name in measures:
        registry.measure(name).implementation()          # a broken card or misspelled name fails before any work
    published = sorted(p.name for p in (root / "results").iterdir() if p.is_dir()) if (root / "results").is_dir() else []
    collections = args.collection or published
    if not collections:
        raise SharpbenchError(f"{root / 'results'} holds no collection to reproduce: name one with --collection NAME")
    for name in collections:
        registry.collection(name)
    steps = plan(registry, collections, measures, sweeps=not args.no_sweeps)
    home = sharpbench_home()
    store = ResultStore(home / "results.sqlite")
    with tqdm(total=len(steps), desc="reproducing", unit="step", disable=args.no_progress) as bar:
        def report(outcome: Outcome) -> None:
            bar.set_postfix_str(outcome.step.label())
            bar.update(1)
            if outcome.skipped:
                tqdm.write(f"skipped {outcome.step.label()}: {outcome.skipped}")
        try:
            done = run_reproduction(steps, registry,
                                    lambda name: published_or_built(registry, name, home, args, publishing=True),
                                    store, root, device, report)
        finally:
            store.close()
    for name in collections:
        if published_sha256(root, name) is None:
            collection = open_collection(registry.collection(name), home, args.data_paths)
            written = export_collection(collection, build_folder(root, name))
            print(f"exported the build of '{name}' its results come from to {build_folder(root, name)} "
                  f"({written} files)")
    for path in build_leaderboard(root):
        print(f"wrote {path}")
    rows: dict[tuple[str, str], list[float]] = {}
    for outcome in done.outcomes:
        entry = rows.setdefault((outcome.step.collection, outcome.step.measure), [0, 0, 0.0])
        entry[0] += outcome.path is not None
        entry[1] += outcome.computed
        entry[2] += outcome.seconds
    print(tabulate([[c, m, n, k, f"{s:.1f}"] for (c, m), (n, k, s) in rows.items()],
                   headers=["collection", "measure", "published", "models computed", "seconds"], tablefmt="github"))
    skipped = [o for o in done.outcomes if o.skipped]
    print(f"{len(done.outcomes) - len(skipped)} of {len(done.outcomes)} results published, {len(skipped)} skipped "
          f"(the measure does not apply; reasons above), in {done.seconds:.0f} s on {device}")
    return 0
