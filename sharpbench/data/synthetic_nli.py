"""A synthetic entailment task whose training data reward the lexical-overlap heuristic, and a HANS-like
shift that breaks it (McCoy et al. 2019).

Premises are "the N1 V the N2 [near the N3]". An entailed hypothesis drops the modifier ("the N1 V the
N2"): every hypothesis word is in the premise. A non-entailed one mostly swaps in a word that is not in the
premise, so "all words overlap" predicts the label; only a ``swap_fraction`` of the non-entailed examples
are subject/object swaps ("the N2 V the N1"), which full overlap gets wrong. The HANS-like test set
(shift ``nli_overlap_swap``) turns every low-overlap hypothesis into the swap: the labels stay, the
heuristic fails. Tokens come from a word-level tokenizer trained on the training texts with the
``tokenizers`` library; inputs are "[CLS] premise [SEP] hypothesis [SEP]" ids padded with [PAD] = 0.
"""

from __future__ import annotations

from typing import Any

import torch

NOUNS = ("doctor", "lawyer", "artist", "student", "actor", "banker", "author", "judge", "senator", "manager",
         "tourist", "athlete", "secretary", "president", "scientist", "professor", "dancer", "singer", "chef",
         "pilot", "farmer", "nurse", "baker", "teacher")
VERBS = ("saw", "helped", "called", "admired", "thanked", "avoided", "believed", "supported", "recognized",
         "introduced", "advised", "paid", "contacted", "encouraged", "mentioned", "visited")
SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")
PAD, CLS, SEP = 0, 2, 3
ENTAILED, NOT_ENTAILED = 0, 1
VOCAB_SIZE = len(SPECIALS) + 2 + len(NOUNS) + len(VERBS)     # + "the", "near"


def _examples(count: int, swap_fraction: float, generator: torch.Generator) -> tuple[list[tuple[str, str]], list[int]]:
    pairs, labels = [], []
    for _ in range(count):
        n1, n2, n3, n4 = (NOUNS[int(i)] for i in torch.randperm(len(NOUNS), generator=generator)[:4])
        verb = VERBS[int(torch.randint(len(VERBS), (1,), generator=generator))]
        premise = f"the {n1} {verb} the {n2}" + (f" near the {n3}" if torch.rand(1, generator=generator) < 0.5 else "")
        draw = float(torch.rand(1, generator=generator))
        if draw < 0.5:
            hypothesis, label = f"the {n1} {verb} the {n2}", ENTAILED
        elif draw < 0.5 + 0.5 * swap_fraction:
            hypothesis, label = f"the {n2} {verb} the {n1}", NOT_ENTAILED
        elif draw < 0.75 + 0.25 * swap_fraction:
            hypothesis, label = f"the {n4} {verb} the {n2}", NOT_ENTAILED
        else:
            hypothesis, label = f"the {n1} {verb} the {n4}", NOT_ENTAILED
        pairs.append((premise, hypothesis))
        labels.append(label)
    return pairs, labels


def _tokenizer(pairs: list[tuple[str, str]], max_length: int):
    """A word-level tokenizer trained on the training texts; pairs become [CLS] a [SEP] b [SEP], padded."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.train_from_iterator((text for pair in pairs for text in pair),
                                  trainers.WordLevelTrainer(special_tokens=list(SPECIALS), show_progress=False))
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", CLS), ("[SEP]", SEP)])
    tokenizer.enable_padding(pad_id=PAD, pad_token="[PAD]", length=max_length)
    tokenizer.enable_truncation(max_length)
    return tokenizer


def load_synthetic_nli(cfg: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_train, y_train, x_test, y_test): int64 token ids (N, max_length), labels 0 = entailed, 1 = not."""
    generator = torch.Generator().manual_seed(int(cfg["seed"]))
    train, y_train = _examples(int(cfg["num_train"]), float(cfg["swap_fraction"]), generator)
    test, y_test = _examples(int(cfg["num_test"]), float(cfg["swap_fraction"]), generator)
    tokenizer = _tokenizer(train, int(cfg["max_length"]))
    assert tokenizer.get_vocab_size() <= VOCAB_SIZE, "the generator uses a word outside NOUNS and VERBS"

    def ids(pairs: list[tuple[str, str]]) -> torch.Tensor:
        return torch.tensor([e.ids for e in tokenizer.encode_batch(pairs)], dtype=torch.int64)

    return ids(train), torch.tensor(y_train), ids(test), torch.tensor(y_test)


def overlap_swap(x: torch.Tensor, params: dict[str, Any], image_shape: tuple[int, ...]) -> torch.Tensor:
    """The HANS-like shift: each hypothesis with a word outside its premise becomes the premise's subject/object
    swap ("the N2 V the N1"), which keeps the label (not entailed) and has full lexical overlap."""
    out = x.clone()
    for row in out:
        seps = (row == SEP).nonzero().flatten().tolist()
        premise, hypothesis = row[1:seps[0]], row[seps[0] + 1:seps[1]]
        if bool(torch.isin(hypothesis, premise).all()):
            continue
        swapped = premise[[0, 4, 2, 3, 1]]          # the N2 V the N1 (premise: the N1 V the N2 ...)
        row[seps[0] + 1:] = PAD
        row[seps[0] + 1:seps[0] + 6] = swapped
        row[seps[0] + 6] = SEP
    return out
