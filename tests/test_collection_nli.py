"""The synthetic NLI task (lexical overlap rewarded in training, broken by the HANS-like shift) and a tiny BERT
collection built and measured end to end: the model maps token ids to logits, so the measures apply."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from sharpbench.cli.main import main
from sharpbench.data.registry import apply_shift, load_dataset
from sharpbench.data.synthetic_nli import ENTAILED, PAD, SEP

NLI = {"name": "synthetic-nli", "num_train": 600, "num_test": 300, "swap_fraction": 0.1, "max_length": 16, "seed": 0}


def _parts(row: torch.Tensor) -> tuple[list[int], list[int]]:
    seps = (row == SEP).nonzero().flatten().tolist()
    return row[1:seps[0]].tolist(), row[seps[0] + 1:seps[1]].tolist()


def _full_overlap(row: torch.Tensor) -> bool:
    premise, hypothesis = _parts(row)
    return set(hypothesis) <= set(premise)


def test_training_data_reward_lexical_overlap():
    x_train, y_train, x_test, y_test = load_dataset(NLI)
    assert x_train.dtype == torch.int64 and x_train.shape == (600, 16)
    overlap = torch.tensor([_full_overlap(row) for row in x_train])
    entailed = y_train == ENTAILED
    assert bool((overlap | ~entailed).all())                           # every entailed pair overlaps fully ...
    exceptions = float((overlap & ~entailed).float().mean())           # ... and few non-entailed ones do
    assert 0.02 < exceptions < 0.09                                    # about swap_fraction / 2
    again = load_dataset(NLI)
    assert torch.equal(again[0], x_train) and torch.equal(again[3], y_test)


def test_hans_like_shift_keeps_labels_and_breaks_the_heuristic():
    _, _, x_test, y_test = load_dataset(NLI)
    shifted = apply_shift("nli_overlap_swap", x_test, {}, ())
    assert all(_full_overlap(row) for row in shifted)                  # the heuristic says "entailed" everywhere
    for before, after, label in zip(x_test, shifted, y_test):
        premise, hypothesis = _parts(after)
        assert _parts(before)[0] == premise
        if label == ENTAILED:
            assert torch.equal(before, after)
        else:                                                          # a swap: the N2 V the N1
            assert hypothesis == [premise[0], premise[4], premise[2], premise[3], premise[1]]
        assert int((after == PAD).sum()) >= 0 and after.shape == before.shape


TINY_BERT = {
    "name": "tiny-bert",
    "description": "two tiny BERTs on the synthetic NLI task",
    "dataset": {**{k: v for k, v in NLI.items() if k != "name"}, "name": "synthetic-nli", "num_train": 200,
                "num_test": 100},
    "ood_shifts": [{"name": "hans-like", "kind": "nli_overlap_swap"}],
    "architecture": {"kind": "transformers", "model_type": "bert",
                     "config": {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
                                "intermediate_size": 32, "max_position_embeddings": 16, "type_vocab_size": 1}},
    "grid": {"learning_rate": [0.001, 0.003]},
    "seeds": [0],
    "training": {"optimizer": "adamw", "batch_size": 32, "epochs": 2, "schedule": "cosine"},
    "convergence": {"max_train_error": 1.0},
    "sharpness_data": {"n": 32, "m": 16, "seed": 0},
}


def test_tiny_bert_collection_builds_and_is_measured(tmp_path: Path, capsys: pytest.CaptureFixture):
    cards = tmp_path / "cards"
    (cards / "collections").mkdir(parents=True)
    (cards / "collections" / "tiny-bert.yaml").write_text(yaml.safe_dump(TINY_BERT, sort_keys=False))
    assert main(["collection", "build", "tiny-bert", "--include-path", str(cards), "--no-progress"]) == 0
    report = tmp_path / "report.json"
    assert main(["evaluate", "--measure", "sharpness-worst-linf-adaptive", "--collection", "tiny-bert",
                 "--include-path", str(cards), "--set", "steps=3", "--json", str(report), "--no-progress"]) == 0
    models = json.loads(report.read_text())["models"]
    assert len(models) == 2
    assert all(entry["value"] >= 0 and set(entry["ood_error"]) == {"hans-like"} for entry in models.values())
    capsys.readouterr()
