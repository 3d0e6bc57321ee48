"""Evaluation batches run longest first (`LengthSortedSampler`), and what reaches the metrics and
`predict` is back in dataset order: the same predictions, labels and scores as a pass in dataset
order, for every kind of head, with fewer padded positions."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest
import torch

from ptuning.data.features import make_collator
from ptuning.model import PromptModel
from ptuning.training.evaluation import EvalSet, evaluation_trainer
from ptuning.training.sampling import LengthSortedSampler, token_count
from ptuning.training.trainer import PromptTrainer

WORDS = [
    "the",
    "a",
    "film",
    "was",
    "very",
    "good",
    "bad",
    "long",
    "short",
    "story",
    "actor",
    "plot",
    "city",
    "river",
    "paris",
    "london",
    "mary",
]


def _text(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.choice([1, 2, 3, 12, 25])))


def _examples(task_type: str, spec, n: int = 23) -> list[dict]:
    rng = random.Random(0)
    out = []
    for i in range(n):
        if task_type == "classification":
            out.append({"text": _text(rng), "label": rng.choice(spec.labels)})
        elif task_type == "regression":
            out.append({"text": _text(rng), "text_b": _text(rng), "label": rng.random() * 5})
        elif task_type == "token_classification":
            tokens = _text(rng).split()
            out.append({"tokens": tokens, "tags": [rng.choice(spec.labels) for _ in tokens]})
        elif task_type == "multiple_choice":
            out.append(
                {"context": _text(rng), "choices": [_text(rng), _text(rng)], "label": rng.choice(spec.labels)}
            )
        else:  # question answering
            context = _text(rng) + " paris is big"
            out.append(
                {
                    "id": str(i),
                    "question": _text(rng),
                    "context": context,
                    "answers": {"text": ["big"], "answer_start": [context.index("big")]},
                }
            )
    return out


class _DatasetOrder(PromptTrainer):
    """The reference: Trainer's sequential evaluation order."""

    def _get_eval_sampler(self, eval_dataset):
        return torch.utils.data.SequentialSampler(eval_dataset)


class _CountingCollator:
    def __init__(self, collate):
        self.collate, self.positions = collate, 0

    def __call__(self, features):
        batch = self.collate(features)
        self.positions += batch["input_ids"].numel()
        return batch


def _evaluate(trainer_class, model, eval_set, tmp_path):
    collator = _CountingCollator(make_collator(model.spec, model.tokenizer))
    trainer = evaluation_trainer(
        model, eval_set, tmp_path, batch_size=4, collator=collator, trainer_class=trainer_class
    )
    output = trainer.predict(eval_set.features)
    return output, collator.positions


def test_length_sorted_sampler_puts_the_longest_first_and_keeps_ties_in_order():
    dataset = [{"input_ids": [1] * n} for n in (3, 7, 3, 1, 7)]
    dataset.append({"input_ids": [[1, 1, 1, 1], [1, 1]]})  # a multiple-choice row: 6 ids in two choices
    sampler = LengthSortedSampler(dataset)
    assert list(sampler) == [1, 4, 5, 0, 2, 3]
    assert len(sampler) == 6


@pytest.mark.parametrize("task", ["sentiment", "similarity", "ner", "copa", "squad"])
def test_sorted_evaluation_answers_as_dataset_order_does_with_less_padding(task, demo_checkpoints, tmp_path):
    model = PromptModel.from_pretrained(demo_checkpoints[task]).eval()
    metric = {"regression": "pearson", "question_answering": "f1"}.get(model.spec.task_type, "accuracy")
    model.spec = dataclasses.replace(model.spec, metric=metric)  # the demo specs leave it unset
    eval_set = EvalSet(model.spec, _examples(model.spec.task_type, model.spec), model.tokenizer, 64)
    lengths = [token_count(f["input_ids"]) for f in eval_set.features]
    assert len(set(lengths)) > 3  # lengths vary, so the two orders batch differently
    sorted_out, sorted_positions = _evaluate(PromptTrainer, model, eval_set, tmp_path / "a")
    plain_out, plain_positions = _evaluate(_DatasetOrder, model, eval_set, tmp_path / "b")
    assert sorted_positions < plain_positions

    def rows(value):
        return value if isinstance(value, (tuple, list)) else (value,)

    for ours, theirs in zip(rows(sorted_out.predictions), rows(plain_out.predictions), strict=True):
        ours, theirs = np.asarray(ours), np.asarray(theirs)
        if task in ("ner", "squad"):  # rows padded to their batch's longest: compare the real tokens
            for i, feature in enumerate(eval_set.features):
                n = len(feature["input_ids"])
                np.testing.assert_allclose(ours[i, :n], theirs[i, :n], rtol=1e-4, atol=1e-4)
        else:
            np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)
    scores = {
        k: v
        for k, v in sorted_out.metrics.items()
        if not k.endswith(("runtime", "per_second", "loss", "_time"))
    }
    reference = {k: plain_out.metrics[k] for k in scores}
    assert scores and scores == pytest.approx(reference, rel=1e-6, abs=1e-9)
    if task != "ner":  # NER's loss is each batch's mean over its tokens: it depends on the batching
        assert sorted_out.metrics["test_loss"] == pytest.approx(plain_out.metrics["test_loss"], rel=1e-4)
