"""`sharpbench measure new|check`: start a measure from a working scaffold, and check a measure's properties on
tiny in-memory models (optionally publishing them for the leaderboard)."""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

from tabulate import tabulate
from tqdm.auto import tqdm

from sharpbench.cards.discovery import Registry
from sharpbench.cli.outputs import output_file, output_folder
from sharpbench.cards.scaffold import write_scaffold
from sharpbench.errors import SharpbenchError
from sharpbench.evaluation.check_models import ARCHITECTURES
from sharpbench.evaluation.properties import (
    INVARIANCE_TOLERANCE,
    REQUIRED,
    RESCALING_FACTORS,
    CheckReport,
    check_measure,
)
from sharpbench.leaderboard.properties import publish_properties

FAILED_CHECK = 1     # a required property failed (a user's mistake, such as an unknown name, is 2)


def add_parser(commands: argparse._SubParsersAction, parents: list[argparse.ArgumentParser],
               leaderboard_dir: argparse.ArgumentParser) -> None:
    """The `measure` subcommand and its actions `new` and `check`."""
    actions = commands.add_parser("measure", help="start a new measure, or check a measure's properties"
                                  ).add_subparsers(dest="action", required=True)
    new = actions.add_parser("new", parents=parents,
                             help="write DIR/measures/NAME.yaml, its implementation and a unit test, ready to run")
    new.add_argument("name", metavar="NAME", help="the new measure's name (lower case letters, digits, '.', '_', '-')")
    new.add_argument("--path", default=".", metavar="DIR", help="the folder to write into (default: the current one)")
    new.set_defaults(run=run_new)
    check = actions.add_parser("check", parents=[*parents, leaderboard_dir],
                               help="run a measure on tiny in-memory models and report its properties")
    check.add_argument("name", metavar="NAME", help="a registered measure (see `sharpbench list measures`)")
    check.add_argument("--json", metavar="PATH", help="write the properties and the per-model details as JSON")
    check.add_argument("--publish", action="store_true",
                       help="also write them to DIR/properties/NAME.json for the leaderboard")
    check.set_defaults(run=run_check)


def run_new(args: argparse.Namespace, registry: Registry) -> int:
    """Write the scaffold of a new measure and print the three commands that run it."""
    if args.name in registry.measures:
        raise SharpbenchError(f"a measure '{args.name}' is already registered ({registry.measures[args.name].path}); "
                              f"choose another name")
    root = Path(args.path)
    scaffold = write_scaffold(args.name, root)
    for path in scaffold.paths:
        print(f"wrote {path}")
    include = shlex.quote(str(root))
    print("next, from here:")
    print(f"  sharpbench measure check {args.name} --include-path {include}")
    print(f"  pytest {shlex.quote(str(scaffold.test))}")
    print(f"  sharpbench evaluate --measure {args.name} --include-path {include}")
    return 0


def run_check(args: argparse.Namespace, registry: Registry) -> int:
    """Check the measure, print its table and properties, write --json and --publish; exit 1 when a required
    property fails."""
    spec = registry.measure(args.name)
    spec.implementation()   # a broken card or implementation is a user error (2), before any model is built
    json_path = output_file(args.json, "--json") if args.json else None   # so is an output that cannot be written
    if args.publish:
        output_folder(Path(args.leaderboard_dir), "--leaderboard-dir")
    steps = len(ARCHITECTURES) * (2 if spec.computes_many else 1) + 1
    with tqdm(total=steps, desc=f"checking {spec.name}", unit="step", disable=args.no_progress,
              leave=False) as bar:
        started: list[str] = []

        def advance(step: str) -> None:   # a step starts: the one before it is done
            bar.update(1 if started else 0)
            started.append(step)
            bar.set_postfix_str(step)
        report = check_measure(spec, progress=advance)
        bar.update(1)
    _print_report(report)
    document = report.document()
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        print(f"properties written to {json_path}")
    if args.publish:
        print(f"properties published to {publish_properties(document, Path(args.leaderboard_dir))}")
        print("run `sharpbench leaderboard build` to show them beside the scores")
    return 0 if report.passed else FAILED_CHECK


def _mark(value: bool | None, absent: str = "n/a") -> str:
    return {True: "yes", False: "NO", None: absent}[value]


def _print_report(report: CheckReport) -> None:
    spec = report.spec
    params = ", ".join(f"{key}={value}" for key, value in report.params.items()) or "no parameters"
    print(f"{spec.name} ({spec.function}; {params}) on tiny models, {report.seconds:.1f} s")
    rows = []
    for name, check in report.models.items():
        value = {"ok": f"{check.value:.6g}" if check.value is not None else "", "failed": "FAILED",
                 "not applicable": "not applicable"}[check.status]
        rows.append((name, value, _mark(check.deterministic), _mark(check.unchanged),
                     _mark(check.many_equals_single, "not offered" if not spec.computes_many else "n/a"),
                     "n/a" if check.cost_passes is None else f"{check.cost_passes:.3g}"))
    print(tabulate(rows, headers=["model", "value", "deterministic", "unchanged", "many = single",
                                  "cost (passes)"], tablefmt="github", disable_numparse=True))
    tolerance = report.invariance["tolerance"]
    notes = {
        "finite": "a finite number on every model it applies to",
        "deterministic": "two calls with the generator seeded alike agree bit for bit",
        "unchanged": "weights, buffers, train/eval modes and batches as given, bit for bit",
        "many_equals_single": (f"many([m1, m2]) = [single(m1), single(m2)] within {spec.tolerance:g} relative"
                               if spec.computes_many else "no many-model form"),
        "rescaling_invariant": f"MLP layer scaled by {' and by '.join(f'{a:g}' for a in RESCALING_FACTORS)}, "
                               f"the next by the inverse: value within {tolerance:g} relative",
        "permutation_invariant": f"MLP hidden units permuted: value within {tolerance:g} relative",
    }
    rows = [(name, _mark(value), ("required" if name in REQUIRED else "property") + ": " + notes[name])
            for name, value in report.properties.items()]
    cost = report.cost_passes
    rows.append(("cost_passes", "n/a" if cost is None else f"{cost:.3g}",
                 "one call's wall time in forward+backward passes of the loss, on the MLP"))
    print(tabulate(rows, headers=["property", "holds", "test"], tablefmt="github", disable_numparse=True))
    for model, check in report.models.items():
        if check.status == "not applicable":
            print(f"not applicable to {model}: {check.error}")
    failures = report.failures()
    if failures:
        print("FAILED:")
        for line in failures:
            print(f"  {line}")
    else:
        print(f"passed: every required property holds (invariances compared within {tolerance:g}, at least "
              f"{INVARIANCE_TOLERANCE:g}: see docs/cli.md)")
