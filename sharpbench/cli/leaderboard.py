"""`sharpbench leaderboard build`: the leaderboard's README.md and index.html from its result files."""

from __future__ import annotations

import argparse
from pathlib import Path

from sharpbench.cards.discovery import Registry
from sharpbench.leaderboard.build import build as build_leaderboard


def add_parser(commands: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    """The `leaderboard` subcommand and its one action."""
    actions = commands.add_parser("leaderboard", help="the published leaderboard").add_subparsers(
        dest="action", required=True)
    build_action = actions.add_parser("build", parents=parents,
                                      help="render DIR/README.md and DIR/index.html from DIR/results/*/*.json")
    build_action.set_defaults(run=build)


def build(args: argparse.Namespace, registry: Registry) -> int:
    """Write the leaderboard's README.md and index.html; prints each path."""
    for path in build_leaderboard(Path(args.leaderboard_dir)):
        print(f"wrote {path}")
    return 0
