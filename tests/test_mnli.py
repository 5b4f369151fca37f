"""MNLI and HANS read offline from tiny local stand-ins (official file formats, a WordPiece tokenizer saved
in tmp_path), the hub path through a stand-in of ``datasets.load_dataset``, and BERT's sentence-pair input
through TextClassifier."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from sharpbench.collection.spec import load_collection_spec
from sharpbench.data import mnli
from sharpbench.data.locate import DataPaths
from sharpbench.errors import SharpbenchError
from sharpbench.data.locate import DataNotFoundError
from sharpbench.models.text import TextClassifier
from sharpbench.data.sets import stack, score_outcomes

WORDS = ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]", "the", "doctor", "lawyer", "actor", "saw", "ran", "near",
         "paid", "and", "if"]
V = {word: i for i, word in enumerate(WORDS)}       # [PAD] = 3: a loader that pads with 0 is caught
CLS, SEP, PAD = V["[CLS]"], V["[SEP]"], V["[PAD]"]
ORDER = ["contradiction", "entailment", "neutral"]  # a model's class order unlike MNLI's own

MNLI_TRAIN = [("the doctor saw the lawyer", "the lawyer ran", "entailment"),
              ("the actor ran", "the actor saw the doctor", "neutral"),
              ("the lawyer paid the actor", "the actor paid", "-"),           # no gold label: dropped
              ("the doctor ran near the actor", "the doctor saw the lawyer", "contradiction"),
              ("the actor and the lawyer ran", "the actor ran", "entailment")]
MNLI_DEV = [("the lawyer saw the actor", "the actor ran", "neutral"),
            ("the doctor paid", "the doctor ran", "-"),
            ("the actor ran", "the actor ran", "entailment")]
HANS = [("entailment", "the doctor near the actor saw the lawyer", "the doctor saw the lawyer", "lexical_overlap"),
        ("non-entailment", "the doctor saw the lawyer", "the lawyer saw the doctor", "lexical_overlap"),
        ("entailment", "the actor ran and the lawyer paid", "the lawyer paid", "constituent"),
        ("non-entailment", "the doctor near the actor ran", "the actor ran", "subsequence"),
        ("non-entailment", "the lawyer paid the actor", "the actor paid the lawyer", "lexical_overlap"),
        ("non-entailment", "if the doctor ran the actor paid", "the doctor ran", "constituent")]
HANS_HEADER = ["gold_label", "sentence1_binary_parse", "sentence2_binary_parse", "sentence1_parse",
               "sentence2_parse", "sentence1", "sentence2", "pairID", "heuristic", "subcase", "template"]


def load_mnli(cfg, ood):
    """MNLI with the OOD sets asked for, its files found in the data folders of $SHARPBENCH_DATA (the fixture's)."""
    return mnli.load_mnli(cfg, ood, DataPaths.from_env())


def _jsonl(path: Path, rows: list[tuple[str, str, str]]) -> None:
    path.write_text("".join(json.dumps({"annotator_labels": [label], "genre": "fiction", "gold_label": label,
                                        "pairID": f"{i}e", "promptID": i, "sentence1": premise,
                                        "sentence1_binary_parse": f"( {premise} )", "sentence2": hypothesis,
                                        "sentence2_binary_parse": f"( {hypothesis} )"}) + "\n"
                            for i, (premise, hypothesis, label) in enumerate(rows)), encoding="utf-8")


@pytest.fixture
def tokenizer_dir(tmp_path: Path) -> Path:
    """A tiny WordPiece tokenizer (BERT's pair template, [PAD] = 3) saved as a local folder."""
    from transformers import BertTokenizerFast

    folder = tmp_path / "tokenizer"
    BertTokenizerFast(vocab=V).save_pretrained(folder)
    return folder


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """$SHARPBENCH_DATA with multinli_1.0/ (official jsonl) and hans/ (McCoy et al.'s TSV)."""
    root = tmp_path / "data"
    (root / "multinli_1.0").mkdir(parents=True)
    _jsonl(root / "multinli_1.0" / "multinli_1.0_train.jsonl", MNLI_TRAIN)
    _jsonl(root / "multinli_1.0" / "multinli_1.0_dev_matched.jsonl", MNLI_DEV)
    (root / "hans").mkdir()
    lines = ["\t".join(HANS_HEADER)] + [
        "\t".join([label, f"( {p} )", f"( {h} )", f"(ROOT (S {p}))", f"(ROOT (S {h}))", p, h, f"ex{i}", heuristic,
                   "sub", "temp1"]) for i, (label, p, h, heuristic) in enumerate(HANS)]
    (root / "hans" / "heuristics_evaluation_set.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    monkeypatch.setenv("SHARPBENCH_DATA", str(root))
    return root


def _cfg(tokenizer_dir: Path, **fields) -> dict:
    return {"tokenizer": str(tokenizer_dir), "max_length": 16, "vocab_size": len(V), "pad_token_id": PAD, **fields}


def _ids(text: str) -> list[int]:
    return [V[word] for word in text.split()]


def _tiny_bert(seed: int = 0) -> torch.nn.Module:
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(V), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=16, type_vocab_size=2, pad_token_id=PAD,
                        num_labels=3, initializer_range=0.5)   # large weights: logits that vary with the input
    return BertForSequenceClassification(config).eval()


def test_unlabelled_rows_are_dropped_and_labels_follow_the_models_class_order(data_dir, tokenizer_dir):
    default = load_mnli(_cfg(tokenizer_dir), [])
    assert default.train.premises == [p for p, _, label in MNLI_TRAIN if label != "-"]
    assert default.train.labels == [0, 1, 2, 0] and default.test.dataset.labels == [1, 0]
    reordered = load_mnli(_cfg(tokenizer_dir, label_order=ORDER), [])
    assert reordered.train.labels == [1, 2, 0, 1] and reordered.test.dataset.labels == [2, 1]
    assert reordered.test.label_groups is None and reordered.ood == {}


def test_an_item_is_ids_and_segments_padded_with_the_pad_id(data_dir, tokenizer_dir):
    data = load_mnli(_cfg(tokenizer_dir), [])
    x, label = data.train[0]
    premise, hypothesis = _ids(MNLI_TRAIN[0][0]), _ids(MNLI_TRAIN[0][1])
    tokens = [CLS, *premise, SEP, *hypothesis, SEP]
    assert x.dtype == torch.int64 and x.shape == (2, 16) and label == 0
    assert x[0].tolist() == tokens + [PAD] * (16 - len(tokens))
    assert x[1].tolist() == [0] * (len(premise) + 2) + [1] * (len(hypothesis) + 1) + [0] * (16 - len(tokens))
    short = load_mnli(_cfg(tokenizer_dir, max_length=8), [])
    ids, segments = short.train[3][0]                   # 6 + 6 words: both sides truncated to fit 8 tokens
    assert ids.shape == (8,) and ids[0] == CLS and ids[-1] == SEP and PAD not in ids.tolist()
    assert segments.tolist().count(1) >= 2 and (ids == SEP).sum() == 2
    inputs, labels = stack(data.train)
    assert inputs.shape == (4, 2, 16) and labels.tolist() == [0, 1, 2, 0]


def test_hans_heuristic_filter_and_label_groups(data_dir, tokenizer_dir):
    ood = [("hans-lo", "hans", {"heuristic": "lexical_overlap"}), ("hans", "hans", {})]
    data = load_mnli(_cfg(tokenizer_dir, label_order=ORDER), ood)
    overlap, whole = data.ood["hans-lo"], data.ood["hans"]
    rows = [row for row in HANS if row[3] == "lexical_overlap"]
    assert overlap.dataset.premises == [row[1] for row in rows]
    assert overlap.dataset.hypotheses == [row[2] for row in rows]
    assert overlap.dataset.labels == [0, 1, 1]
    assert len(whole.dataset) == len(HANS) and whole.dataset.labels == [0, 1, 0, 1, 1, 1]
    assert overlap.label_groups == ((1,), (2, 0))        # entailment; neutral and contradiction in ORDER
    assert load_mnli(_cfg(tokenizer_dir), ood).ood["hans"].label_groups == ((0,), (1, 2))
    x, _ = overlap.dataset[1]
    tokens = [CLS, *_ids(HANS[1][1]), SEP, *_ids(HANS[1][2]), SEP]
    assert x[0].tolist() == tokens + [PAD] * (16 - len(tokens))


def test_hans_label_filter_keeps_one_label_of_a_heuristic(data_dir, tokenizer_dir):
    """The study's target: the lexical-overlap pairs that are not entailed (label 1 in HANS's order)."""
    ood = [("lo-non", "hans", {"heuristic": "lexical_overlap", "label": "non-entailment"}),
           ("all-ent", "hans", {"label": "entailment"})]
    data = load_mnli(_cfg(tokenizer_dir, label_order=ORDER), ood)
    rows = [row for row in HANS if row[3] == "lexical_overlap" and row[0] == "non-entailment"]
    assert data.ood["lo-non"].dataset.premises == [row[1] for row in rows] and len(rows) == 2
    assert data.ood["lo-non"].dataset.labels == [1, 1]
    assert data.ood["all-ent"].dataset.labels == [0] * sum(row[0] == "entailment" for row in HANS)


def test_text_classifier_takes_pairs_like_the_hf_model(data_dir, tokenizer_dir):
    bert = _tiny_bert()
    inputs, _ = stack(load_mnli(_cfg(tokenizer_dir), []).train)
    ids, segments = inputs[:, 0], inputs[:, 1]
    with torch.no_grad():
        expected = bert(input_ids=ids, token_type_ids=segments, attention_mask=(ids != PAD).long()).logits
        got = TextClassifier(bert, PAD)(inputs)
        ids_only = TextClassifier(bert, PAD)(ids)
        expected_ids_only = bert(input_ids=ids, attention_mask=(ids != PAD).long()).logits
    assert torch.allclose(got, expected, atol=1e-5)
    assert torch.allclose(ids_only, expected_ids_only, atol=1e-5)      # (N, L): segment 0 everywhere
    assert not torch.allclose(got, ids_only, atol=1e-3)                # the segments reached the model


def test_text_classifier_pairs_go_through_vmap(data_dir, tokenizer_dir):
    from torch.func import functional_call, grad, vmap

    model = TextClassifier(_tiny_bert(), PAD)
    inputs, labels = stack(load_mnli(_cfg(tokenizer_dir), []).train)
    params = {name: p.detach() for name, p in model.named_parameters()}

    def loss(p: dict, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(functional_call(model, p, (x,)), y)

    batched = vmap(grad(loss), in_dims=(None, 0, 0))(params, inputs.view(2, 2, 2, 16), labels.view(2, 2))
    alone = grad(loss)(params, inputs[2:], labels[2:])
    assert all(torch.allclose(batched[name][1], alone[name], atol=1e-5) for name in params)


def test_scoring_on_hans_applies_mccoys_rule(data_dir, tokenizer_dir):
    bert = _tiny_bert()
    model = TextClassifier(bert, PAD)
    hans = load_mnli(_cfg(tokenizer_dir, label_order=ORDER), [("hans", "hans", {})]).ood["hans"]
    inputs, labels = stack(hans.dataset)
    with torch.no_grad():
        bert.classifier.bias.sub_(model(inputs).mean(dim=0))   # centred logits: no class wins every row
        logits = model(inputs)
    classes = logits.argmax(dim=1)
    assert len(set(classes.tolist())) >= 2, "the check needs predictions of more than one class"
    entailment = ORDER.index("entailment")
    predicted = (classes != entailment).long()        # neutral or contradiction: non-entailment
    probs = logits.softmax(dim=1)
    entailed_mass = probs[:, entailment]
    mass = torch.where(labels == 0, entailed_mass, 1 - entailed_mass)
    error, loss = score_outcomes(model, hans, batch_size=4).means()
    assert error == pytest.approx(float((predicted != labels).float().mean()))
    assert loss == pytest.approx(float(-mass.log().mean()), rel=1e-5)
    assert error != pytest.approx(float(((classes != 0).long() != labels).float().mean())), \
        "the data should tell the label order's groups from MNLI's own"


def test_missing_data_and_tokenizer_name_what_to_provide(tmp_path, monkeypatch, tokenizer_dir):
    monkeypatch.setenv("SHARPBENCH_DATA", str(tmp_path / "empty"))
    with pytest.raises(DataNotFoundError) as missing:
        load_mnli(_cfg(tokenizer_dir), [])
    message = str(missing.value)
    assert "multinli_1.0_train.jsonl" in message and str(tmp_path / "empty" / "multinli_1.0") in message
    assert "'nyu-mll/glue'" in message and "HF_DATASETS_OFFLINE" in message
    _jsonl(tmp_path / "multinli_1.0_train.jsonl", MNLI_TRAIN)      # MNLI in $SHARPBENCH_DATA itself, no HANS
    _jsonl(tmp_path / "multinli_1.0_dev_matched.jsonl", MNLI_DEV)
    monkeypatch.setenv("SHARPBENCH_DATA", str(tmp_path))
    with pytest.raises(DataNotFoundError, match="heuristics_evaluation_set.txt") as no_hans:
        load_mnli(_cfg(tokenizer_dir), [("hans", "hans", {"hub_id": "someone/hans-copy"})])
    assert "'someone/hans-copy'" in str(no_hans.value) and str(tmp_path / "hans") in str(no_hans.value)
    with pytest.raises(SharpbenchError, match="local folder") as no_tokenizer:
        load_mnli(_cfg(tokenizer_dir, tokenizer="sharpbench-tests/no-such-tokenizer"), [])
    assert "HF_HUB_OFFLINE" in str(no_tokenizer.value)
    with pytest.raises(SharpbenchError, match=r"dataset.pad_token_id: 3 \(the card says 0\)"):
        load_mnli(_cfg(tokenizer_dir, pad_token_id=0), [])


def test_hub_copies_are_read_by_their_field_names(tmp_path, monkeypatch, tokenizer_dir):
    import datasets

    monkeypatch.setenv("SHARPBENCH_DATA", str(tmp_path / "empty"))
    glue = {"premise": ["the actor ran", "the doctor ran", "the lawyer ran"],
            "hypothesis": ["the actor ran", "the actor saw", "the doctor paid"], "label": [2, -1, 0],
            "idx": [0, 1, 2]}
    hans = {"premise": [row[1] for row in HANS], "hypothesis": [row[2] for row in HANS],
            "label": [int(row[0] != "entailment") for row in HANS], "heuristic": [row[3] for row in HANS]}
    calls = []

    def load_dataset(path, name=None, split=None):
        calls.append((path, name, split))
        if path == "nyu-mll/glue":
            return datasets.DatasetDict({"train": datasets.Dataset.from_dict(glue),
                                         "validation_matched": datasets.Dataset.from_dict(glue)})
        return datasets.Dataset.from_dict(hans)

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    data = load_mnli(_cfg(tokenizer_dir, label_order=ORDER), [("lo", "hans", {"heuristic": "lexical_overlap"})])
    assert calls == [("nyu-mll/glue", "mnli", None), ("hans", None, "validation")]
    assert data.train.premises == ["the actor ran", "the lawyer ran"] and data.train.labels == [0, 1]
    assert data.ood["lo"].dataset.hypotheses == [row[2] for row in HANS if row[3] == "lexical_overlap"]
    assert data.ood["lo"].dataset.labels == [0, 1, 1]


def test_a_card_validates_without_the_tokenizer_and_fixes_the_architecture(tmp_path):
    import yaml

    card = {"name": "mnli-tiny", "description": "a card on MNLI",
            "dataset": {"name": "mnli", "tokenizer": "no-such/tokenizer", "max_length": 64},
            "ood_shifts": [{"name": "hans-lo", "kind": "hans", "params": {"heuristic": "lexical_overlap"}}],
            "architecture": {"kind": "transformers"},
            "checkpoints": [{"id": "a", "hparams": {"pretrained": "no-such/bert"}}],
            "sharpness_data": {"n": 32, "m": 16, "seed": 0}}
    path = tmp_path / "mnli-tiny.yaml"
    path.write_text(yaml.safe_dump(card), encoding="utf-8")
    spec = load_collection_spec(path)
    assert spec.dataset["label_order"] == ["entailment", "neutral", "contradiction"]
    assert spec.dataset["hub_id"] == "nyu-mll/glue" and spec.shifts[0].params == {"heuristic": "lexical_overlap",
                                                                                    "label": "all", "hub_id": "hans"}
    assert {k: spec.architecture[k] for k in ("num_classes", "vocab_size", "pad_token_id")} == \
        {"num_classes": 3, "vocab_size": 30522, "pad_token_id": 0}
    path.write_text(yaml.safe_dump({**card, "ood_shifts": [{"name": "h", "kind": "hans",
                                                            "params": {"heuristic": "overlap"}}]}))
    with pytest.raises(SharpbenchError, match="heuristic"):
        load_collection_spec(path)


def test_bert_mnli_hans_card_builds_and_evaluates_on_a_stand_in(data_dir, tokenizer_dir, tmp_path, capsys):
    """The registered card, cut to two checkpoints and a tiny BERT config: its models are local folders named as the
    card names them, read by transformers' from_pretrained; HANS is scored with McCoy's rule in the card's order."""
    import yaml
    from transformers import BertModel
    from safetensors.torch import load_file

    from sharpbench.cli.main import main

    card = yaml.safe_load((Path(__file__).resolve().parents[1] / "registry" / "collections" /
                           "bert-mnli-hans.yaml").read_text())
    tiny = _tiny_bert(0).config
    card["name"] = "tiny-bert-mnli-hans"
    card["checkpoints"] = card["checkpoints"][:2]
    for entry in card["checkpoints"]:
        entry["init"] = {"pretrained": "bert-tiny"}                       # the stand-in of bert-base-uncased
    card["architecture"]["config"] = {k: getattr(tiny, k) for k in (
        "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "max_position_embeddings")}
    card["dataset"].update({"tokenizer": str(tokenizer_dir), "max_length": 16, "vocab_size": len(V),
                            "pad_token_id": PAD})
    card["sharpness_data"] = {"n": 4, "m": 2, "seed": 0}
    (tmp_path / "cards" / "collections").mkdir(parents=True)
    (tmp_path / "cards" / "collections" / "tiny-bert-mnli-hans.yaml").write_text(yaml.safe_dump(card))
    models = {}
    for seed, entry in enumerate(card["checkpoints"]):
        models[entry["id"]] = _tiny_bert(seed)
        models[entry["id"]].save_pretrained(data_dir / entry["hparams"]["pretrained"])
    torch.manual_seed(7)
    BertModel(tiny).save_pretrained(data_dir / "bert-tiny")
    common = ["--include-path", str(tmp_path / "cards"), "--no-progress", "--data-dir", str(data_dir)]
    assert main(["collection", "build", card["name"], *common]) == 0
    root = Path(__import__("os").environ["SHARPBENCH_HOME"]) / "collections" / card["name"]
    manifest = json.loads((root / "manifest.json").read_text())
    assert [m["id"] for m in manifest["models"]] == ["seed-00", "seed-01"]

    from transformers import BertTokenizerFast

    tokenizer = BertTokenizerFast.from_pretrained(str(tokenizer_dir))

    def predictions(model, pairs):
        encoded = tokenizer([p for p, _ in pairs], [h for _, h in pairs], padding="max_length", max_length=16,
                            truncation=True, return_tensors="pt")
        with torch.no_grad():
            return model(**encoded).logits.argmax(dim=1)

    entail = ORDER.index("entailment")
    overlap = [(p, h, label) for label, p, h, heuristic in HANS if heuristic == "lexical_overlap"]
    dev = [(p, h, label) for p, h, label in MNLI_DEV if label != "-"]
    for entry in manifest["models"]:
        model = models[entry["id"]]
        saved = load_file(str(root / entry["file"]))
        assert all(torch.equal(saved[f"model.{k}"], v) for k, v in model.state_dict().items())
        predicted = predictions(model, [(p, h) for p, h, _ in overlap])
        wrong = sum((int(y) == entail) != (label == "entailment") for y, (_, _, label) in zip(predicted, overlap))
        assert entry["ood_error"]["hans-lexical-overlap"] == pytest.approx(wrong / len(overlap))
        predicted = predictions(model, [(p, h) for p, h, _ in dev])
        wrong = sum(ORDER[int(y)] != label for y, (_, _, label) in zip(predicted, dev))
        assert entry["test_error"] == pytest.approx(wrong / len(dev))
        initial = load_file(str(root / entry["init_file"]))                 # the encoder before fine-tuning
        base = BertModel.from_pretrained(str(data_dir / "bert-tiny")).state_dict()
        assert torch.equal(initial["model.bert.encoder.layer.0.output.dense.weight"],
                           base["encoder.layer.0.output.dense.weight"])

    capsys.readouterr()
    assert main(["evaluate", "--measure", "sharpness-worst-linf-adaptive", "--collection", card["name"],
                 "--set", "steps=2", *common]) == 0
    assert main(["evaluate", "--measure", "distance-from-init", "--collection", card["name"], *common]) == 0
