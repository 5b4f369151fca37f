"""Scoring on evaluation sets, in memory or streamed: label groups (ImageNet-R's logit mask, HANS's merged classes) and batch-size invariance."""

import math

import pytest
import torch
from torch.utils.data import Subset, TensorDataset

from sharpbench.data.sets import EvalSet, group_logits, groups_for, seeded_subset, score_outcomes
from tensor_scoring import errors_on, outcomes_on


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


def _streamed(x: torch.Tensor, y: torch.Tensor) -> Subset:
    """The same items as a dataset read item by item (the DataLoader path of a streamed set)."""
    return Subset(TensorDataset(x, y), list(range(x.shape[0])))


def test_scoring_is_the_same_in_memory_and_streamed_for_any_batch_size():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 3))
    x, y = torch.randn(37, 5), torch.randint(0, 3, (37,))
    expected = errors_on(model, x, y)
    for batch_size in (1, 8, 100):
        for dataset in (TensorDataset(x, y), _streamed(x, y)):
            error, loss = score_outcomes(model, EvalSet(dataset), batch_size=batch_size).means()
            assert error == expected[0] and math.isclose(loss, expected[1], rel_tol=1e-5)


def test_outcomes_are_per_example_and_score_label_groups():
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(5, 4))
    x, y = torch.randn(23, 5), torch.randint(0, 2, (23,))
    groups = ((0,), (1, 3))                               # label 1 stands for classes 1 and 3; class 2 is masked
    streamed = score_outcomes(model, EvalSet(_streamed(x, y), groups), batch_size=5)
    with torch.no_grad():
        logits = model(x)
    scores, predicted = group_logits(logits, groups)
    assert torch.equal(streamed.error, (predicted != y).float())
    assert torch.allclose(streamed.loss, torch.nn.functional.cross_entropy(scores, y, reduction="none"), atol=1e-6)
    plain = score_outcomes(model, EvalSet(_streamed(x, y)), batch_size=7)
    in_memory = outcomes_on(model, x, y, batch_size=4)
    assert torch.equal(plain.error, in_memory.error) and torch.allclose(plain.loss, in_memory.loss, atol=1e-6)


def test_overlapping_groups_are_rejected():
    with pytest.raises(ValueError, match="disjoint"):
        EvalSet(TensorDataset(torch.zeros(1, 1), torch.zeros(1)), ((0, 1), (1,)))


def test_seeded_subset_is_fixed_and_without_repeats():
    for data in (TensorDataset(torch.arange(100.0), torch.arange(100)), _streamed(torch.arange(100.0), torch.arange(100))):
        a, b = seeded_subset(data, 10, seed=3), seeded_subset(data, 10, seed=3)
        labels = [int(a[i][1]) for i in range(len(a))]
        assert labels == [int(b[i][1]) for i in range(len(b))] and len(set(labels)) == 10
        assert [int(item[1]) for item in seeded_subset(data, 10, seed=4)] != labels
        assert len(seeded_subset(data, 1000, seed=0)) == 100
    in_memory, streamed = (seeded_subset(d, 10, seed=3) for d in (TensorDataset(torch.arange(100.0), torch.arange(100)),
                                                                 _streamed(torch.arange(100.0), torch.arange(100))))
    assert [int(item[1]) for item in in_memory] == [int(item[1]) for item in streamed]   # the same items either way
