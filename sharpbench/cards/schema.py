"""The schema layer shared by every card: typed fields with named constraints, validation of a mapping against a
schema (unknown keys, types, constraints; defaults filled in here, once, when a card is loaded).

`Param` is the schema of one card field, used by the card loaders and the registries (datasets, shifts,
architectures, recipes). A constraint is a small named object (`positive`, `in_range(0, 1, closed="left")`,
`one_of("sgd", "adam")`, ...) whose description is what an error message says was expected."""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from sharpbench.errors import CardError

_TYPE_NAMES = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
               dict: "a mapping", list: "a list", object: "a value"}
_PLURALS = {bool: "booleans", int: "integers", float: "numbers", str: "strings", object: "items"}


def type_name(kind: type) -> str:
    """How an error message names a field's type: 'an integer', 'a number', ..."""
    return _TYPE_NAMES.get(kind, kind.__name__)


@dataclass(frozen=True)
class Constraint:
    """A named check on a field's value. ``template`` describes what is expected; ``{}`` in it stands for the
    field's type ('{} > 0' reads 'an integer > 0'), a template without it is the whole description."""

    template: str
    test: Callable[[Any], bool]

    def __call__(self, value: Any) -> bool:
        return bool(self.test(value))

    def describe(self, kind: type) -> str:
        """What a value of type `kind` must be, as an error message says it."""
        return self.template.format(type_name(kind)) if "{}" in self.template else self.template


positive = Constraint("{} > 0", lambda v: v > 0)

# What a card's name may be: it names a folder, a result file and a variant, so it is the pattern of a name in the
# results schema (sharpbench/schemas/result.schema.json, $defs/name; a test keeps the two equal).
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
card_name = Constraint("lower-case letters, digits, '.', '_' or '-', starting with a letter or digit",
                       lambda v: NAME_PATTERN.match(v) is not None)
non_negative = Constraint("{} >= 0", lambda v: v >= 0)


def at_least(lower: float) -> Constraint:
    """A value >= `lower`."""
    return Constraint(f"{{}} >= {lower}", lambda v: v >= lower)


_BRACKETS = {"both": ("[", "]"), "left": ("[", ")"), "right": ("(", "]"), "neither": ("(", ")")}


def in_range(lower: float, upper: float, closed: str = "both") -> Constraint:
    """A value between `lower` and `upper`; `closed` says which ends belong: both, left, right or neither."""
    if closed not in _BRACKETS:
        raise ValueError(f"closed must be one of {sorted(_BRACKETS)}, not {closed!r}")
    left, right = _BRACKETS[closed]
    low_ok = (lambda v: v >= lower) if left == "[" else (lambda v: v > lower)
    high_ok = (lambda v: v <= upper) if right == "]" else (lambda v: v < upper)
    return Constraint(f"{{}} in {left}{lower}, {upper}{right}", lambda v: low_ok(v) and high_ok(v))


def one_of(*options: Any) -> Constraint:
    """One of the listed values."""
    return Constraint(f"one of {list(options)}", lambda v: v in options)


def permutation_of(items: tuple[Any, ...] | list[Any]) -> Constraint:
    """A list holding each of `items` once, in any order."""
    return Constraint(f"a permutation of {list(items)}",
                      lambda v: isinstance(v, list) and sorted(map(repr, v)) == sorted(map(repr, items)))


def length(size: int, of: type = object, each: Constraint | None = None) -> Constraint:
    """A list of `size` items, each (if given) of type `of` and meeting `each`: 'a list of 3 integers > 0'."""
    items = _PLURALS.get(of, of.__name__)
    if each is not None:
        items = each.template.format(items) if "{}" in each.template else f"{items}, each {each.template}"

    def test(value: Any) -> bool:
        return len(value) == size and all(is_type(v, of) and (each is None or each(v)) for v in value)
    return Constraint(f"{{}} of {size} {items}", test)


@dataclass(frozen=True)
class Param:
    """One card field: its type, default (``...`` = required) and constraint.

    ``check`` is a named :class:`Constraint` (its description makes the error message) or any predicate with
    ``expected`` saying what it demands; ``expected``, when given, is the message's text as it stands; ``note``
    adds what the field means to the generated message, e.g. '(0: no SAM)'."""

    kind: type
    default: Any = ...
    check: Callable[[Any], bool] | None = None
    expected: str = ""
    note: str = ""

    def describe(self) -> str:
        """What a value of this field must be, as an error message says it."""
        if self.expected:
            return self.expected
        text = self.check.describe(self.kind) if isinstance(self.check, Constraint) else type_name(self.kind)
        return f"{text} ({self.note})" if self.note else text


def is_type(value: Any, kind: type) -> bool:
    """isinstance, except that a bool is never a number and an int is accepted as a float."""
    if kind in (int, float) and isinstance(value, bool):
        return False
    return isinstance(value, (int, float) if kind is float else kind)


def _refuse_number_as_text(value: Any, path: Any, name: str, kind: type) -> None:
    """YAML reads 1e-4 (no dot) as text: say so rather than 'expected a number'."""
    if kind is float and isinstance(value, str):
        with contextlib.suppress(ValueError):
            float(value)
            raise CardError(path, name, "a number (YAML reads 1e-4 as text: write 1.0e-4)", value)


def check_type(value: Any, path: Any, name: str, kind: type) -> Any:
    """Check one value's type (an int is accepted as a float and returned as one, a bool is never a number)."""
    _refuse_number_as_text(value, path, name, kind)
    if not is_type(value, kind):
        raise CardError(path, name, type_name(kind), value)
    return float(value) if kind is float else value


def check_value(value: Any, path: Any, name: str, param: Param) -> Any:
    """One field's value checked against its Param: type, then constraint; an error says what the Param expects."""
    _refuse_number_as_text(value, path, name, param.kind)
    if not is_type(value, param.kind) or (param.check is not None and not param.check(value)):
        raise CardError(path, name, param.describe(), value)
    return float(value) if param.kind is float else value


def reject_unknown(card: dict[str, Any], path: Any, allowed: set[str] | dict[str, Any], prefix: str = "") -> None:
    """A misspelt field must not be silently ignored."""
    for key in card:
        if key not in allowed:
            raise CardError(path, prefix + str(key), f"one of the known fields {sorted(allowed)}", key)


def validate(values: Any, path: Any, prefix: str, schema: dict[str, Param],
             skip: set[str] | frozenset[str] = frozenset(), require: bool = True) -> dict[str, Any]:
    """Validate a mapping against a schema: unknown keys rejected, types and constraints checked, defaults filled
    in, in the schema's order. `prefix` locates the mapping in messages ('training.'); keys in `skip` are left out
    (supplied elsewhere, e.g. by the grid); without `require`, missing required fields are allowed (an imported
    card's models give them, one value per model)."""
    if not isinstance(values, dict):
        raise CardError(path, prefix.rstrip(".") or "<file>", "a mapping", values)
    reject_unknown(values, path, schema, prefix)
    out: dict[str, Any] = {}
    for name, param in schema.items():
        if name in skip:
            continue
        if name in values:
            out[name] = check_value(values[name], path, prefix + name, param)
        elif param.default is not ...:
            out[name] = param.default
        elif require:
            raise CardError(path, prefix + name, f"{param.describe()} (the field is required)")
    return out


def field(card: dict[str, Any], path: Any, name: str, kind: type, default: Any = ..., prefix: str = "") -> Any:
    """Return card[name] checked against kind; a missing field without a default is an error.

    `prefix` locates a nested mapping in messages, e.g. "params.rho." for a field of params.rho."""
    if name not in card:
        if default is ...:
            raise CardError(path, prefix + name, f"{type_name(kind)} (the field is required)")
        return default
    return check_type(card[name], path, prefix + name, kind)


def entries(items: list[Any], path: Any, section: str, keys: tuple[str, ...]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(``section[i]``, entry) for each entry of a card's list section, checked to be a mapping of known keys."""
    for i, entry in enumerate(items):
        where = f"{section}[{i}]"
        if not isinstance(entry, dict):
            raise CardError(path, where, "a mapping {" + ", ".join(keys) + "}", entry)
        reject_unknown(entry, path, set(keys), f"{where}.")
        yield where, entry
