"""The measure API: cards, parameters, the integrity guard, and compute_measure."""

from __future__ import annotations

import hashlib
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

import sharpbench
from sharpbench.errors import CardError, MeasureError, SharpbenchError, UnknownNameError
from sharpbench.evaluation.guard import run_guarded_many
from sharpbench.cards.measure_card import load_measure_spec
from sharpbench.cards.discovery import Registry, find_measure
from sharpbench.cards.source_digest import source_sha256

BUILTIN_MEASURES = {
    "param-norm", "train-loss", "pac-bayes-flatness", "pac-bayes-mag-flatness", "hessian-max-eigenvalue",
    "hessian-trace", "fisher-rao-norm", "path-norm", "spectral-norm-product", "frobenius-norm-product",
    "distance-from-init", "output-margin", "keskar-sharpness", "sam-sharpness", "disagreement",
    "relative-flatness", "gradient-disparity", "spectral-complexity-margin", "pac-bayes-spectral-margin", "dbi-mixup",
    "label-variation", "hessian-frobenius-norm", "hessian-logdet", "effective-dimension", "fisher-normalized-sharpness",
    "local-learning-coefficient",
    *(f"sharpness-{kind}-{norm}-{scale}" for kind in ("worst", "avg") for norm in ("linf", "l2")
      for scale in ("adaptive", "standard")),
}

USER_MEASURES = '''
import torch

def mutating(model, context):
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    return 1.0

def not_a_number(model, context):
    return float("nan")

def a_string(model, context):
    return "0.5"

def a_bool(model, context):
    return True

def exits(model, context):
    raise SystemExit(0)

def scales_batches(model, context):
    for inputs, _ in context.batches:
        inputs.mul_(1000.0)
    return 1.0

def drops_a_batch(model, context):
    context.batches.pop()
    return 1.0

def huge(model, context):
    return 10**400

def numpy_bool(model, context):
    import numpy
    return numpy.bool_(True)

def numpy_float(model, context):
    import numpy
    return numpy.float32(0.25)

def complex_value(model, context):
    return 1 + 2j

def two_elements(model, context):
    return torch.ones(2)

def flips_to_train(model, context):
    model.train()
    return 1.0

def batchnorm_training(model, context):
    model.train()
    with torch.no_grad():
        model(context.batches[0][0])
    return 0.0

from sharpbench import computes_many

def _sums_many(models, context):
    with torch.no_grad():
        next(models[1].parameters()).add_(1.0)  # the second model is changed
    return [1.0, 2.0]

@computes_many(_sums_many)
def sums(model, context):
    return 1.0

def _short_many(models, context):
    return [1.0]

@computes_many(_short_many)
def short(model, context):
    return 1.0

def _exits_many(models, context):
    raise SystemExit(3)

@computes_many(_exits_many)
def exits_together(model, context):
    return 1.0

class FirstLogit:
    def __init__(self, scale):
        self.scale = scale

    def __call__(self, model, context):
        with torch.no_grad():
            return self.scale * model(context.batches[0][0])[0, 0].item()
'''


def write_card(folder: Path, name: str, body: str) -> Path:
    path = folder / "measures" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


def user_card(folder: Path, name: str, function: str, params: str = "") -> Path:
    return write_card(folder, name, f"""\
        name: {name}
        description: a test measure
        function: user_measures.py:{function}
        source: the tests
        higher_means: worse
        {params}""")


@pytest.fixture()
def user_registry(tmp_path: Path) -> Path:
    (tmp_path / "measures").mkdir()
    (tmp_path / "measures" / "user_measures.py").write_text(USER_MEASURES, encoding="utf-8")
    user_card(tmp_path, "mutating", "mutating")
    user_card(tmp_path, "not-a-number", "not_a_number")
    user_card(tmp_path, "batchnorm-training", "batchnorm_training")
    user_card(tmp_path, "a-string", "a_string")
    user_card(tmp_path, "a-bool", "a_bool")
    user_card(tmp_path, "exits", "exits")
    for name in ("scales_batches", "drops_a_batch", "huge", "numpy_bool", "numpy_float", "complex_value",
                 "two_elements", "flips_to_train", "exits_together"):
        user_card(tmp_path, name.replace("_", "-"), name)
    user_card(tmp_path, "first-logit", "FirstLogit", "params: {scale: {type: float, default: 2.0}}")
    user_card(tmp_path, "sums", "sums")
    user_card(tmp_path, "short", "short")
    return tmp_path


def cpu_context(batches) -> sharpbench.MeasureContext:
    return sharpbench.MeasureContext(batches=batches, device=torch.device("cpu"), generator=torch.Generator(),
                                     num_classes=3)


def mlp_and_batches():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), nn.BatchNorm1d(7), nn.ReLU(), nn.Linear(7, 3))
    batches = [(torch.randn(16, 5), torch.randint(0, 3, (16,))) for _ in range(2)]
    return model, batches


def test_every_builtin_card_loads_and_resolves():
    registry = Registry.discover()
    assert BUILTIN_MEASURES == set(registry.measures)
    for spec in registry.measures.values():
        assert callable(spec.resolve()), spec.name
        assert spec.higher_means in ("worse", "better")


def test_param_norm_is_the_l2_norm_of_all_parameters():
    model, batches = mlp_and_batches()
    expected = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).double().norm().item()
    assert sharpbench.compute_measure("param-norm", model, batches) == pytest.approx(expected, rel=1e-12)


def test_train_loss_is_the_size_weighted_mean_cross_entropy_in_eval_mode():
    model, batches = mlp_and_batches()
    batches.append((torch.randn(4, 5), torch.randint(0, 3, (4,))))
    model.eval()
    with torch.no_grad():
        inputs = torch.cat([x for x, _ in batches])
        labels = torch.cat([y for _, y in batches])
        expected = nn.functional.cross_entropy(model(inputs), labels).item()
    model.train()  # compute_measure must switch to eval mode itself
    assert sharpbench.compute_measure("train-loss", model, batches) == pytest.approx(expected, rel=1e-6)


def test_overrides_are_typed_and_change_the_value():
    model, batches = mlp_and_batches()
    small = sharpbench.compute_measure("sharpness-worst-linf-adaptive", model, batches, rho=0.001)
    large = sharpbench.compute_measure("sharpness-worst-linf-adaptive", model, batches, rho="0.01")
    assert 0 <= small < large


def test_an_unknown_parameter_or_a_fixed_one_is_refused():
    model, batches = mlp_and_batches()
    with pytest.raises(SharpbenchError, match="no parameter 'radius'"):
        sharpbench.compute_measure("sharpness-worst-linf-adaptive", model, batches, radius=0.1)
    with pytest.raises(SharpbenchError, match="fixed by the card"):
        sharpbench.compute_measure("sharpness-worst-linf-adaptive", model, batches, norm="l2")
    with pytest.raises(SharpbenchError, match="expects an integer"):
        sharpbench.compute_measure("sharpness-worst-linf-adaptive", model, batches, steps="many")


def test_an_unknown_measure_name_suggests_the_close_ones():
    with pytest.raises(UnknownNameError, match="Did you mean: sharpness-worst-linf-adaptive"):
        Registry.discover().measure("sharpness-worst-linf-adaptiv")


@pytest.mark.parametrize("name,message", [
    ("mutating", "'mutating' changed the weights.*0.weight"),
    ("batchnorm-training", "changed the weights.*running_mean"),
    ("not-a-number", "'not-a-number' returned nan"),
    ("a-string", "'a-string' returned str \\('0.5'\\) for the model; it must return a real number"),
    ("a-bool", "'a-bool' returned bool \\(True\\) for the model"),
    ("numpy-bool", "'numpy-bool' returned bool \\(np.True_\\) for the model"),
    ("complex-value", "returned complex"),
    ("two-elements", "returned Tensor"),
    ("huge", "'huge' returned a number beyond the range of a float \\(int, 401 digits\\)"),
    ("exits", "'exits' failed on the model: SystemExit"),
    ("scales-batches", "'scales-batches' changed the sharpness batches in place \\(batch 0's inputs\\)"),
    ("drops-a-batch", "changed the sharpness batches in place \\(the list of batches \\(2 batches before, 1 after"),
])
def test_a_misbehaving_measure_is_caught_and_named(user_registry, name, message):
    model, batches = mlp_and_batches()
    with pytest.raises(MeasureError, match=message):
        sharpbench.compute_measure(name, model, batches, include_paths=[user_registry])


def test_a_class_measure_is_built_with_its_parameters(user_registry):
    model, batches = mlp_and_batches()
    model.eval()
    with torch.no_grad():
        first = model(batches[0][0])[0, 0].item()
    value = sharpbench.compute_measure("first-logit", model, batches, include_paths=[user_registry], scale=3.0)
    assert value == pytest.approx(3.0 * first)


def test_a_users_card_cannot_shadow_a_builtin_one(tmp_path):
    user_card(tmp_path, "param-norm", "whatever")
    with pytest.raises(CardError, match="not already used by"):
        Registry.discover([tmp_path])
    with pytest.raises(CardError, match="not already used by"):
        find_measure("param-norm", [tmp_path])


def test_find_measure_gives_discoverys_card_without_reading_collection_cards(user_registry):
    registry = Registry.discover([user_registry])
    for name, spec in registry.measures.items():
        assert find_measure(name, [user_registry]) == spec
    with pytest.raises(UnknownNameError, match="Did you mean: sharpness-worst-linf-adaptive"):
        sharpbench.compute_measure("sharpness-worst-linf-adaptiv", *mlp_and_batches())
    (user_registry / "collections").mkdir(exist_ok=True)
    (user_registry / "collections" / "broken.yaml").write_text("name: [unclosed\n")
    with pytest.raises(CardError):
        Registry.discover([user_registry])
    assert find_measure("param-norm", [user_registry]) == registry.measures["param-norm"]


@pytest.mark.parametrize("body,field", [
    ("description: x\nfunction: m:f\nsource: s\nhigher_means: worse\n", "'name'"),
    ("name: bad\ndescription: 3\nfunction: m:f\nsource: s\nhigher_means: worse\n", "'description'"),
    ("name: bad\ndescription: x\nfunction: m:f\nsource: s\nhigher_means: worse\nrho: 1\n", "'rho'"),
    ("name: bad\ndescription: x\nfunction: m:f\nsource: s\nhigher_means: lower\n", "'higher_means'"),
    ("name: bad\ndescription: x\nfunction: m:f\nsource: s\nhigher_means: worse\n"
     "params: {rho: {type: float}}\n", "'params.rho.default'"),
    ("name: bad\ndescription: x\nfunction: m:f\nsource: s\nhigher_means: worse\n"
     "params: {rho: {type: complex, default: 1}}\n", "'params.rho.type'"),
    ("name: bad\ndescription: x\nfunction: m:f\nsource: s\nhigher_means: worse\n"
     "params: {rho: {type: float, default: fast}}\n", "'params.rho.default'"),
    ("name: [unclosed\n", "'<file>'"),
    ("name: bad\ndescription: x\nfunction: m:f\nsource: s\nhigher_means: worse\n"
     "params: {rho: {type: float, default: 1}}\ngrids: {radius: {vit: [1.0]}}\n", "'grids.radius'"),
    ("name: bad\ndescription: x\nfunction: m:f\nsource: s\nhigher_means: worse\n"
     "params: {rho: {type: float, default: 1}}\ngrids: {rho: {vit: [small]}}\n", "'grids.rho.vit'"),
    ("name: bad\ndescription: x\nfunction: m:f\nsource: s\nhigher_means: worse\nversion: 0\n", "'version'"),
    ("name: bad\ndescription: x\nfunction: m:f\nsource: s\nhigher_means: worse\nversion: '2'\n", "'version'"),
    ("name: bad\ndescription: x\nfunction: m:f\nsource: s\nhigher_means: worse\nversion: 1.5\n", "'version'"),
])
def test_a_malformed_card_names_the_file_and_the_field(tmp_path, body, field):
    path = tmp_path / "bad.yaml"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(CardError, match=f"bad.yaml: field {field}"):
        load_measure_spec(path)


def test_a_card_pointing_at_a_missing_implementation_says_so(tmp_path):
    path = user_card(tmp_path, "ghost", "ghost")
    (tmp_path / "measures" / "user_measures.py").write_text("x = 1\n", encoding="utf-8")
    with pytest.raises(CardError, match="field 'function'.*attribute 'ghost'"):
        load_measure_spec(path).resolve()


def test_a_numpy_float_is_a_real_number(user_registry):
    model, batches = mlp_and_batches()
    assert sharpbench.compute_measure("numpy-float", model, batches, include_paths=[user_registry]) == 0.25


def test_a_failure_in_a_many_model_call_names_the_first_model_and_how_many_more(user_registry):
    registry = Registry.discover([user_registry])
    models = [mlp_and_batches()[0] for _ in range(3)]
    _, batches = mlp_and_batches()
    context = cpu_context(batches)
    spec = registry.measure("exits-together")
    with pytest.raises(MeasureError, match="failed on model 'a' and 2 more: SystemExit"):
        run_guarded_many(spec, models, context, {}, ["model 'a'", "model 'b'", "model 'c'"])


def test_compute_measure_restores_each_modules_train_or_eval_mode(user_registry):
    model, batches = mlp_and_batches()
    model.train()
    model[1].eval()                     # a mixed state, as in fine-tuning with frozen BatchNorm statistics
    before = [module.training for module in model.modules()]
    sharpbench.compute_measure("param-norm", model, batches)
    assert [module.training for module in model.modules()] == before
    with pytest.raises(MeasureError):
        sharpbench.compute_measure("exits", model, batches, include_paths=[user_registry])
    assert [module.training for module in model.modules()] == before
    model.eval()
    sharpbench.compute_measure("flips-to-train", model, batches, include_paths=[user_registry])
    assert not any(module.training for module in model.modules())


def test_the_guard_checks_every_model_of_a_many_model_call(user_registry):
    registry = Registry.discover([user_registry])
    models = [mlp_and_batches()[0] for _ in range(2)]
    _, batches = mlp_and_batches()
    context = cpu_context(batches)
    with pytest.raises(MeasureError, match="changed the weights of model 'b'"):
        run_guarded_many(registry.measure("sums"), models, context, {}, ["model 'a'", "model 'b'"])
    with pytest.raises(MeasureError, match="one value per model"):
        run_guarded_many(registry.measure("short"), models, context, {}, ["model 'a'", "model 'b'"])


def key_inputs_of(folder: Path, card: str = "", source: bytes = b"def f(model, context):\n    return 1.0\n",
                  function: str = "f") -> dict:
    """The key inputs of a card 'keyed' (function user_measures.py:FUNCTION plus CARD lines) read afresh."""
    (folder / "measures").mkdir(parents=True, exist_ok=True)
    (folder / "measures" / "user_measures.py").write_bytes(source)
    path = user_card(folder, "keyed", function, card)
    return load_measure_spec(path).key_inputs()


def test_the_key_inputs_change_with_each_part_of_card_and_code_and_only_then(tmp_path):
    base = key_inputs_of(tmp_path / "a")
    assert base == key_inputs_of(tmp_path / "a")  # read again: unchanged
    assert base == key_inputs_of(tmp_path / "b")  # the same files in another folder
    assert base["card_version"] == 1 and base["fixed"] == {} and base["function"] == "user_measures.py:f"
    variants = {
        "version": key_inputs_of(tmp_path / "c", "version: 2"),
        "fixed": key_inputs_of(tmp_path / "d", "fixed: {scale: 2.0}"),
        "function": key_inputs_of(tmp_path / "e", source=b"def g(model, context):\n    return 1.0\n", function="g"),
        "source": key_inputs_of(tmp_path / "f", source=b"def f(model, context):\n    return 2.0\n"),
        "line endings": key_inputs_of(tmp_path / "g", source=b"def f(model, context):\r\n    return 1.0\r\n"),
        "card text only": key_inputs_of(tmp_path / "h", "definition: words that do not change the value"),
    }
    for change, inputs in variants.items():
        changed = {name for name in base if inputs[name] != base[name]}
        expected = {"version": {"card_version"}, "fixed": {"fixed"}, "function": {"function", "source_sha256"},
                    "source": {"source_sha256"}, "line endings": {"source_sha256"}, "card text only": set()}[change]
        assert changed == expected, change


def test_an_edited_file_runs_the_code_that_was_hashed(tmp_path):
    """A file beside a card is imported anew after an edit in the same process, so the value and the key agree."""
    model, batches = mlp_and_batches()
    context = sharpbench.MeasureContext(batches=batches, device=torch.device("cpu"), generator=torch.Generator(),
                                        num_classes=3)
    values = []
    for returned in (1.0, 2.0):
        key_inputs_of(tmp_path, source=f"def f(model, context):\n    return {returned}\n".encode())
        values.append(load_measure_spec(tmp_path / "measures" / "keyed.yaml").call(model, context, {}))
    assert values == [1.0, 2.0]


def test_the_implementation_says_where_it_came_from(tmp_path, monkeypatch):
    spec = Registry.discover().measure("sharpness-worst-linf-adaptive")
    implementation = spec.implementation()
    assert implementation.origin == "in-tree module measures/sharpness.py"
    in_tree = Path(__file__).resolve().parents[1] / "measures" / "sharpness.py"
    assert implementation.source_sha256 == hashlib.sha256(in_tree.read_bytes()).hexdigest()

    key_inputs_of(tmp_path / "cards")
    user = load_measure_spec(tmp_path / "cards" / "measures" / "keyed.yaml").implementation()
    assert user.origin == f"include path {(tmp_path / 'cards').resolve()}"

    (tmp_path / "site" / "sharpbench_test_pkg").mkdir(parents=True)
    (tmp_path / "site" / "sharpbench_test_pkg" / "__init__.py").write_text("")
    (tmp_path / "site" / "sharpbench_test_pkg" / "impl.py").write_text("def f(model, context):\n    return 1.0\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    path = write_card(tmp_path / "pkg", "packaged", """\
        name: packaged
        description: a measure in an importable package
        function: sharpbench_test_pkg.impl:f
        source: the tests
        higher_means: worse
        """)
    packaged = load_measure_spec(path).implementation()
    assert packaged.origin == "package module sharpbench_test_pkg.impl"
    assert packaged.source_sha256 == hashlib.sha256(b"def f(model, context):\n    return 1.0\n").hexdigest()


def test_the_key_sees_the_package_modules_a_measure_imports(tmp_path, monkeypatch):
    """An edit to a helper module of the measure's package, imported directly, relatively or through another
    module, changes the key; an edit to a module of the package that it does not import leaves it."""
    package = tmp_path / "site" / "sharpbench_test_deps"
    package.mkdir(parents=True)
    files = {"__init__.py": "", "impl.py": "from sharpbench_test_deps.shared import g\n\ndef f(model, context):\n"
             "    return g()\n", "shared.py": "from .deeper import h\n\ndef g():\n    return h()\n",
             "deeper.py": "def h():\n    return 1.0\n", "unrelated.py": "X = 1\n"}
    for name, text in files.items():
        (package / name).write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    impl = package / "impl.py"

    def digest() -> str:
        return source_sha256(impl, "sharpbench_test_deps.impl")

    base = digest()
    assert base != hashlib.sha256(impl.read_bytes()).hexdigest()
    (package / "unrelated.py").write_text("X = 2\n")
    assert digest() == base
    (package / "deeper.py").write_text("def h():\n    return 2.0\n")
    assert digest() != base
    # The in-tree measures that import a helper module are pinned by it too; a self-contained one by its file alone.
    registry = Registry.discover()
    frobenius = registry.measure("hessian-frobenius-norm").implementation().source_sha256
    in_tree = Path(__file__).resolve().parents[1] / "measures" / "hessian_spectrum.py"
    assert frobenius == source_sha256(in_tree, "sharpbench_measures.hessian_spectrum")
    assert frobenius != hashlib.sha256(in_tree.read_bytes()).hexdigest()


def test_a_function_in_a_module_without_source_is_refused(tmp_path):
    path = write_card(tmp_path, "compiled", """\
        name: compiled
        description: a function of a module with no Python source
        function: math:fsum
        source: the tests
        higher_means: worse
        """)
    with pytest.raises(CardError, match="field 'function'.*module 'math' has none"):
        load_measure_spec(path).key_inputs()


def test_a_file_that_fails_to_import_is_retried_after_it_is_fixed(tmp_path):
    with pytest.raises(CardError, match="ZeroDivisionError"):
        key_inputs_of(tmp_path, source=b"1 / 0\ndef f(model, context):\n    return 1.0\n")
    key_inputs_of(tmp_path)  # the fixed file imports
    with pytest.raises(CardError, match="ZeroDivisionError"):  # and the broken one still fails: never half-cached
        key_inputs_of(tmp_path, source=b"1 / 0\ndef f(model, context):\n    return 1.0\n")
