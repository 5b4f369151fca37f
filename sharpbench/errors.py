"""Errors meant for users: each names what is wrong and how to fix it, and the CLI prints it without a traceback.

The fix is data, not text. A raise site words its message neutrally (what is wrong, in the library's terms) and
passes the fix as one or more :class:`Hint` objects::

    raise CollectionError(f"{path}: checksum mismatch", hints=[Hint("rebuild", collection=name)])

``str(error)`` is the message followed by each hint's neutral sentence (what a Python caller reads); the CLI
renders the same hints as the exact commands to type (``sharpbench.cli.main.render_error``), so no library
module spells a command line. A new kind of fix is a new :data:`HintAction` here and one line in the CLI's
renderer (a test checks that every action has one).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

HintAction = Literal["build", "rebuild", "import", "list", "include_path", "publish", "leaderboard_dir", "resume",
                     "data_dir", "home", "device"]


@dataclass(frozen=True)
class Hint:
    """A structured fix attached to an error: an action and what it applies to.

    build: build (or finish building) `collection`; rebuild: build `collection` again from scratch; import: import
    the collection's folder again; list: list the registered cards of `kind` ('measures' or 'collections');
    include_path: load cards from a folder of one's own; publish: publish a result (of `measure`, when known) from
    an evaluation (leaderboard files are written, not edited); leaderboard_dir: point at another leaderboard
    folder; resume: run the interrupted evaluation again, which reuses the stored values; data_dir: name a folder of
    datasets (or local weights); home: point SHARPBENCH_HOME at a writable folder; device: choose a device this
    machine has.
    """

    action: HintAction
    collection: str | None = None
    kind: str | None = None
    measure: str | None = None

    def describe(self) -> str:
        """The fix as one neutral sentence, naming no command line."""
        subject = f"collection '{self.collection}'" if self.collection else "the collection"
        return {
            "build": f"Build {subject}.",
            "rebuild": f"Rebuild {subject} from scratch (build with force).",
            "import": "Import the collection's folder again.",
            "list": f"List the registered {self.kind} to see all.",
            "include_path": "Add a folder of cards of your own to the include paths.",
            "publish": f"Publish {f'the result of {self.measure!r}' if self.measure else 'a result'} from an "
                       f"evaluation; result files are never edited by hand.",
            "leaderboard_dir": "Or point at another leaderboard folder.",
            "resume": "Evaluating again resumes from them.",
            "data_dir": "Name a data folder that holds it (DataPaths, or $SHARPBENCH_DATA).",
            "home": "Set $SHARPBENCH_HOME to a writable folder.",
            "device": "Choose a device this machine has: cpu, cuda or cuda:N where torch.cuda.is_available().",
        }[self.action]


class SharpbenchError(Exception):
    """Base class of every error that the CLI reports as a one-paragraph message; `hints` are its fixes."""

    exit_code = 2

    def __init__(self, message: str, *, hints: Sequence[Hint] = ()) -> None:
        self.message, self.hints = message, tuple(hints)
        super().__init__(" ".join([message, *(hint.describe() for hint in self.hints)]))

    def __reduce__(self) -> tuple:
        """Pickle by state, not by constructor arguments (subclasses take others), so that an error raised in a
        worker process arrives whole, hints included."""
        return _restore, (type(self), self.args), self.__dict__


def _restore(cls: type[SharpbenchError], args: tuple) -> SharpbenchError:
    """An error of class `cls` with exception arguments `args`; its attributes are set from the pickled state."""
    return cls.__new__(cls, *args)


class CardError(SharpbenchError):
    """A YAML card is malformed: names the file, the field and what was expected."""

    def __init__(self, path: Path | str, field: str, expected: str, got: object = None) -> None:
        self.path, self.field, self.expected = Path(path), field, expected
        found = "" if got is None else f" (found {got!r})"
        super().__init__(f"{self.path}: field '{field}': expected {expected}{found}")


class UnknownNameError(SharpbenchError):
    """A measure or collection name that no card defines; lists the close matches."""

    def __init__(self, kind: str, name: str, known: list[str]) -> None:
        import difflib  # only when a name is unknown: keeps `import sharpbench` light

        close = difflib.get_close_matches(name, known, n=3)
        suggestion = f" Did you mean: {', '.join(close)}?" if close else ""
        super().__init__(f"unknown {kind} '{name}'.{suggestion}",
                         hints=[Hint("list", kind=f"{kind}s"), Hint("include_path")])


class MeasureError(SharpbenchError):
    """A measure misbehaved: returned a non-finite value, failed, or changed the model's weights."""


class CollectionError(SharpbenchError):
    """A collection is missing, incomplete, or fails its integrity check."""


class Interrupted(SharpbenchError):
    """A run stopped by the user (Ctrl-C); says how much finished work was kept."""

    exit_code = 130
