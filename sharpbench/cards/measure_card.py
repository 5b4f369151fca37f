"""A measure card, read and validated: its parameters (`ParamSpec`), its implementation as imported and pinned by
digests (`Implementation`), and the validated card (`MeasureSpec`), whose `key_inputs` enter every stored value's
key."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import math
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import torch

from sharpbench.cards.include import load_card
from sharpbench.cards.plugins import plugin_of_package
from sharpbench.cards.schema import (Param, card_name, check_type, check_value, is_type, one_of, positive, type_name,
                                     validate)
from sharpbench.cards.source_digest import source_sha256 as module_source_sha256
from sharpbench.errors import CardError, SharpbenchError
from sharpbench.measure import USES, MeasureContext
from sharpbench.version import kernels_sha256

_PARAM_TYPES: dict[str, type] = {"float": float, "int": int, "bool": bool, "str": str}


@dataclass(frozen=True)
class ParamSpec:
    """One declared parameter of a measure: its type, default, meaning and the values it allows (`choices`,
    bounds, and for a float finiteness, unless the card says `finite: false`)."""

    name: str
    type: type
    default: Any
    help: str = ""
    choices: tuple[Any, ...] = ()
    bounds: tuple[tuple[str, float], ...] = ()   # (operator, limit): ('>=', 0.0), ('<', 1.0), ...
    finite: bool = True

    def allows(self, value: Any) -> bool:
        """Whether a value of the right type is one this parameter accepts."""
        if self.choices and value not in self.choices:
            return False
        if self.type is float and self.finite and not math.isfinite(value):
            return False
        return all(_COMPARE[operator](value, limit) for operator, limit in self.bounds)

    def expects(self) -> str:
        """What a value must be, as messages say it: 'a finite number > 0', 'one of ['a', 'b']'."""
        if self.choices:
            return f"one of {list(self.choices)}"
        kind = "a finite number" if self.type is float and self.finite else type_name(self.type)
        limits = " and ".join(f"{operator} {limit:g}" for operator, limit in self.bounds)
        return f"{kind} {limits}" if limits else kind

    def parse(self, raw: Any, origin: str) -> Any:
        """Convert a value (a YAML value, or a string from --set) to this parameter's type and check that it is
        allowed; a refused value is an error naming what the card allows."""
        given = raw
        if isinstance(raw, str) and self.type is not str:
            raw = _parse_scalar(raw, self.type, f"{origin}: parameter '{self.name}'")
        try:
            value = check_type(raw, Path(origin), self.name, self.type)
        except CardError:
            value = None
        if value is None or not self.allows(value):
            raise SharpbenchError(f"{origin}: parameter '{self.name}' expects {self.expects()}, got {given!r}; its "
                                  f"default is {self.default!r}")
        return value


_COMPARE: dict[str, Callable[[Any, float], bool]] = {
    ">=": lambda value, limit: value >= limit, ">": lambda value, limit: value > limit,
    "<=": lambda value, limit: value <= limit, "<": lambda value, limit: value < limit}
# A card's bound fields and the comparison each one makes.
_BOUND_FIELDS = {"min": ">=", "exclusive_min": ">", "max": "<=", "exclusive_max": "<"}


def _parse_scalar(text: str, kind: type, where: str) -> Any:
    if kind is bool:
        lowered = text.strip().lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        raise SharpbenchError(f"{where} expects true or false, got {text!r}")
    try:
        return kind(text)
    except ValueError:
        raise SharpbenchError(f"{where} expects {type_name(kind)}, got {text!r}") from None


@dataclass(frozen=True)
class Implementation:
    """A measure's code as imported: where it came from and the digests that pin it (they enter the results
    key and a published result's provenance)."""

    function: str
    origin: str          # "in-tree module measures/x.py", "include path DIR", "package module NAME" or
                         # "plugin NAME (package module NAME)"
    source_sha256: str   # of the module file that holds the function and of the modules of its package it imports
    kernels_sha256: str  # of sharpbench's kernel modules (sharpbench.version.KERNEL_MODULES)
    card_version: int

    @property
    def in_tree(self) -> bool:
        """Whether the code is a built-in measure (this repository's measures/), which anyone with the repository
        can recompute; a result of any other code is marked external on the leaderboard."""
        return self.origin.startswith("in-tree module ")


@dataclass(frozen=True)
class MeasureSpec:
    """A validated measure card."""

    name: str
    description: str
    function: str
    params: dict[str, ParamSpec]
    fixed: dict[str, Any]
    higher_means: str
    source: str
    path: Path
    card_sha256: str
    definition: str = ""
    grids: dict[str, dict[str, list[Any]]] = field(default_factory=dict)
    version: int = 1
    tolerance: float = 1e-6
    uses: tuple[str, ...] = ("training_data",)
    _loaded: list = field(default_factory=list, repr=False, compare=False)

    def bind(self, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """The full, typed parameter dict: defaults, then overrides; unknown names are errors."""
        values = {name: spec.default for name, spec in self.params.items()}
        for name, raw in (overrides or {}).items():
            if name not in self.params:
                fixed = f" ('{name}' is fixed by the card)" if name in self.fixed else ""
                raise SharpbenchError(
                    f"measure '{self.name}' has no parameter '{name}'{fixed}; its parameters are "
                    f"{sorted(self.params)} (see {self.path})"
                )
            values[name] = self.params[name].parse(raw, f"measure '{self.name}'")
        return values

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (to a cluster's worker) without the imported implementation: a contributor's file is a module
        of this process only, and the worker imports the card's function itself."""
        return {**self.__dict__, "_loaded": []}

    def _load(self) -> tuple[Callable[..., Any], Implementation]:
        if not self._loaded:
            self._loaded.append(_load_implementation(self.function, self.path, self.version))
        return self._loaded[0]

    def resolve(self) -> Callable[..., Any]:
        """Import the implementation named by the card's `function` field (once)."""
        return self._load()[0]

    def implementation(self) -> Implementation:
        """Import the implementation (once) and pin it by digests; a broken or misspelled function is a
        CardError here, so a run whose values are all stored still fails on it."""
        return self._load()[1]

    def key_inputs(self) -> dict[str, Any]:
        """What decides a value besides its parameters and protocol: the card's version, fixed values and
        function, and the sha256 of the implementation's source and of the kernels. Contents, never paths, so
        the same card and code give the same key on every machine and in every folder."""
        pinned = asdict(self.implementation())
        del pinned["origin"]  # names a folder: the same code elsewhere computes the same values
        return {**pinned, "fixed": self.fixed}

    def call(self, model: torch.nn.Module, context: MeasureContext, params: dict[str, Any]) -> Any:
        """Run the implementation with the card's fixed values and the given parameters."""
        implementation = self.resolve()
        arguments = {**self.fixed, **params}
        if isinstance(implementation, type):
            return implementation(**arguments)(model, context)
        return implementation(model, context, **arguments)

    @property
    def computes_many(self) -> bool:
        """Whether the implementation has a many-model form (`computes_many`, or a class method `many`)."""
        return callable(getattr(self.resolve(), "many", None))

    def call_many(self, models: list[torch.nn.Module], context: MeasureContext, params: dict[str, Any]) -> Any:
        """The many-model form on same-architecture models: one value per model, in order."""
        implementation = self.resolve()
        arguments = {**self.fixed, **params}
        if isinstance(implementation, type):
            return implementation(**arguments).many(models, context)
        return implementation.many(models, context, **arguments)


def _load_implementation(reference: str, card_path: Path,
                         card_version: int) -> tuple[Callable[..., Any], Implementation]:
    """'package.module:attr' is imported; 'file.py:attr' is loaded from beside the card. Either way the module's
    source file is hashed."""
    target, _, attribute = reference.partition(":")
    if not attribute:
        raise CardError(card_path, "function", "'module:attribute' or 'file.py:attribute'", reference)
    try:
        if target.endswith(".py"):
            source = (card_path.parent / target).resolve()
            if not source.is_file():
                raise CardError(card_path, "function", f"an existing file (no file at {source})", reference)
            module, source_sha256 = _import_file(source)
            origin = f"include path {card_path.resolve().parent.parent}"
        else:
            module = importlib.import_module(target)
            source = _source_file(module, card_path, reference)
            source_sha256 = module_source_sha256(source, module.__name__)
            origin = _package_origin(module, source)
    except CardError:
        raise
    except Exception as error:  # the contributor's module failed to import: say which card and why
        raise CardError(card_path, "function", f"an importable implementation ({type(error).__name__}: "
                        f"{error})", reference) from error
    if not hasattr(module, attribute):
        raise CardError(card_path, "function", f"an attribute '{attribute}' in {target}", reference)
    return getattr(module, attribute), Implementation(reference, origin, source_sha256, kernels_sha256(),
                                                      card_version)


def _import_file(source: Path) -> tuple[ModuleType, str]:
    """Execute a contributor's file as a module named by its path and contents (an edited file is a new module,
    so the code that runs is the code that was hashed); returns it with the sha256 of its bytes."""
    source_sha256 = hashlib.sha256(source.read_bytes()).hexdigest()
    name = "sharpbench_user_" + hashlib.sha256(f"{source}\0{source_sha256}".encode()).hexdigest()[:16]
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(name, source)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]  # a half-executed module must not be found by the next attempt
            raise
    return module, source_sha256


def _source_file(module: ModuleType, card_path: Path, reference: str) -> Path:
    """The module's Python source file (what its key hashes); a module without one is refused."""
    try:
        source = inspect.getsourcefile(module)
    except TypeError:  # a built-in module
        source = None
    if source is None or not Path(source).is_file():
        raise CardError(card_path, "function", f"a function in a module with a Python source file (module "
                        f"'{module.__name__}' has none, and stored values are keyed by the sha256 of the "
                        f"implementation's source); call it from a .py module of your own", reference)
    return Path(source)


def _package_origin(module: ModuleType, source: Path) -> str:
    """'in-tree module measures/x.py' for the built-in measures (the package sharpbench_measures is the
    checkout's measures/ folder), 'plugin NAME (package module X)' for a module of an installed plugin's package
    where its distribution's files say so, else 'package module X'."""
    package = module.__name__.partition(".")[0]
    if package == "sharpbench_measures":
        root = Path(sys.modules[package].__file__).parent
        return f"in-tree module measures/{source.relative_to(root).as_posix()}"
    plugin = plugin_of_package(package)
    return f"plugin {plugin} (package module {module.__name__})" if plugin else f"package module {module.__name__}"


_CARD_SCHEMA: dict[str, Param] = {
    "name": Param(str, check=card_name, note="it names the result files"),
    "description": Param(str),
    "function": Param(str, note="'module:attribute' or 'file.py:attribute'"),
    "params": Param(dict, default={}),
    "fixed": Param(dict, default={}),
    "higher_means": Param(str, check=one_of("worse", "better"), note="what a larger value predicts"),
    "source": Param(str),
    "definition": Param(str, default=""),
    "grids": Param(dict, default={}),
    "version": Param(int, default=1, check=positive, note="1 when absent; raise it to recompute stored values "
                                                          "after a change the key does not see"),
    "uses": Param(list, default=["training_data"], check=lambda items: set(items) <= set(USES),
                  expected=f"a list of what the measure reads besides the weights, of {list(USES)} ([] for the "
                           f"weights alone)"),
    "tolerance": Param(float, default=1e-6, check=positive,
                       note="the relative difference within which a recomputed value agrees with a stored one; "
                            "1e-6 when absent, larger for a measure that draws random numbers, whose draws differ "
                            "between devices"),
}


def load_measure_spec(path: Path) -> MeasureSpec:
    """Read and validate one measure card (its includes resolved); every problem is a CardError naming the file
    and field."""
    card = load_card(Path(path))
    path = card.path
    values = validate(card.fields, path, "", _CARD_SCHEMA)
    if path.stem != values["name"]:
        raise CardError(path, "name", f"the file's name without .yaml ('{path.stem}')", values["name"])
    params = {name: _param_spec(name, raw, path) for name, raw in values["params"].items()}
    clash = set(values["fixed"]) & set(params)
    if clash:
        raise CardError(path, "fixed", "names disjoint from params", sorted(clash))
    return MeasureSpec(
        name=values["name"],
        description=values["description"],
        function=values["function"],
        params=params,
        fixed=values["fixed"],
        higher_means=values["higher_means"],
        source=values["source"],
        definition=values["definition"],
        grids=_read_grids(values["grids"], path, params),
        version=values["version"],
        tolerance=values["tolerance"],
        uses=tuple(use for use in USES if use in values["uses"]),
        path=path,
        card_sha256=card.sha256,
    )


def _param_spec(name: str, raw: Any, path: Path) -> ParamSpec:
    """One entry of a card's params: {type, default, help, choices, min, max, exclusive_min, exclusive_max,
    finite}; the default is checked against the declared type and the allowed values."""
    where = f"params.{name}"
    check_type(raw, path, where, dict)
    declared = raw.get("type")
    # the schema of the other fields follows `type`, which is checked first (validate keeps the schema's order)
    kind = _PARAM_TYPES.get(declared, object) if isinstance(declared, str) else object
    numeric = kind in (int, float)
    schema = {"type": Param(str, check=one_of(*_PARAM_TYPES)), "default": Param(kind), "help": Param(str, default=""),
              "choices": Param(list, default=[], check=lambda items: bool(items) and all(is_type(i, kind)
                                                                                          for i in items),
                               expected=f"a non-empty list of values of the parameter's type ({declared})"),
              "finite": Param(bool, default=True, note="false lets a float parameter take inf, e.g. a norm's p")}
    for bound in _BOUND_FIELDS:
        schema[bound] = Param(float, default=None, check=lambda limit: numeric and math.isfinite(limit),
                              expected=f"a finite number (bounds are for int and float parameters, not {declared})")
    values = validate(raw, path, where + ".", schema)
    spec = ParamSpec(name, kind, values["default"], values["help"], tuple(values["choices"]),
                     tuple((op, values[bound]) for bound, op in _BOUND_FIELDS.items() if values[bound] is not None),
                     values["finite"])
    if not spec.allows(spec.default):
        raise CardError(path, f"{where}.default", spec.expects(), spec.default)
    return spec


def _read_grids(raw: dict[str, Any], path: Path, params: dict[str, ParamSpec]) -> dict[str, dict[str, list[Any]]]:
    """`grids: {param: {family: [values]}}`: documented sweeps, e.g. the study's radii per architecture."""
    grids: dict[str, dict[str, list[Any]]] = {}
    for param_name, families in raw.items():
        if param_name not in params:
            raise CardError(path, f"grids.{param_name}", f"one of the card's params {sorted(params)}", param_name)
        check_type(families, path, f"grids.{param_name}", dict)
        grids[param_name] = {}
        for family, values in families.items():
            where = f"grids.{param_name}.{family}"
            check_type(values, path, where, list)
            if not values:
                raise CardError(path, where, "a non-empty list of values", values)
            spec = params[param_name]
            grids[param_name][family] = [check_value(value, path, where, Param(spec.type, check=spec.allows,
                                                                                  expected=spec.expects()))
                                         for value in values]
    return grids
