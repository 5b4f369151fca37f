"""Streamed scoring: label groups (ImageNet-R's logit mask, HANS's merged classes) and batch-size invariance."""

import math

import pytest
import torch
from torch.utils.data import TensorDataset

from sharpbench.data.streams import EvalSet, group_logits, groups_for, seeded_subset, stream_errors, stream_outcomes
from sharpbench.training.recipe import evaluate_errors, evaluate_outcomes


def test_hans_groups_predict_by_argmax_and_score_by_group_mass():
    # classes: 0 entailment, 1 neutral, 2 contradiction; HANS labels: 0 entailment, 1 non-entailment
    logits = torch.log(torch.tensor([[0.40, 0.35, 0.25], [0.5, 0.1, 0.4], [0.2, 0.3, 0.5]]))
    scores, predicted = group_logits(logits, ((0,), (1, 2)))
    # row 0: arg-max is entailment although non-entailment holds 60% of the mass (McCoy et al.'s rule)
    assert predicted.tolist() == [0, 0, 1]
    probs = scores.softmax(dim=1)
    assert torch.allclose(probs, torch.tensor([[0.40, 0.60], [0.5, 0.5], [0.2, 0.8]]), atol=1e-6)


def test_subset_groups_mask_the_other_logits():
    logits = torch.tensor([[9.0, 1.0, 2.0, 0.0], [0.0, 5.0, 1.0, 7.0]])
    scores, predicted = group_logits(logits, groups_for([1, 2]))
    assert predicted.tolist() == [1, 0]          # labels are positions in the subset: class 2 -> 1, class 1 -> 0
    assert torch.equal(scores, logits[:, [1, 2]])


def test_stream_errors_agree_with_in_memory_scoring_for_any_batch_size():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 3))
    x, y = torch.randn(37, 5), torch.randint(0, 3, (37,))
    expected = evaluate_errors(model, x, y)
    for batch_size in (1, 8, 100):
        error, loss = stream_errors(model, EvalSet(TensorDataset(x, y)), batch_size=batch_size)
        assert error == expected[0] and math.isclose(loss, expected[1], rel_tol=1e-5)


def test_stream_outcomes_are_per_example_and_agree_with_in_memory_scoring():
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(5, 4))
    x, y = torch.randn(23, 5), torch.randint(0, 2, (23,))
    groups = ((0,), (1, 3))                               # label 1 stands for classes 1 and 3; class 2 is masked
    streamed = stream_outcomes(model, EvalSet(TensorDataset(x, y), groups), batch_size=5)
    with torch.no_grad():
        logits = model(x)
    scores, predicted = group_logits(logits, groups)
    assert torch.equal(streamed.error, (predicted != y).float())
    assert torch.allclose(streamed.loss, torch.nn.functional.cross_entropy(scores, y, reduction="none"), atol=1e-6)
    plain = stream_outcomes(model, EvalSet(TensorDataset(x, y)), batch_size=7)
    in_memory = evaluate_outcomes(model, x, y, batch_size=4)
    assert torch.equal(plain.error, in_memory.error) and torch.allclose(plain.loss, in_memory.loss, atol=1e-6)


def test_overlapping_groups_are_rejected():
    with pytest.raises(ValueError, match="disjoint"):
        EvalSet(TensorDataset(torch.zeros(1, 1), torch.zeros(1)), ((0, 1), (1,)))


def test_seeded_subset_is_fixed_and_without_repeats():
    data = TensorDataset(torch.arange(100.0), torch.arange(100))
    a, b = seeded_subset(data, 10, seed=3), seeded_subset(data, 10, seed=3)
    assert a.indices == b.indices and len(set(a.indices)) == 10
    assert seeded_subset(data, 10, seed=4).indices != a.indices
    assert len(seeded_subset(data, 1000, seed=0)) == 100
