"""The heads: each task type's behaviour in its head class (scores, label names, reduction, model
rows, decoding, truncation, metrics), checked on hand-made logits; and no task-type switches left
in the code that trains, predicts and serves."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import ptuning
from ptuning.heads import (
    HEADS,
    ChoiceHead,
    ClassificationHead,
    RegressionHead,
    SpanHead,
    TokenHead,
    build_head,
    head_class,
)
from ptuning.tasks import TaskSpec

BINARY = TaskSpec("binary", "classification", ("neg", "pos"), "accuracy")
SCORE = TaskSpec("score", "regression", (), "pearson")
CHOICE = TaskSpec("choice", "multiple_choice", ("0", "1", "2"), "accuracy", num_choices=3)
NER = TaskSpec("ner", "token_classification", ("O", "B-PER", "I-PER", "B-LOC"), "f1")
QA = TaskSpec("qa", "question_answering", (), "f1")


def _one_hot(ids: list[int], width: int) -> np.ndarray:
    return np.eye(width, dtype=np.float32)[ids] * 5.0


def test_every_task_type_has_one_head_class():
    assert {
        "classification": ClassificationHead,
        "regression": RegressionHead,
        "multiple_choice": ChoiceHead,
        "token_classification": TokenHead,
        "question_answering": SpanHead,
    } == HEADS
    with pytest.raises(ValueError, match="no head for task type 'ranking'"):
        head_class("ranking")


def test_state_names_are_those_of_existing_checkpoints():
    for task_type, names in [
        ("classification", {"classifier.weight", "classifier.bias"}),
        ("regression", {"classifier.weight", "classifier.bias"}),
        ("multiple_choice", {"classifier.weight", "classifier.bias"}),
        ("token_classification", {"classifier.weight", "classifier.bias"}),
        ("question_answering", {"qa_outputs.weight", "qa_outputs.bias"}),
    ]:
        head = build_head(task_type, 8, 3, pooling="mean", dropout=0.0)
        assert set(head.state_dict()) == names, task_type
        assert isinstance(head, HEADS[task_type])


def test_label_names_and_reduction():
    assert SpanHead.label_names == ("start_positions", "end_positions")
    assert {cls.label_names for cls in (ClassificationHead, RegressionHead, ChoiceHead, TokenHead)} == {
        ("labels",)
    }
    logits = torch.tensor([[0.1, 2.0, -1.0], [3.0, 0.0, 0.0]])
    for cls in (ClassificationHead, ChoiceHead, TokenHead):
        assert cls.reduce(logits, None).tolist() == [1, 0]
    assert RegressionHead.reduce(logits, None) is logits  # correlations need the values
    pair = (logits, logits)
    assert SpanHead.reduce(pair, None) is pair  # answer spans need the start and end logits


def test_classification_decode_gives_the_label_and_its_probabilities():
    logits = [np.array([0.0, math.log(3.0)]), np.array([2.0, 0.0])]
    out = ClassificationHead.decode(BINARY, [{}, {}], [{}, {}], logits)
    assert [o["label"] for o in out] == ["pos", "neg"]
    assert out[0]["probabilities"] == {"neg": 0.25, "pos": 0.75}


def test_regression_decode_and_forward():
    out = RegressionHead.decode(SCORE, [{}, {}], [{}, {}], [np.float32(2.5), np.array([-1.0])])
    assert out == [{"score": 2.5}, {"score": -1.0}]
    head = RegressionHead(4, 1, pooling="cls", dropout=0.0)
    result = head(torch.randn(3, 5, 4), torch.ones(3, 5), labels=torch.tensor([1.0, 2.0, 3.0]))
    assert result.logits.shape == (3,) and result.loss is not None


def test_choice_head_scores_one_row_per_choice():
    head = ChoiceHead(4, 1, pooling="mean", dropout=0.0)
    ids = torch.arange(2 * 3 * 5).view(2, 3, 5)  # (batch, choices, length)
    assert head.flatten(ids).shape == (6, 5) and head.flatten(None) is None
    hidden, mask = torch.randn(6, 5, 4), torch.ones(6, 5)
    out = head(hidden, mask, labels=torch.tensor([0, 2]), batch=2)
    assert out.logits.shape == (2, 3) and out.loss is not None
    rows = head.per_row(hidden, mask, [5] * 6)  # what the serving engine reads, one score per row
    merged = [head.merge_rows(rows[:3]), head.merge_rows(rows[3:])]
    np.testing.assert_allclose(np.stack(merged), out.logits.detach().numpy(), rtol=1e-6)
    feature = {
        "input_ids": [[1, 2], [1, 3, 4], [1, 5]],
        "attention_mask": [[1, 1], [1, 1, 1], [1, 1]],
        "x": 0,
    }
    assert ChoiceHead.num_rows(feature) == 3
    assert ChoiceHead.rows_of(feature)[1] == {"input_ids": [1, 3, 4], "attention_mask": [1, 1, 1]}
    assert ClassificationHead.rows_of(feature) == [{k: feature[k] for k in ("input_ids", "attention_mask")}]
    out = ChoiceHead.decode(CHOICE, [{}], [{}], [np.array([1.0, 1.0, 1.0 + math.log(2.0)])])
    assert out == [{"label": 2, "probabilities": [0.25, 0.25, 0.5]}]


def test_token_decode_gives_word_tags_and_entity_spans():
    example = {"tokens": ["Mary", "Smith", "visited", "London"]}
    feature = {"word_ids": [None, 0, 1, 1, 2, 3, None]}
    # per token: O, B-PER, I-PER, (second sub-word of Smith: ignored), O, B-LOC, O
    logits = _one_hot([0, 1, 2, 3, 0, 3, 0], 4)
    (out,) = TokenHead.decode(NER, [example], [feature], [logits])
    assert out["tags"] == ["B-PER", "I-PER", "O", "B-LOC"]
    assert out["entities"] == [
        {"type": "PER", "start": 0, "end": 2, "text": "Mary Smith"},
        {"type": "LOC", "start": 3, "end": 4, "text": "London"},
    ]
    # evaluation reads argmax ids; words cut off by truncation count as "O"
    short = {"word_ids": [None, 0, 1, None]}
    gold = {"tokens": example["tokens"], "tags": ["B-PER", "I-PER", "O", "B-LOC"]}
    scores = TokenHead.evaluate(NER, [gold], [short], np.array([[0, 1, 2, 0]]), None)
    assert scores["precision"] == 1.0 and scores["recall"] == 0.5


def test_token_head_rows_keep_their_real_positions():
    head = TokenHead(4, 3, dropout=0.0)
    rows = head.per_row(torch.randn(2, 6, 4), torch.ones(2, 6), [6, 3])
    assert [r.shape for r in rows] == [(6, 3), (3, 3)]


def test_span_head_masks_padding_and_decodes_the_best_span():
    head = SpanHead(4)
    mask = torch.tensor([[1, 1, 1, 0]])
    out = head(torch.randn(1, 4, 4), mask)
    assert out.start_logits[0, 3] == torch.finfo(out.start_logits.dtype).min
    rows = head.per_row(torch.randn(1, 4, 4), mask, [3])
    assert [part.shape for part in rows[0]] == [(3,), (3,)]
    example = {"id": "0", "question": "q", "context": "Paris is big."}
    feature = {"example_id": "0", "offset_mapping": [None, None, (0, 5), (6, 8), (9, 12), None]}
    start = [np.array([0.0, 0, 1.0, 0, 4.0, 0])]
    end = [np.array([0.0, 0, 0, 0, 3.0, 0])]
    values = head.join(list(zip(start, end, strict=True)))  # per feature -> (starts, ends)
    assert values == (start, end)
    (answer,) = SpanHead.decode(QA, [example], [feature], values)
    assert answer == {"answer": "big", "start": 9, "end": 12}
    gold = {**example, "answers": {"text": ["big"]}}
    assert SpanHead.evaluate(QA, [gold], [feature], values, None) == {"exact_match": 1.0, "f1": 1.0}


def test_truncation_checks_follow_the_task_type():
    def tokenizer(*texts, is_split_into_words=False, truncation=True, max_length=None):
        words = [w for t in texts for w in (t if is_split_into_words else t.split())]
        return {"input_ids": words[:max_length]}

    assert ClassificationHead.truncated({"text": "a b", "text_pair": "c d"}, tokenizer, 3)
    assert not ClassificationHead.truncated({"text": "a b", "text_pair": "c d"}, tokenizer, 4)
    assert ChoiceHead.truncated({"context": "a b", "choices": ["c", "d e"]}, tokenizer, 3)
    assert not TokenHead.truncated({"tokens": ["a", "b"]}, tokenizer, 2)
    assert not SpanHead.truncated({"question": "q " * 50, "context": "c " * 500}, tokenizer, 8)


TASK_TYPES = set(HEADS)
PACKAGE = Path(ptuning.__file__).resolve().parent


def _task_type_literals(path: Path) -> int:
    tree = ast.parse(path.read_text())
    return sum(isinstance(node, ast.Constant) and node.value in TASK_TYPES for node in ast.walk(tree))


def test_training_inference_and_serving_have_no_task_type_switches():
    files = ["inference.py", "decode.py", "model.py", "training/run.py", "training/multitask.py"]
    files += [str(p.relative_to(PACKAGE)) for p in (PACKAGE / "serving").glob("*.py")]
    counts = {name: _task_type_literals(PACKAGE / name) for name in files}
    assert counts == dict.fromkeys(files, 0)
    assert _task_type_literals(PACKAGE / "heads.py") == len(TASK_TYPES)  # each head names its type once


def test_a_prefix_mask_per_example_reaches_every_choice():
    from ptuning.core.config import PromptConfig
    from ptuning.model import PromptModel
    from ptuning.testing import tiny_backbone

    torch.manual_seed(0)
    model = PromptModel(tiny_backbone("bert"), CHOICE, PromptConfig(prefix_len=2, prompt_dropout=0.0)).eval()
    ids = torch.randint(5, 900, (2, 3, 6))  # 2 examples, 3 choices each
    mask = torch.ones_like(ids)
    hidden = torch.tensor([[False, False], [True, True]])  # example 0 sees no prefix
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask, prefix_mask=hidden).logits
        per_row = hidden.repeat_interleave(3, dim=0)
        expected = model.head(
            model.encode(ids.flatten(0, 1), mask.flatten(0, 1), None, per_row), mask.flatten(0, 1), batch=2
        ).logits
    assert logits.shape == (2, 3)
    torch.testing.assert_close(logits, expected)
