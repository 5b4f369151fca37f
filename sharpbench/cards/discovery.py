"""Discovery of cards, from every registry root in this order: the built-in registry/ folder, the folders of
installed plugins (the entry-point group ``sharpbench.registry``, by entry-point name; see
:mod:`sharpbench.cards.plugins`), each folder of $SHARPBENCH_INCLUDE_PATH, each --include-path folder, and the cards
of imported collections (`sharpbench collection import`) in $SHARPBENCH_HOME/imported/.

Every root has the same layout: ROOT/measures/*.yaml and ROOT/collections/*.yaml; a file whose name starts
with ``_`` is a base that cards include (see :mod:`sharpbench.cards.include`), not a card. Two cards with the
same name are an error naming both files, so a user's card never silently shadows a built-in one. Discovery only
reads: it creates nothing, and a home that is missing or not a folder has no imported cards.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from sharpbench.cards.measure_card import MeasureSpec, load_measure_spec
from sharpbench.cards.plugins import installed_plugins
from sharpbench.collection.spec import CollectionSpec, load_collection_spec
from sharpbench.errors import CardError, SharpbenchError, UnknownNameError
from sharpbench.paths import builtin_registry, home_path

INCLUDE_ENV = "SHARPBENCH_INCLUDE_PATH"

Spec = TypeVar("Spec", MeasureSpec, CollectionSpec)


@dataclass(frozen=True)
class Root:
    """A folder of cards and how a listing names its origin: 'built-in', 'plugin NAME', 'include path DIR' or
    'imported'."""

    path: Path
    origin: str


@dataclass(frozen=True)
class Registry:
    """All measure and collection cards found under the registry roots, by name, and each card's origin."""

    measures: dict[str, MeasureSpec]
    collections: dict[str, CollectionSpec]
    origins: dict[Path, str] = field(default_factory=dict)   # a card's path -> the origin of its root

    @classmethod
    def discover(cls, include_paths: Iterable[Path | str] = ()) -> Registry:
        """Scan every root (built-in, plugins, $SHARPBENCH_INCLUDE_PATH, `include_paths`, imported), validating
        every card; a folder met twice is read once."""
        roots = _roots(include_paths)
        origins: dict[Path, str] = {}
        return cls(
            measures=_scan(roots, "measures", load_measure_spec, origins),
            collections=_scan(roots, "collections", load_collection_spec, origins),
            origins=origins,
        )

    def measure(self, name: str) -> MeasureSpec:
        """The measure card called `name`, or an error listing close names."""
        if name not in self.measures:
            raise UnknownNameError("measure", name, sorted(self.measures))
        return self.measures[name]

    def collection(self, name: str) -> CollectionSpec:
        """The collection card called `name`, or an error listing close names."""
        if name not in self.collections:
            raise UnknownNameError("collection", name, sorted(self.collections))
        return self.collections[name]

    def origin(self, spec: MeasureSpec | CollectionSpec) -> str:
        """Where a discovered card was found: 'built-in', 'plugin NAME', 'include path DIR' or 'imported'."""
        return self.origins[spec.path]


def find_measure(name: str, include_paths: Iterable[Path | str] = ()) -> MeasureSpec:
    """The measure card called `name` from every root's measure cards, checked as `Registry.discover` checks
    them, without reading the collection cards (a third of discovery's time, which a notebook's
    `compute_measure` on a small model pays on every call)."""
    measures = _scan(_roots(include_paths), "measures", load_measure_spec, {})
    if name not in measures:
        raise UnknownNameError("measure", name, sorted(measures))
    return measures[name]


def _roots(include_paths: Iterable[Path | str]) -> list[Root]:
    """The registry roots in discovery order (built-in, plugins, $SHARPBENCH_INCLUDE_PATH, `include_paths`,
    imported), each folder once."""
    roots = [Root(builtin_registry(), "built-in")]
    for plugin in installed_plugins():
        _add(roots, _checked(Root(plugin.root, plugin.origin), plugin.where, plugin.fix, plugin.fix))
    from_env = [entry for entry in os.environ.get(INCLUDE_ENV, "").split(os.pathsep) if entry]
    for extra, source in [*((entry, f" (from ${INCLUDE_ENV})") for entry in from_env),
                          *((entry, "") for entry in include_paths)]:
        root = Path(extra).expanduser()
        _add(roots, _checked(Root(root, f"include path {root}"), f"include path {extra}{source}",
                             "give a folder that holds measures/ and/or collections/ with YAML cards",
                             f"put measure cards in {root / 'measures'} and collection cards in "
                             f"{root / 'collections'}"))
    imported = home_path() / "imported"
    if imported.is_dir():
        _add(roots, Root(imported, "imported"))
    return roots


def _checked(root: Root, where: str, missing_fix: str, empty_fix: str) -> Root:
    """The root, once it is known to be a folder of cards; else an error naming it (`where`) and the fix."""
    if not root.path.is_dir():
        raise SharpbenchError(f"{where}: no such folder {root.path}; {missing_fix}")
    if not (root.path / "measures").is_dir() and not (root.path / "collections").is_dir():
        raise SharpbenchError(f"{where}: {root.path} holds neither measures/ nor collections/; {empty_fix}")
    return root


def _add(roots: list[Root], root: Root) -> None:
    """Append a root unless its folder is already among the roots (the same folder given twice is read once)."""
    if not any(root.path.resolve() == known.path.resolve() for known in roots):
        roots.append(root)


def _scan(roots: list[Root], folder: str, load: Callable[[Path], Spec], origins: dict[Path, str]) -> dict[str, Spec]:
    found: dict[str, Spec] = {}
    for root in roots:
        for path in sorted((root.path / folder).glob("*.yaml")):
            if path.name.startswith("_"):
                continue
            spec = load(path)
            if spec.name in found:
                raise CardError(path, "name", f"a name not already used by {found[spec.name].path}", spec.name)
            found[spec.name] = spec
            origins[spec.path] = root.origin
    return found
