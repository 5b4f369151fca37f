"""Reading a card: YAML parsed safely, then the bases it names with ``include:`` applied.

``include: _base.yaml`` or ``include: [_a.yaml, _b.yaml]`` (paths relative to the including card's folder):
bases are applied in order and the card itself last; mappings merge recursively, any other value (a scalar, a
list) replaces the base's; a base may include another. A file whose name starts with ``_`` is a base, never a card
of its own. The resolved card is what the schema validates."""

from __future__ import annotations

import copy
import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sharpbench.errors import CardError

INCLUDE = "include"


@dataclass(frozen=True)
class Card:
    """A card as read: its fields with every base applied, and the sha256 that identifies it (of the card's bytes
    alone without includes; with them, of the card's bytes followed by each base's, recursively)."""

    path: Path
    fields: dict[str, Any]
    sha256: str


# libyaml's parser when PyYAML was built with it (its wheels are): the pure-Python one took 0.3 s of every
# discovery of the built-in cards (96 reads with their includes), more than a digits MLP's whole sharpness computation.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@functools.lru_cache(maxsize=1024)
def _parsed(content: bytes) -> Any:
    """The YAML document in `content`, parsed once per distinct content (keyed by the bytes themselves, so an
    edited file is parsed again); callers get copies."""
    return yaml.load(content.decode("utf-8"), Loader=_LOADER)  # noqa: S506 (a safe loader)


def read_card(path: Path) -> dict[str, Any]:
    """Parse one file safely (no include resolved); a card must be a mapping at its top level."""
    try:
        data = copy.deepcopy(_parsed(Path(path).read_bytes()))
    except OSError as error:
        raise CardError(path, "<file>", f"a readable file ({error.strerror})") from None
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise CardError(path, "<file>", f"valid YAML ({error})") from None
    if not isinstance(data, dict):
        raise CardError(path, "<file>", "a mapping of fields at the top level", type(data).__name__)
    return data


def load_card(path: Path) -> Card:
    """Read a card and resolve its includes; a missing base or a cycle is a CardError naming the field include."""
    path = Path(path)
    fields, chain = _resolve(path, ())
    return Card(path, fields, hashlib.sha256(chain).hexdigest())


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`override` applied over `base`: mappings merge recursively, any other value replaces the base's."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _resolve(path: Path, including: tuple[Path, ...]) -> tuple[dict[str, Any], bytes]:
    """(the card's resolved fields, its bytes followed by each base's chain of bytes); `including` is the chain of
    cards that led here, to catch a cycle."""
    data = read_card(path)
    chain = path.read_bytes()
    resolved: dict[str, Any] = {}
    for base in _bases(data.pop(INCLUDE, []), path):
        if base.resolve() in {p.resolve() for p in (*including, path)}:
            cycle = " -> ".join(p.name for p in (*including, path, base))
            raise CardError(path, INCLUDE, f"bases that do not include each other (a cycle: {cycle})", base.name)
        fields, base_chain = _resolve(base, (*including, path))
        resolved = merge(resolved, fields)
        chain += base_chain
    return merge(resolved, data), chain


def _bases(value: Any, path: Path) -> list[Path]:
    """The files an include field names, checked to exist."""
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not all(isinstance(name, str) and name for name in names):
        raise CardError(path, INCLUDE, "a file name or a list of file names (relative to the card's folder)", value)
    bases = [path.parent / name for name in names]
    for base in bases:
        if not base.is_file():
            raise CardError(path, INCLUDE, f"an existing base card (no file at {base})", base.name)
    return bases
