"""MultiNLI (Williams et al. 2018) with HANS (McCoy et al. 2019) as its OOD set, for BERT fine-tuned on MNLI.

MNLI's training set and matched validation set (the collection's test set) are read from the official
jsonl files in a local folder, else from the hub's GLUE copy; HANS from its official TSV, else the hub.
Pairs are kept as text and tokenized when an item is read (393k training pairs, of which only small seeded
subsets are ever used): an item is a (2, max_length) int64 tensor [input_ids, token_type_ids] and a label.
Labels are mapped into the model's class order (``label_order``: hub checkpoints differ, see their
config.id2label). HANS has two labels, entailment and non-entailment; its label groups make
:func:`sharpbench.data.sets.score_outcomes` apply McCoy et al.'s rule (neutral or contradiction counts as
non-entailment).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Sequence

import torch
from torch.utils.data import Dataset

from sharpbench.errors import SharpbenchError
from sharpbench.cards.schema import Param, at_least, non_negative, one_of, permutation_of, positive
from sharpbench.data.locate import DataNotFoundError, DataPaths, reading
from sharpbench.data.sets import TRAIN_EVAL_SIZE, DatasetSplits, EvalSet

NAME = "multinli_1.0"
HUB_ID = "nyu-mll/glue"
FILES = {"train": "multinli_1.0_train.jsonl", "test": "multinli_1.0_dev_matched.jsonl"}
HUB_SPLITS = {"train": "train", "test": "validation_matched"}
HANS_NAME = "hans"
HANS_HUB_ID = "hans"
HANS_FILE = "heuristics_evaluation_set.txt"
HEURISTICS = ("lexical_overlap", "subsequence", "constituent")
CLASSES = ("entailment", "neutral", "contradiction")      # MNLI's own order (GLUE's labels 0, 1, 2)
HANS_CLASSES = ("entailment", "non-entailment")            # HANS's labels 0, 1
BERT_VOCAB_SIZE, BERT_PAD_ID = 30522, 0                     # bert-base-uncased's


PARAMS: dict[str, Param] = {
    "tokenizer": Param(str, default="bert-base-uncased",
                       expected="a hub tokenizer name or a local folder written by save_pretrained"),
    "max_length": Param(int, default=128, check=at_least(4)),
    "label_order": Param(list, default=list(CLASSES), check=permutation_of(CLASSES),
                         note="the model's class order"),
    "vocab_size": Param(int, default=BERT_VOCAB_SIZE, check=positive,
                        note="the tokenizer's vocabulary size, checked when the data are loaded"),
    "pad_token_id": Param(int, default=BERT_PAD_ID, check=non_negative,
                          note="the tokenizer's padding id, checked when the data are loaded"),
    "hub_id": Param(str, default=HUB_ID),
    "train_eval_size": TRAIN_EVAL_SIZE,
}
HANS_PARAMS: dict[str, Param] = {
    "heuristic": Param(str, default="all", check=one_of("all", *HEURISTICS)),
    "label": Param(str, default="all", check=one_of("all", *HANS_CLASSES),
                   note="non-entailment: the pairs a heuristic gets wrong, where the models differ"),
    "hub_id": Param(str, default=HANS_HUB_ID),
}
OOD_SETS: dict[str, dict[str, Param]] = {"hans": HANS_PARAMS}   # the OOD set kinds a card may name


def architecture_fields(cfg: dict[str, Any]) -> dict[str, Any]:
    """The architecture fields the dataset section fixes. Vocabulary size and padding id are card fields
    (bert-base-uncased's by default) rather than read from the tokenizer, so that validating a card needs
    no tokenizer download; :func:`load_mnli` checks them against the tokenizer."""
    return {"in_features": 2 * int(cfg["max_length"]), "vocab_size": int(cfg["vocab_size"]),
            "pad_token_id": int(cfg["pad_token_id"])}


class PairDataset(Dataset):
    """Sentence pairs tokenized when read: item i is ((2, max_length) int64 [input_ids, token_type_ids],
    label), truncated to max_length and padded with the tokenizer's padding id."""

    def __init__(self, premises: list[str], hypotheses: list[str], labels: list[int], tokenizer: Any,
                 max_length: int) -> None:
        self.premises, self.hypotheses, self.labels = premises, hypotheses, labels
        self.tokenizer, self.max_length = tokenizer, int(max_length)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        encoded = self.tokenizer(self.premises[i], self.hypotheses[i], padding="max_length", truncation=True,
                                 max_length=self.max_length, return_token_type_ids=True)
        return torch.tensor([encoded["input_ids"], encoded["token_type_ids"]], dtype=torch.int64), self.labels[i]


Pairs = tuple[list[str], list[str], list[int]]   # premises, hypotheses, labels (in the source's own order)


def _hub_error(error: Exception) -> str:
    return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"


def _read_jsonl(path: Path) -> Pairs:
    """The pairs of an official MultiNLI jsonl file; rows without a gold label ("-") are dropped."""
    premises, hypotheses, labels = [], [], []
    with reading(path, "MultiNLI jsonl (UTF-8, one JSON object per line)"), path.open(encoding="utf-8") as lines:
        for line in lines:
            if not line.strip():
                continue
            row = json.loads(line)
            if row["gold_label"] not in CLASSES:
                continue
            premises.append(row["sentence1"])
            hypotheses.append(row["sentence2"])
            labels.append(CLASSES.index(row["gold_label"]))
    return premises, hypotheses, labels


def _mnli_pairs(hub_id: str, paths: DataPaths) -> dict[str, Pairs]:
    """MNLI's train and test (validation-matched) pairs: the local jsonl files, else the hub's GLUE copy."""
    folder = paths.find_dir(NAME, list(FILES.values()))
    if folder is not None:
        return {split: _read_jsonl(folder / file) for split, file in FILES.items()}
    import datasets

    try:
        loaded = datasets.load_dataset(hub_id, "mnli")
    except Exception as error:  # offline, unknown id, no network: all mean "not here", with the reason kept
        raise DataNotFoundError(paths.not_found_message(NAME, list(FILES.values()), (), hub_id, _hub_error(error))) from None
    out = {}
    for split, hub_split in HUB_SPLITS.items():
        rows = loaded[hub_split]
        premises, hypotheses, labels = (list(rows[column]) for column in ("premise", "hypothesis", "label"))
        keep = [i for i, label in enumerate(labels) if label >= 0]     # -1: no gold label
        out[split] = [premises[i] for i in keep], [hypotheses[i] for i in keep], [labels[i] for i in keep]
    return out


def _hans_pairs(heuristic: str, label: str, hub_id: str, paths: DataPaths) -> Pairs:
    """HANS's evaluation pairs (labels 0 entailment, 1 non-entailment), of one heuristic or all, of one label or
    both: the official TSV in a local folder, else the hub."""
    folder = paths.find_dir(HANS_NAME, [HANS_FILE])
    if folder is not None:
        with reading(folder / HANS_FILE, "the HANS TSV (UTF-8)"), \
                (folder / HANS_FILE).open(encoding="utf-8", newline="") as file:
            rows = [(r["sentence1"], r["sentence2"], HANS_CLASSES.index(r["gold_label"]), r["heuristic"])
                    for r in csv.DictReader(file, delimiter="\t", quoting=csv.QUOTE_NONE)]
    else:
        import datasets

        try:
            loaded = datasets.load_dataset(hub_id, split="validation")
        except Exception as error:
            raise DataNotFoundError(paths.not_found_message(HANS_NAME, [HANS_FILE], (), hub_id, _hub_error(error))) from None
        rows = list(zip(loaded["premise"], loaded["hypothesis"], loaded["label"], loaded["heuristic"]))
    kept = [row for row in rows if (heuristic == "all" or row[3] == heuristic)
            and (label == "all" or int(row[2]) == HANS_CLASSES.index(label))]
    return [r[0] for r in kept], [r[1] for r in kept], [int(r[2]) for r in kept]


def load_tokenizer(name: str) -> Any:
    """``AutoTokenizer.from_pretrained(name)``; a clear error when it is neither a local folder nor reachable."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as error:
        raise SharpbenchError(
            f"tokenizer {name!r} could not be loaded ({_hub_error(error)}). Set the card's dataset.tokenizer to a "
            f"local folder holding it (as tokenizer.save_pretrained writes), or go online (unset HF_HUB_OFFLINE) "
            f"so that the hub name is downloaded.") from None


def _with_defaults(schema: dict[str, Param], values: dict[str, Any]) -> dict[str, Any]:
    return {**{k: p.default for k, p in schema.items() if p.default is not ...}, **values}


def load_mnli(cfg: dict[str, Any], ood: Sequence[tuple[str, str, dict[str, Any]]], paths: DataPaths) -> DatasetSplits:
    """MNLI's training set, its matched validation set as the test set and the OOD sets asked for
    ((card name, kind, params); kind ``hans``), labels in the model's class order ``label_order``."""
    cfg = _with_defaults(PARAMS, cfg)
    for name, kind, _ in ood:
        if kind not in OOD_SETS:
            raise SharpbenchError(f"OOD set {name!r}: MNLI offers the OOD kinds {sorted(OOD_SETS)}, not {kind!r}")
    pairs = _mnli_pairs(str(cfg["hub_id"]), paths)
    hans = {name: _hans_pairs(**_with_defaults(HANS_PARAMS, params), paths=paths) for name, _, params in ood}
    tokenizer = load_tokenizer(str(cfg["tokenizer"]))
    found = {"vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id}
    wrong = [f"dataset.{key}: {value} (the card says {cfg[key]})" for key, value in found.items() if value != cfg[key]]
    if wrong:
        raise SharpbenchError(f"tokenizer {cfg['tokenizer']!r} needs {', '.join(wrong)}: the model's embeddings and "
                              f"attention mask follow these card fields, so set them to the tokenizer's values")
    to_model = [list(cfg["label_order"]).index(name) for name in CLASSES]   # MNLI label -> model class
    max_length = int(cfg["max_length"])

    def mnli(split: Pairs) -> PairDataset:
        premises, hypotheses, labels = split
        return PairDataset(premises, hypotheses, [to_model[label] for label in labels], tokenizer, max_length)

    entailment, neutral, contradiction = to_model
    hans_groups = ((entailment,), (neutral, contradiction))
    return DatasetSplits(
        train=mnli(pairs["train"]),
        test=EvalSet(mnli(pairs["test"])),
        ood={name: EvalSet(PairDataset(*split, tokenizer, max_length), hans_groups) for name, split in hans.items()},
    )
