"""The `sharpbench` command line: evaluate, list, collection build|pull|import, leaderboard build.

This module holds the parser and the dispatch; each subcommand lives in its own module (cli/evaluate.py,
cli/listing.py, cli/collection.py, cli/leaderboard.py). It also renders errors: a SharpbenchError is one message,
its hints written as the commands to type, and exit status 2 (130 for an interrupted run), never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from sharpbench.cards.discovery import Registry
from sharpbench.cli import collection, evaluate, leaderboard, listing, measure
from sharpbench.data.locate import DATA_ENV, DataPaths
from sharpbench.errors import Hint, HintAction, SharpbenchError
from sharpbench.leaderboard.build import DEFAULT_DIR as DEFAULT_LEADERBOARD
from sharpbench.version import __version__

# Each hint action as the CLI says it; {collection}, {kind} and {measure} come from the hint (NAME where unset).
HINT_COMMANDS: dict[HintAction, str] = {
    "build": "Run `sharpbench collection build {collection}`.",
    "rebuild": "Rebuild with `sharpbench collection build {collection} --force`.",
    "import": "Import it again with `sharpbench collection import DIR`.",
    "list": "Run `sharpbench list {kind}` to see all.",
    "include_path": "Pass --include-path DIR to load cards of your own.",
    "publish": "Publish with `sharpbench evaluate --measure {measure} --publish`; result files are never edited "
               "by hand.",
    "leaderboard_dir": "Or pass --leaderboard-dir DIR.",
    "resume": "Run the same command again: it resumes from them.",
    "data_dir": "Pass --data-dir DIR (or set $SHARPBENCH_DATA=DIR).",
    "home": "Set SHARPBENCH_HOME=DIR to a writable folder (copy or `sharpbench collection pull` the collections "
            "there).",
    "device": "Pass --device cpu, or --device cuda on a machine with a GPU.",
}


def render_hint(hint: Hint) -> str:
    """A hint as the command that applies the fix."""
    return HINT_COMMANDS[hint.action].format(collection=hint.collection or "NAME", kind=hint.kind or "measures",
                                             measure=hint.measure or "NAME")


def render_error(error: SharpbenchError) -> str:
    """The error's message followed by its hints as commands: what the CLI prints after 'sharpbench: error: '."""
    return " ".join([error.message, *(render_hint(hint) for hint in error.hints)])


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="sharpbench", description=__doc__.partition("\n")[0])
    parser.add_argument("--version", action="version", version=f"sharpbench {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--include-path", action="append", default=[], metavar="DIR",
                        help="a folder with measures/*.yaml and/or collections/*.yaml cards of your own "
                             "(repeatable)")
    common.add_argument("--no-progress", action="store_true", help="hide progress bars")
    common.add_argument("--data-dir", metavar="DIR",
                        help=f"a folder with datasets (DIR/NAME/ or DIR itself); same as ${DATA_ENV}=DIR")
    leaderboard_dir = argparse.ArgumentParser(add_help=False)
    leaderboard_dir.add_argument("--leaderboard-dir", default=str(DEFAULT_LEADERBOARD), metavar="DIR",
                                 help=f"the leaderboard folder (default: ./{DEFAULT_LEADERBOARD} under the current "
                                      f"directory)")
    commands = parser.add_subparsers(dest="command", required=True)
    evaluate.add_parser(commands, [common, leaderboard_dir])
    listing.add_parser(commands, [common])
    collection.add_parser(commands, [common])
    leaderboard.add_parser(commands, [common, leaderboard_dir])
    measure.add_parser(commands, [common], leaderboard_dir)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; user errors are one message and exit status 2, never a traceback."""
    args = build_parser().parse_args(argv)
    # where datasets (and local weights) are found, handed to every collection the command opens
    args.data_paths = DataPaths.of(args.data_dir) if getattr(args, "data_dir", None) else DataPaths.from_env()
    try:
        registry = Registry.discover(args.include_path)
        return args.run(args, registry)
    except SharpbenchError as error:
        print(f"sharpbench: error: {render_error(error)}", file=sys.stderr)
        return error.exit_code
    except BrokenPipeError:     # the reader went away (`sharpbench list measures | head`): stop quietly, as cat does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())   # so that the exit flush cannot fail again
        return 141
    except OSError as error:    # a file or folder that cannot be read or written, met after the checks up front
        where = f"{error.filename}: " if error.filename else ""
        print(f"sharpbench: error: {where}{error.strerror or error} ({type(error).__name__}). Values already computed "
              f"are kept in the results store; fix the path or its permissions and run the command again.",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: finished work is kept; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
