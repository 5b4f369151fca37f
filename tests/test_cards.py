"""The schema layer shared by every card: named constraints, validation, include: of base cards, card identity."""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path

import pytest
import yaml

from sharpbench.cards.discovery import Registry
from sharpbench.cards.include import load_card, merge, read_card
from sharpbench.cards.measure_card import load_measure_spec
from sharpbench.cards.schema import (NAME_PATTERN, Param, at_least, in_range, length, non_negative, one_of,
                                     permutation_of, positive, validate)
from sharpbench.collection.spec import load_collection_spec
from sharpbench.errors import CardError, SharpbenchError
from tiny_cards import tiny_mlp_card

REPO = Path(__file__).resolve().parents[1]
OLD_SHARPNESS_CARDS = Path(__file__).resolve().parent / "fixtures" / "sharpness-cards"
MEASURE = "description: a test measure\nfunction: m.py:f\nsource: the tests\nhigher_means: worse\n"


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------ named constraints


@pytest.mark.parametrize(("param", "good", "bad", "expected"), [
    (Param(int, check=positive), 1, 0, "an integer > 0"),
    (Param(float, check=positive), 0.5, -1.0, "a number > 0"),
    (Param(float, check=non_negative), 0.0, -0.1, "a number >= 0"),
    (Param(int, check=at_least(2)), 2, 1, "an integer >= 2"),
    (Param(float, check=in_range(0, 1)), 1.0, 1.5, "a number in [0, 1]"),
    (Param(float, check=in_range(0, 1, closed="left")), 0.0, 1.0, "a number in [0, 1)"),
    (Param(float, check=in_range(0, 1, closed="right")), 1.0, 0.0, "a number in (0, 1]"),
    (Param(float, check=in_range(0, 1, closed="neither")), 0.5, 0.0, "a number in (0, 1)"),
    (Param(str, check=one_of("sgd", "adam")), "adam", "lbfgs", "one of ['sgd', 'adam']"),
    (Param(list, check=length(3, int, positive)), [3, 8, 8], [3, 0, 8], "a list of 3 integers > 0"),
    (Param(list, check=length(3, float)), [0.5, 1, 0.2], [0.5, 0.5], "a list of 3 numbers"),
    (Param(list, check=permutation_of(("a", "b"))), ["b", "a"], ["a", "a"], "a permutation of ['a', 'b']"),
    (Param(float, check=non_negative, note="0: no SAM"), 0.0, -1.0, "a number >= 0 (0: no SAM)"),
    (Param(int, check=lambda v: v % 2 == 0, expected="an even integer"), 4, 3, "an even integer"),  # the old form
])
def test_a_named_constraint_is_what_the_error_says(param, good, bad, expected):
    assert validate({"x": good}, "card.yaml", "section.", {"x": param}) == {"x": good}
    with pytest.raises(CardError) as caught:
        validate({"x": bad}, "card.yaml", "section.", {"x": param})
    assert caught.value.field == "section.x"
    assert str(caught.value) == f"card.yaml: field 'section.x': expected {expected} (found {bad!r})"


def test_in_range_refuses_an_unknown_kind_of_interval():
    with pytest.raises(ValueError, match="closed"):
        in_range(0, 1, closed="half")


def test_validate_fills_defaults_rejects_unknown_keys_and_checks_types():
    schema = {"lr": Param(float, check=positive), "momentum": Param(float, default=0.0), "nesterov": Param(bool)}
    assert validate({"lr": 1, "nesterov": False}, "c.yaml", "", schema) == {"lr": 1.0, "momentum": 0.0,
                                                                            "nesterov": False}
    for values, field in [({"lr": 1, "nesterov": True, "momentun": 0.9}, "momentun"),  # misspelt
                          ({"lr": True, "nesterov": True}, "lr"),                     # a bool is not a number
                          ({"lr": 0.1, "nesterov": 1}, "nesterov"),
                          ({"nesterov": True}, "lr")]:                                # required
        with pytest.raises(CardError) as caught:
            validate(values, "c.yaml", "", schema)
        assert caught.value.field == field
    with pytest.raises(CardError, match=r"expected a number > 0 \(the field is required\)"):
        validate({"nesterov": True}, "c.yaml", "", schema)
    with pytest.raises(CardError, match=r"YAML reads 1e-4 as text: write 1\.0e-4"):
        validate({"lr": "1e-4", "nesterov": True}, "c.yaml", "", schema)


def test_a_registry_error_names_the_constraint(tmp_path: Path):
    card = tiny_mlp_card("tiny")
    card["training"] = {**card["training"], "momentum": 1.0}
    path = write(tmp_path, "card.yaml", yaml.safe_dump(card, sort_keys=False))
    with pytest.raises(CardError, match=r"field 'training.momentum': expected a number in \[0, 1\) \(found 1.0\)"):
        load_collection_spec(path)


def test_a_measure_params_default_written_1e_4_gets_the_hint(tmp_path: Path):
    path = write(tmp_path, "bad.yaml", "name: bad\n" + MEASURE + "params: {rho: {type: float, default: 1e-4}}\n")
    with pytest.raises(CardError, match=r"field 'params.rho.default': expected a number \(YAML reads 1e-4"):
        load_measure_spec(path)


@pytest.mark.parametrize("params,field,message", [
    ("{rho: {type: float, default: 0.5, max: 0.1}}", "params.rho.default", "a finite number <= 0.1"),
    ("{rho: {type: float, default: -1, exclusive_min: 0}}", "params.rho.default", "a finite number > 0"),
    ("{rho: {type: float, default: .inf}}", "params.rho.default", "a finite number"),
    ("{mode: {type: str, default: c, choices: [a, b]}}", "params.mode.default", "one of ['a', 'b']"),
    ("{mode: {type: str, default: a, choices: [a, 1]}}", "params.mode.choices", "values of the parameter's type"),
    ("{mode: {type: str, default: a, min: 0}}", "params.mode.min", "bounds are for int and float parameters"),
    ("{k: {type: int, default: 1, min: .nan}}", "params.k.min", "a finite number"),
])
def test_a_params_allowed_values_are_checked_against_its_default(tmp_path: Path, params, field, message):
    path = write(tmp_path, "bad.yaml", "name: bad\n" + MEASURE + f"params: {params}\n")
    with pytest.raises(CardError, match=f"field '{field}': expected .*{re.escape(message)}"):
        load_measure_spec(path)


@pytest.mark.parametrize("name", ["My-Measure", "-leading-dash", "with space", "a+b", "ünïcode"])
def test_a_measure_name_the_results_schema_refuses_is_a_card_error_when_the_card_loads(tmp_path: Path, name):
    path = write(tmp_path, f"{name}.yaml", f"name: '{name}'\n" + MEASURE)
    with pytest.raises(CardError, match="field 'name': expected lower-case letters, digits"):
        load_measure_spec(path)


def test_the_card_name_pattern_is_the_results_schemas():
    schema = json.loads((REPO / "sharpbench" / "schemas" / "result.schema.json").read_text(encoding="utf-8"))
    assert schema["$defs"]["name"]["pattern"] == NAME_PATTERN.pattern


def test_a_grid_value_outside_the_allowed_values_is_a_card_error(tmp_path: Path):
    text = "params: {rho: {type: float, default: 0.1, exclusive_min: 0}}\ngrids: {rho: {cifar: [0.1, 0.0]}}\n"
    path = write(tmp_path, "bad.yaml", "name: bad\n" + MEASURE + text)
    with pytest.raises(CardError, match=r"field 'grids.rho.cifar': expected a finite number > 0 \(found 0.0\)"):
        load_measure_spec(path)


def test_bind_checks_choices_bounds_and_finiteness_and_finite_false_allows_inf(tmp_path: Path):
    text = ("params:\n  p: {type: float, default: 2.0, min: 1, finite: false}\n"
            "  q: {type: float, default: 0.5, min: 0, exclusive_max: 1}\n"
            "  k: {type: int, default: 3, min: 1, max: 5}\n"
            "  mode: {type: str, default: a, choices: [a, b]}\n")
    spec = load_measure_spec(write(tmp_path, "ok.yaml", "name: ok\n" + MEASURE + text))
    assert spec.bind({"p": "inf", "q": "0", "k": "5", "mode": "b"}) == {"p": math.inf, "q": 0.0, "k": 5, "mode": "b"}
    for name, value, expected in [("p", "0.5", "a number >= 1"), ("q", "1", "a finite number >= 0 and < 1"),
                                  ("q", "inf", "a finite number >= 0 and < 1"), ("k", "6", "an integer >= 1 and <= 5"),
                                  ("k", 0, "an integer >= 1 and <= 5"), ("mode", "c", "one of ['a', 'b']")]:
        with pytest.raises(SharpbenchError, match=f"parameter '{name}' expects {re.escape(expected)}, got "
                                                  f"{re.escape(repr(value))}; its default is"):
            spec.bind({name: value})


def test_every_builtin_card_declares_allowed_values_that_refuse_a_degenerate_setting():
    """rho <= 0, zero steps, samples or probes, a drop outside (0, 1): refused when --set is parsed."""
    registry = Registry.discover()
    degenerate = {"rho": "0", "steps": "0", "samples": "0", "probes": "0", "restarts": "0", "drop": "1",
                  "tol": "0", "percentile": "101", "sigma_min": "0", "sigma_max": "-1", "eps": "-1",
                  "scaling": "layerwise"}
    checked = 0
    for spec in registry.measures.values():
        for name in spec.params:
            if name in degenerate:
                with pytest.raises(SharpbenchError, match=f"parameter '{name}' expects"):
                    spec.bind({name: degenerate[name]})
                checked += 1
    assert checked >= 30


# -------------------------------------------------------------------------------------------------- include


def test_bases_merge_mappings_recursively_and_replace_other_values(tmp_path: Path):
    write(tmp_path, "_a.yaml", "x: 1\nlist: [1, 2]\nnested: {keep: a, over: a, deeper: {p: 1, q: 1}}\n")
    write(tmp_path, "_b.yaml", "x: 2\nnested: {over: b, deeper: {q: 2}}\nonly_b: true\n")
    card = write(tmp_path, "card.yaml", "include: [_a.yaml, _b.yaml]\nlist: [3]\nnested: {deeper: {r: 3}}\n")
    assert load_card(card).fields == {"x": 2, "list": [3], "only_b": True,
                                      "nested": {"keep": "a", "over": "b", "deeper": {"p": 1, "q": 2, "r": 3}}}


def test_the_card_wins_over_every_base_and_a_mapping_replaces_a_scalar(tmp_path: Path):
    write(tmp_path, "_a.yaml", "x: {a: 1}\ny: 1\nz: [1]\n")
    card = write(tmp_path, "card.yaml", "include: _a.yaml\nx: 5\ny: {b: 2}\nz: {c: 3}\n")
    assert load_card(card).fields == {"x": 5, "y": {"b": 2}, "z": {"c": 3}}
    assert merge({"a": {"b": 1}}, {"a": {"c": 2}}) == {"a": {"b": 1, "c": 2}}


def test_a_parsed_card_is_reused_only_for_the_same_bytes_and_never_shared(tmp_path: Path):
    """Cards are parsed once per distinct content: an edited file is parsed again (same size, same second:
    the cache is keyed by the bytes, not the file's metadata), and a caller that changes what it got does not
    change what the next caller gets."""
    card = write(tmp_path, "card.yaml", "name: a\nparams: {rho: {default: 1}}\n")
    first = read_card(card)
    first["params"]["rho"]["default"] = 99
    assert read_card(card) == {"name": "a", "params": {"rho": {"default": 1}}}
    card.write_text("name: b\nparams: {rho: {default: 2}}\n", encoding="utf-8")
    assert read_card(card) == {"name": "b", "params": {"rho": {"default": 2}}}


def test_libyaml_and_the_python_parser_read_every_builtin_card_alike():
    """The fast parser (libyaml, when PyYAML has it) gives what yaml.safe_load gives, card by card."""
    files = sorted((Path(__file__).parents[1] / "registry").rglob("*.yaml"))
    assert len(files) >= 30
    for path in files:
        assert read_card(path) == yaml.safe_load(path.read_text(encoding="utf-8")), path.name


def test_a_base_may_include_another_relative_to_its_own_folder(tmp_path: Path):
    write(tmp_path / "bases" / "deep", "_root.yaml", "a: root\nb: root\nc: root\n")
    write(tmp_path / "bases", "_middle.yaml", "include: deep/_root.yaml\nb: middle\nc: middle\n")
    card = write(tmp_path / "cards", "card.yaml", "include: ../bases/_middle.yaml\nc: card\n")
    loaded = load_card(card)
    assert loaded.fields == {"a": "root", "b": "middle", "c": "card"}
    chain = card.read_bytes() + (tmp_path / "bases" / "_middle.yaml").read_bytes() + \
        (tmp_path / "bases" / "deep" / "_root.yaml").read_bytes()
    assert loaded.sha256 == hashlib.sha256(chain).hexdigest()


@pytest.mark.parametrize(("files", "card", "message"), [
    ({"_a.yaml": "include: _b.yaml\n", "_b.yaml": "include: _a.yaml\n"}, "include: _a.yaml\n",
     r"a cycle: card.yaml -> _a.yaml -> _b.yaml -> _a.yaml"),
    ({}, "include: card.yaml\n", r"a cycle: card.yaml -> card.yaml"),
    ({}, "include: [_missing.yaml]\n", r"an existing base card \(no file at .*_missing.yaml\)"),
    ({"_a.yaml": "include: _gone.yaml\n"}, "include: _a.yaml\n", r"_a.yaml: field 'include': expected an existing"),
    ({}, "include: {a: 1}\n", r"a file name or a list of file names"),
    ({}, "include: [3]\n", r"a file name or a list of file names"),
])
def test_a_cycle_or_a_missing_base_is_a_card_error_on_include(tmp_path: Path, files, card, message):
    for name, text in files.items():
        write(tmp_path, name, text)
    path = write(tmp_path, "card.yaml", card)
    with pytest.raises(CardError, match=message) as caught:
        load_card(path)
    assert caught.value.field == "include"


def test_the_same_base_twice_is_not_a_cycle(tmp_path: Path):
    write(tmp_path, "_root.yaml", "a: 1\n")
    write(tmp_path, "_left.yaml", "include: _root.yaml\nb: 2\n")
    write(tmp_path, "_right.yaml", "include: _root.yaml\nc: 3\n")
    assert load_card(write(tmp_path, "card.yaml", "include: [_left.yaml, _right.yaml]\n")).fields == \
        {"a": 1, "b": 2, "c": 3}


def test_files_starting_with_underscore_are_bases_never_cards(tmp_path: Path):
    write(tmp_path / "measures", "_base.yaml", MEASURE + "params: {k: {type: int, default: 3}}\n")
    write(tmp_path / "measures", "with-base.yaml", "include: _base.yaml\nname: with-base\n")
    write(tmp_path / "collections", "_base.yaml", yaml.safe_dump({"not": "a card"}))
    registry = Registry.discover([tmp_path])
    assert "with-base" in registry.measures and "_base" not in registry.measures
    assert registry.measure("with-base").params["k"].default == 3
    assert not any(name.startswith("_") for name in [*registry.measures, *registry.collections])


# ---------------------------------------------------------------------------------------------- identity


def test_card_sha256_is_of_the_raw_bytes_without_include(tmp_path: Path):
    for path in sorted(p for p in (REPO / "registry" / "collections").glob("*.yaml") if not p.name.startswith("_")):
        base = yaml.safe_load(path.read_text()).get("include")     # one built-in card includes another
        chain = path.read_bytes() + (b"" if base is None else (path.parent / base).read_bytes())
        assert load_collection_spec(path).card_sha256 == hashlib.sha256(chain).hexdigest()
    measure = write(tmp_path, "plain.yaml", "name: plain\n" + MEASURE)
    assert load_measure_spec(measure).card_sha256 == hashlib.sha256(measure.read_bytes()).hexdigest()


def test_a_collection_card_with_a_base_resolves_and_its_sha256_covers_the_base(tmp_path: Path):
    card = tiny_mlp_card("tiny")
    full = load_collection_spec(write(tmp_path / "full", "tiny.yaml", yaml.safe_dump(card, sort_keys=False)))
    base = {key: value for key, value in card.items() if key not in ("name", "grid")}
    write(tmp_path / "split", "_digits.yaml", yaml.safe_dump(base, sort_keys=False))
    text = yaml.safe_dump({"include": "_digits.yaml", "name": "tiny", "grid": card["grid"]}, sort_keys=False)
    path = write(tmp_path / "split", "tiny.yaml", text)
    split = load_collection_spec(path)
    assert (split.dataset, split.shifts, split.architecture, split.grid, split.training, split.sharpness_data) == \
        (full.dataset, full.shifts, full.architecture, full.grid, full.training, full.sharpness_data)
    both = path.read_bytes() + (tmp_path / "split" / "_digits.yaml").read_bytes()
    assert split.card_sha256 == hashlib.sha256(both).hexdigest()
    write(tmp_path / "split", "_digits.yaml", yaml.safe_dump({**base, "seeds": [1]}, sort_keys=False))
    assert load_collection_spec(path).card_sha256 != split.card_sha256     # editing a base rebuilds


@pytest.mark.parametrize("name", sorted(path.name for path in OLD_SHARPNESS_CARDS.glob("*.yaml")))
def test_each_shrunk_sharpness_card_resolves_to_its_old_fields(name: str):
    card = REPO / "registry" / "measures" / name
    assert "include" in yaml.safe_load(card.read_text(encoding="utf-8"))
    old = yaml.safe_load((OLD_SHARPNESS_CARDS / name).read_text(encoding="utf-8"))
    fields = load_card(card).fields
    assert isinstance(fields.pop("tolerance"), float)     # stated after the shrink (leaderboard verify)
    # the allowed values (choices, bounds) were declared after the split into bases, and the worst case's
    # reference_compat added (default false: the ascent the old cards ran); nothing else changed
    allowed = {"choices", "min", "max", "exclusive_min", "exclusive_max"}
    compat = fields["params"].pop("reference_compat", None)
    assert compat is None or (name.startswith("sharpness-worst") and compat["default"] is False)
    fields["params"] = {name: {k: v for k, v in param.items() if k not in allowed}
                        for name, param in fields["params"].items()}
    assert fields == old


def test_there_are_eight_old_sharpness_cards():
    assert len(list(OLD_SHARPNESS_CARDS.glob("sharpness-*.yaml"))) == 8


# ------------------------------------------------------------------------------------- shift applicability


@pytest.mark.parametrize(("dataset", "shift", "message"), [
    ({"name": "digits", "test_fraction": 0.3, "split_seed": 0}, {"kind": "cifar10_c", "params": {
        "corruption": "frost", "severity": 1}}, "cifar10_c applies to cifar10 only"),
    ({"name": "digits", "test_fraction": 0.3, "split_seed": 0}, {"kind": "nli_overlap_swap"},
     "nli_overlap_swap applies to synthetic-nli only"),
    ({"name": "sparse-regression", "num_train": 8, "num_test": 8, "dim": 4, "nonzero": 2},
     {"kind": "translate", "params": {"dx": 1.0}}, "translate transforms images, and sparse-regression has no image"),
    ({"name": "synthetic-nli", "num_train": 8, "num_test": 8}, {"kind": "blur", "params": {"sigma": 1.0}},
     "blur transforms images, and synthetic-nli has no image shape"),
    ({"name": "synthetic-nli", "num_train": 8, "num_test": 8}, {"kind": "gaussian_noise",
                                                               "params": {"std": 0.1, "seed": 0}}, "gaussian_noise"),
])
def test_a_shift_for_another_dataset_is_a_card_error(tmp_path: Path, dataset, shift, message):
    card = {**tiny_mlp_card("tiny"), "dataset": dataset, "ood_shifts": [{"name": "ood", **shift}]}
    path = write(tmp_path, "card.yaml", yaml.safe_dump(card, sort_keys=False))
    with pytest.raises(CardError, match=message) as caught:
        load_collection_spec(path)
    assert caught.value.field == "ood_shifts[0].kind"


def test_a_shift_on_its_own_dataset_loads(tmp_path: Path):
    card = {**tiny_mlp_card("tiny"), "dataset": {"name": "cifar10", "train_size": 64},
            "ood_shifts": [{"name": "frost", "kind": "cifar10_c", "params": {"corruption": "frost", "severity": 2}}]}
    spec = load_collection_spec(write(tmp_path, "card.yaml", yaml.safe_dump(card, sort_keys=False)))
    assert spec.shifts[0].kind == "cifar10_c"
    assert load_collection_spec(REPO / "registry" / "collections" / "diag-linear-nets.yaml").shifts  # noise: any input


def test_an_imported_card_with_bases_is_refused_it_is_copied_alone(tmp_path: Path):
    from sharpbench.collection.importer import import_collection

    card = {"name": "mine", "description": "trained elsewhere", "imported": True,
            "dataset": {"name": "digits", "test_fraction": 0.3, "split_seed": 0}, "ood_shifts": [],
            "architecture": {"kind": "mlp", "depth": 1}}
    write(tmp_path, "_base.yaml", yaml.safe_dump({"sharpness_data": {"n": 64, "m": 32, "seed": 0}}))
    write(tmp_path, "card.yaml", yaml.safe_dump({"include": "_base.yaml", **card}, sort_keys=False))
    with pytest.raises(CardError, match="no bases in an imported card") as caught:
        import_collection(tmp_path, home=tmp_path / "home")
    assert caught.value.field == "include"
