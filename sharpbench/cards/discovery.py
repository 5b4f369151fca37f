"""Discovery of cards: the built-in registry/ folder plus each --include-path folder of the user's.

Every root has the same layout: ROOT/measures/*.yaml and ROOT/collections/*.yaml; a file whose name starts
with ``_`` is a base that cards include (see :mod:`sharpbench.cards.include`), not a card. Two cards with the
same name are an error naming both files, so a user's card never silently shadows a built-in one. The
cards of imported collections (`sharpbench collection import`) live in $SHARPBENCH_HOME/imported/.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, TypeVar

from sharpbench.collection.spec import CollectionSpec, load_collection_spec
from sharpbench.errors import CardError, SharpbenchError, UnknownNameError
from sharpbench.cards.measure_card import MeasureSpec, load_measure_spec
from sharpbench.paths import builtin_registry, sharpbench_home

Spec = TypeVar("Spec", MeasureSpec, CollectionSpec)


@dataclass(frozen=True)
class Registry:
    """All measure and collection cards found under the registry roots, by name."""

    measures: dict[str, MeasureSpec]
    collections: dict[str, CollectionSpec]

    @classmethod
    def discover(cls, include_paths: Iterable[Path | str] = ()) -> "Registry":
        """Scan the built-in registry and then each include path, validating every card."""
        roots = [builtin_registry(), sharpbench_home() / "imported"]
        for extra in include_paths:
            root = Path(extra).expanduser()
            if not root.is_dir():
                raise SharpbenchError(f"include path {extra}: no such folder (it should hold measures/ "
                                      f"and/or collections/ with YAML cards)")
            if not (root / "measures").is_dir() and not (root / "collections").is_dir():
                raise SharpbenchError(f"include path {extra}: holds neither measures/ nor collections/; "
                                      f"put measure cards in {root / 'measures'} and collection cards in "
                                      f"{root / 'collections'}")
            if not any(root.resolve() == known.resolve() for known in roots):    # the same folder twice: once
                roots.append(root)
        return cls(
            measures=_scan(roots, "measures", load_measure_spec),
            collections=_scan(roots, "collections", load_collection_spec),
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


def _scan(roots: list[Path], folder: str, load: Callable[[Path], Spec]) -> dict[str, Spec]:
    found: dict[str, Spec] = {}
    for root in roots:
        for path in sorted((root / folder).glob("*.yaml")):
            if path.name.startswith("_"):
                continue
            spec = load(path)
            if spec.name in found:
                raise CardError(path, "name", f"a name not already used by {found[spec.name].path}", spec.name)
            found[spec.name] = spec
    return found
