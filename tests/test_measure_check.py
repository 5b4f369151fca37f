"""`sharpbench measure check`: each property is a test that can fail, shown on measures built to break it, and the
invariances agree with what is known analytically (param-norm changes under rescaling, train-loss does not)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch

from sharpbench.cli.main import main
from sharpbench.evaluation.check_models import ARCHITECTURES, build_check_model
from sharpbench.evaluation.properties import PROPERTIES, permuted, rescaled
from sharpbench.leaderboard.properties import validate_properties

# Measures that break one property each; `loss` is the honest mean loss they start from.
BROKEN = '''\
import torch
from sharpbench import computes_many


def loss(model, context):
    with torch.no_grad():
        return float(sum(context.loss_fn(model(x), y) for x, y in context.batches))


def mutates_a_weight(model, context):
    value = loss(model, context)
    with torch.no_grad():
        next(model.parameters()).add_(1e-3)
    return value


def flips_train_mode(model, context):
    model.train()
    return loss(model, context)


def scales_a_batch(model, context):
    inputs, labels = context.batches[0]
    inputs.mul_(2.0) if inputs.is_floating_point() else labels.zero_()     # token ids: relabel instead
    return loss(model, context)


def unseeded(model, context):
    return loss(model, context) + torch.rand(()).item()       # the global RNG, not context.generator


def seeded(model, context):
    return loss(model, context) + torch.rand((), generator=context.generator).item()


def _many_off_by_a_percent(models, context):
    return [1.01 * loss(model, context) for model in models]


def _many_faithful(models, context):
    return [loss(model, context) for model in models]


@computes_many(_many_off_by_a_percent)
def many_disagrees(model, context):
    return loss(model, context)


@computes_many(_many_faithful)
def many_agrees(model, context):
    return loss(model, context)


def no_convolutions(model, context):
    if any(isinstance(module, torch.nn.Conv2d) for module in model.modules()):
        raise NotImplementedError("defined for networks without convolutions")
    return loss(model, context)


def fails_on_text(model, context):
    if context.batches[0][0].dtype == torch.int64:
        raise ValueError("token ids are not images")
    return loss(model, context)


def not_a_number(model, context):
    return float("nan")
'''


@pytest.fixture(scope="module")
def cards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An --include-path folder with one card per function of BROKEN."""
    root = tmp_path_factory.mktemp("check-cards")
    (root / "measures").mkdir()
    (root / "measures" / "broken.py").write_text(BROKEN, encoding="utf-8")
    for function in ("mutates_a_weight", "flips_train_mode", "scales_a_batch", "unseeded", "seeded",
                     "many_disagrees", "many_agrees", "no_convolutions", "fails_on_text", "not_a_number"):
        name = function.replace("_", "-")
        (root / "measures" / f"{name}.yaml").write_text(textwrap.dedent(f"""\
            name: {name}
            description: a measure for the tests of measure check
            function: broken.py:{function}
            source: tests
            higher_means: worse
            """), encoding="utf-8")
    return root


def check(capsys, tmp_path: Path, name: str, *extra: str) -> tuple[int, str, str, dict]:
    report = tmp_path / f"{name}.json"
    code = main(["measure", "check", name, "--no-progress", "--json", str(report), *extra])
    out, err = capsys.readouterr()
    document = json.loads(report.read_text(encoding="utf-8")) if report.exists() else {}
    return code, out, err, document


@pytest.mark.parametrize("name,failed,message", [
    ("mutates-a-weight", "unchanged", "mlp: the call changed 0.weight"),
    ("flips-train-mode", "unchanged", "in train mode"),
    ("scales-a-batch", "unchanged", "changed batch 0's inputs in place"),
    ("unseeded", "deterministic", "deterministic: mlp: two calls with the generator seeded alike gave different"),
    ("many-disagrees", "many_equals_single", "many_equals_single: mlp: many-model form gave"),
    ("fails-on-text", "finite", "finite: bert: ValueError: token ids are not images"),
    ("not-a-number", "finite", "returned nan"),
])
def test_a_measure_that_breaks_a_required_property_fails_the_check(capsys, tmp_path, cards, name, failed, message):
    code, out, err, document = check(capsys, tmp_path, name, "--include-path", str(cards))
    assert code == 1, out + err
    assert document["properties"][failed] is False
    assert document["passed"] is False
    assert message in out and "FAILED:" in out and "Traceback" not in err
    validate_properties(document, name)
    broken = {prop for prop, holds in document["properties"].items() if holds is False}
    # each measure breaks its property and no other required one (the invariances are facts, not requirements)
    assert broken - {"rescaling_invariant", "permutation_invariant"} == {failed}


def test_a_measure_with_every_required_property_passes_and_reports_facts(capsys, tmp_path, cards):
    code, out, _, document = check(capsys, tmp_path, "many-agrees", "--include-path", str(cards))
    assert code == 0, out
    assert document["properties"] == dict.fromkeys(PROPERTIES, True)
    assert set(document["models"]) == set(ARCHITECTURES)
    assert all(model["status"] == "ok" and model["many_equals_single"] for model in document["models"].values())
    assert document["cost_passes"] == document["models"]["mlp"]["cost_passes"] > 0
    assert "passed: every required property holds" in out
    for header in ("| model ", "deterministic", "many = single", "cost (passes)", "rescaling_invariant"):
        assert header in out
    validate_properties(document, "many-agrees")


def test_a_seeded_random_measure_is_deterministic_but_not_invariant(capsys, tmp_path, cards):
    code, _, _, document = check(capsys, tmp_path, "seeded", "--include-path", str(cards))
    assert code == 0
    assert document["properties"]["deterministic"] is True
    assert document["properties"]["many_equals_single"] is None          # not offered
    assert document["properties"]["rescaling_invariant"] is True          # the same draw on the same function


def test_not_implemented_on_a_family_is_not_applicable_not_a_failure(capsys, tmp_path, cards):
    code, out, _, document = check(capsys, tmp_path, "no-convolutions", "--include-path", str(cards))
    assert code == 0, out
    assert document["models"]["cnn-batchnorm"]["status"] == "not applicable"
    assert document["models"]["vit"]["status"] == "not applicable"       # timm's patch embedding is a Conv2d
    assert document["models"]["mlp"]["status"] == "ok" and document["properties"]["finite"] is True
    assert "not applicable to cnn-batchnorm: NotImplementedError: defined for networks without convolutions" in out


@pytest.mark.parametrize("name,rescaling,permutation", [
    ("param-norm", False, True),       # ||w|| moves when one layer grows by a and the next shrinks by a
    ("train-loss", True, True),        # a function of the network's outputs only
    ("output-margin", True, True),     # a percentile of the logits' margins
])
def test_invariances_are_the_known_ones(capsys, tmp_path, name, rescaling, permutation):
    code, out, _, document = check(capsys, tmp_path, name)
    assert code == 0, out
    assert document["properties"]["rescaling_invariant"] is rescaling
    assert document["properties"]["permutation_invariant"] is permutation
    assert document["provenance"]["torch_threads"] == 1


def test_the_transformations_keep_the_function_and_change_the_weights():
    mlp = build_check_model("mlp").model
    inputs = build_check_model("mlp").batches[0][0]
    for changed in (rescaled(mlp, 3.0), permuted(mlp, torch.Generator().manual_seed(0))):
        assert not torch.equal(changed[0].weight, mlp[0].weight)
        torch.testing.assert_close(changed(inputs), mlp(inputs), rtol=1e-5, atol=1e-6)
    assert torch.equal(rescaled(mlp, 4.0)[0].weight, 4.0 * mlp[0].weight)


def test_publish_writes_a_validated_properties_file_with_the_implementations_digest(capsys, tmp_path):
    board = tmp_path / "board"
    code, out, _, document = check(capsys, tmp_path, "param-norm", "--publish", "--leaderboard-dir", str(board))
    assert code == 0
    published = json.loads((board / "properties" / "param-norm.json").read_text(encoding="utf-8"))
    assert published["properties"] == document["properties"]
    validate_properties(published, "param-norm.json")
    from sharpbench.cards.discovery import Registry
    implementation = Registry.discover().measure("param-norm").implementation()
    assert published["provenance"]["implementation"]["source_sha256"] == implementation.source_sha256
    assert f"properties published to {board / 'properties' / 'param-norm.json'}" in out


def test_an_unknown_measure_is_a_user_error(capsys):
    assert main(["measure", "check", "param-nrom", "--no-progress"]) == 2
    assert "Did you mean: param-norm" in capsys.readouterr().err


def test_an_unwritable_output_is_refused_before_any_model_is_built(capsys, tmp_path, monkeypatch):
    import sharpbench.cli.measure as command

    monkeypatch.setattr(command, "check_measure", lambda *a, **k: pytest.fail("the check ran"))
    (tmp_path / "a-file").write_text("x")
    assert main(["measure", "check", "param-norm", "--no-progress", "--json", str(tmp_path)]) == 2
    assert f"--json {tmp_path} is a folder" in capsys.readouterr().err
    assert main(["measure", "check", "param-norm", "--no-progress", "--publish", "--leaderboard-dir",
                 str(tmp_path / "a-file")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
