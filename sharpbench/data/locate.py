"""Where dataset files (and local checkpoints) are found: the folders the user names, well-known system
locations, or the hub.

:class:`DataPaths` is the explicit list of the user's data folders: the CLI makes it from ``--data-dir``, a script
passes its own, and :meth:`DataPaths.from_env` reads ``$SHARPBENCH_DATA`` when none is given. Order of the
search, first hit wins: those folders (DIR/NAME, then DIR itself), then the system folders a dataset declares
(Debian's ``dataset-fashion-mnist`` installs ``/usr/share/datasets/fashion-mnist/``). A loader that finds nothing
locally may fall back to the Hugging Face hub; when that fails too, :class:`DataNotFoundError` says which of the
three to provide.
"""

from __future__ import annotations

import contextlib
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from sharpbench.errors import Hint, SharpbenchError

DATA_ENV = "SHARPBENCH_DATA"


class DataNotFoundError(SharpbenchError):
    """A dataset is in none of the places searched; the message lists them and how to provide each."""

    def __init__(self, message: str) -> None:
        super().__init__(message, hints=[Hint("data_dir")])


class DataFileError(SharpbenchError):
    """A dataset file was found but cannot be read: unreadable, damaged or truncated."""


@contextlib.contextmanager
def reading(path: Path, what: str) -> Iterator[None]:
    """Turn the errors of reading a dataset file (permissions, a damaged or truncated gzip, bad text or JSON) into
    one DataFileError naming the file and the fix."""
    try:
        yield
    except (OSError, EOFError, zlib.error, UnicodeDecodeError, ValueError, KeyError) as error:
        text = str(error).splitlines()[0] if str(error) else "no detail"
        reason = getattr(error, "strerror", None) or text
        raise DataFileError(f"{path} cannot be read as {what} ({type(error).__name__}: {reason}); it is damaged, "
                            f"truncated or not readable: replace it with a good copy, or move it aside so that "
                            f"another data folder is searched.", hints=[Hint("data_dir")]) from None


@dataclass(frozen=True)
class DataPaths:
    """The user's data folders, searched in order for datasets and local checkpoints."""

    folders: tuple[Path, ...] = ()

    @classmethod
    def of(cls, *folders: Path | str) -> "DataPaths":
        """DataPaths of these folders (``~`` expanded)."""
        return cls(tuple(Path(folder).expanduser() for folder in folders))

    @classmethod
    def from_env(cls) -> "DataPaths":
        """The folders of ``$SHARPBENCH_DATA`` (os.pathsep-separated), in order."""
        return cls.of(*(part for part in os.environ.get(DATA_ENV, "").split(os.pathsep) if part))

    def find_dir(self, name: str, required: Sequence[str], system_dirs: Sequence[str | Path] = ()) -> Path | None:
        """The first folder holding every file in ``required``: DIR/NAME or DIR itself for each data folder, then
        each system folder; None when no folder has them all."""
        candidates = [candidate for root in self.folders for candidate in (root / name, root)]
        candidates += [Path(folder) for folder in system_dirs]
        for folder in candidates:
            if all((folder / file).is_file() for file in required):
                return folder
        return None

    def find_folder(self, name: str) -> Path | None:
        """The first DIR/NAME of the data folders that is a non-empty folder (for datasets of many files)."""
        for root in self.folders:
            folder = root / name
            if folder.is_dir() and any(folder.iterdir()):
                return folder
        return None

    def find_file(self, name: str | Path) -> Path | None:
        """An absolute path as it is, else the first DIR/name of the data folders, else name itself, if a file."""
        path = Path(name).expanduser()
        candidates = [path] if path.is_absolute() else [root / path for root in self.folders] + [path]
        return next((candidate for candidate in candidates if candidate.is_file()), None)

    def not_found_message(self, name: str, required: Sequence[str], system_dirs: Sequence[str | Path] = (),
                          hub_id: str | None = None, hub_error: str | None = None, package: str | None = None) -> str:
        """The text of a DataNotFoundError: what was searched and the ways to provide the data."""
        searched = [f"{root / name} or {root}" for root in self.folders] + [str(d) for d in system_dirs]
        ways = [f"a data folder DIR holding {', '.join(required)} (in DIR/{name}/ or in DIR itself)"]
        if system_dirs:
            install = f" (on Debian/Ubuntu: `apt-get install {package}`)" if package else ""
            ways.append(f"the system copy in {system_dirs[0]}{install}")
        if hub_id:
            ways.append(f"network access to the Hugging Face hub for '{hub_id}' (unset HF_DATASETS_OFFLINE and "
                        f"HF_HUB_OFFLINE), or a local copy of it named by the card's hub_id"
                        + (f"; the hub said: {hub_error}" if hub_error else ""))
        return "\n".join([f"dataset '{name}' not found (searched: {', '.join(searched) or 'no local folder'}). "
                          f"Provide {'one of' if len(ways) > 1 else 'it as'}:"]
                         + [f"  {i}. {way}" for i, way in enumerate(ways, start=1)])
