"""Cards from installed packages: the entry-point group ``sharpbench.registry``.

A package registers a folder laid out as an include path (``measures/`` and/or ``collections/`` with YAML cards)::

    [project.entry-points."sharpbench.registry"]
    mypkg = "mypkg:CARDS"        # a str or os.PathLike, or a function returning one

Its cards may name the package's own code (``function: mypkg.measures:fn``). A plugin that cannot be read would
break every command, so each failure is a one-line error naming the entry point, its package and the fix."""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points, packages_distributions
from pathlib import Path

from sharpbench.errors import SharpbenchError

GROUP = "sharpbench.registry"


@dataclass(frozen=True)
class Plugin:
    """One registered folder of cards: the entry point's name, how to name it in an error, and the folder."""

    name: str
    where: str   # "plugin 'NAME' (entry point 'mod:attr' of the package DIST VERSION)"
    fix: str     # what the user does about a broken one
    root: Path

    @property
    def origin(self) -> str:
        """How listings and provenance name where a card came from."""
        return f"plugin {self.name}"


def installed_plugins() -> list[Plugin]:
    """Every entry point of the group, loaded, in the order of their names; the folders are not checked here."""
    return [_load(entry) for entry in sorted(entry_points(group=GROUP), key=lambda entry: entry.name)]


def _load(entry: EntryPoint) -> Plugin:
    """Load one entry point: a path, or a function called for one; anything else is a SharpbenchError."""
    dist = entry.dist
    package = f"{dist.name} {dist.version}" if dist is not None else "that provides it"
    where = f"plugin '{entry.name}' (entry point '{entry.value}' in group {GROUP} of the package {package})"
    fix = (f"fix the package or uninstall it (pip uninstall {dist.name})" if dist is not None
           else "fix or uninstall the package that provides it")
    try:
        target = entry.load()
        if callable(target) and not isinstance(target, (str, os.PathLike)):
            target = target()
    except Exception as error:  # noqa: BLE001 - the package's own code failed: name the plugin, no traceback
        detail = " ".join(str(error).split())
        raise SharpbenchError(f"{where} failed to load ({type(error).__name__}: {detail}); {fix}") from None
    if not isinstance(target, (str, os.PathLike)):
        raise SharpbenchError(f"{where} gave {type(target).__name__} {target!r}, not the path of a folder of "
                              f"cards (a str or os.PathLike); {fix}")
    return Plugin(entry.name, where, fix, Path(target))


def plugin_of_package(top_level: str) -> str | None:
    """The entry-point name of the plugin whose installed distribution provides the top-level package
    `top_level`, or None where no installed plugin's files list it (e.g. an editable install)."""
    registered = [entry for entry in entry_points(group=GROUP) if entry.dist is not None]
    if not registered:   # the common case: no plugin, and no scan of every installed package's files
        return None
    providers = set(packages_distributions().get(top_level, ()))
    names = sorted(entry.name for entry in registered if entry.dist.name in providers)
    return names[0] if names else None
