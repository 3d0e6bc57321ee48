"""Every method learns a small synthetic task that needs context, for every head type (real MiniLM).

Each task's answer depends on how words relate, not on any one word: whether "dog" occurs anywhere
(read at the first token), which choice shares the context's colour, which word follows "mr", and
what follows "dog" in a passage.
"""

from __future__ import annotations

import random

import pytest
import torch

from ptuning.core.config import METHODS, PromptConfig, default_learning_rate
from ptuning.data import encode, make_collator
from ptuning.model import PromptModel
from ptuning.tasks import TaskSpec

pytestmark = pytest.mark.slow

WORDS = [
    "apple",
    "river",
    "stone",
    "cloud",
    "table",
    "music",
    "garden",
    "window",
    "paper",
    "light",
    "chair",
    "happy",
    "quick",
    "silver",
    "ocean",
]
COLOURS = ["red", "blue", "green", "yellow"]
# The methods' default learning rates, except fine-tuning: 1e-4 instead of 3e-5 for so few steps.
LR = {method: default_learning_rate(method) for method in METHODS} | {"fine-tune": 1e-4}
STEPS = {"question_answering": 80}  # a span needs more steps than a label; the others take 45
# Fine-tuning moves every weight: 25 steps reach accuracy 1.0 on each of these tasks (loss at 25 steps
# 0.002-0.08), and its steps cost the most.
FINE_TUNE_STEPS = 25


def _sentence(rng: random.Random, n: int = 7) -> list[str]:
    return [rng.choice(WORDS) for _ in range(n)]


def _classification(rng):
    words, dog = _sentence(rng), rng.random() < 0.5
    if dog:
        words[rng.randrange(len(words))] = "dog"
    return {"text": " ".join(words), "text_pair": None, "label": "yes" if dog else "no"}


def _regression(rng):
    example = _classification(rng)
    return {**example, "label": 1.0 if example["label"] == "yes" else 0.0}


def _choice(rng):
    colour, other = rng.sample(COLOURS, 2)
    context = " ".join(_sentence(rng, 4) + [colour] + _sentence(rng, 2))
    right, wrong = f"the {colour} {rng.choice(WORDS)}", f"the {other} {rng.choice(WORDS)}"
    label = rng.randrange(2)
    return {"context": context, "choices": [right, wrong] if label == 0 else [wrong, right], "label": label}


def _tokens(rng):
    words, tags = _sentence(rng), ["O"] * 7
    i = rng.randrange(6)
    words[i] = "mr"
    tags[i + 1] = "B-PER"
    return {"tokens": words, "tags": tags}


def _qa(rng):
    words = _sentence(rng, 9)
    i = rng.randrange(8)
    words[i] = "dog"
    context = " ".join(words)
    start = len(" ".join(words[: i + 1])) + 1
    return {"id": str(rng.random()), "question": "what comes after dog?", "context": context,
            "answers": {"text": [words[i + 1]], "answer_start": [start]}}  # fmt: skip


TASKS = {
    "classification": (TaskSpec("dog", "classification", labels=("no", "yes")), _classification),
    "regression": (TaskSpec("dog-score", "regression"), _regression),
    "multiple_choice": (TaskSpec("colour", "multiple_choice", labels=("0", "1"), num_choices=2), _choice),
    "token_classification": (TaskSpec("mr", "token_classification", labels=("O", "B-PER")), _tokens),
    "question_answering": (TaskSpec("after-dog", "question_answering"), _qa),
}


def _accuracy(spec, model, batch) -> float:
    with torch.no_grad():
        out = model(**batch)
    if spec.task_type == "question_answering":
        hit = (out.start_logits.argmax(-1) == batch["start_positions"]) & (
            out.end_logits.argmax(-1) == batch["end_positions"]
        )
        return hit.float().mean().item()
    if spec.task_type == "regression":
        return ((out.logits > 0.5).float() == batch["labels"]).float().mean().item()
    if spec.task_type == "token_classification":
        keep = batch["labels"] != -100
        return (out.logits.argmax(-1)[keep] == batch["labels"][keep]).float().mean().item()
    return (out.logits.argmax(-1) == batch["labels"]).float().mean().item()


_TRAINED: dict[tuple[str, str], tuple[list[float], float]] = {}


def _train(method: str, task_type: str, minilm) -> tuple[list[float], float]:
    """Train `method` on a fresh synthetic task; the per-step losses and the held-out accuracy.

    Seeded, so the same pair trains to the same result: a second test asking for it reads the
    first one's (p-tuning-v2 on the choice task serves two tests)."""
    if (method, task_type) not in _TRAINED:
        _TRAINED[method, task_type] = _train_once(method, task_type, minilm)
    return _TRAINED[method, task_type]


def _train_once(method: str, task_type: str, minilm) -> tuple[list[float], float]:
    backbone, tokenizer = minilm
    spec, make = TASKS[task_type]
    rng = random.Random(0)
    steps = FINE_TUNE_STEPS if method == "fine-tune" else STEPS.get(task_type, 45)
    train = encode(spec, [make(rng) for _ in range(16 * steps)], tokenizer, 48)
    test = encode(spec, [make(rng) for _ in range(200)], tokenizer, 48)
    collate = make_collator(spec, tokenizer)
    torch.manual_seed(0)
    original = {k: v.clone() for k, v in backbone.state_dict().items()} if method == "fine-tune" else None
    model = PromptModel(backbone, spec, PromptConfig(method=method, prefix_len=8), backbone_name="minilm")
    try:
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LR[method])
        model.train()
        losses = []
        for step in range(steps):
            loss = model(**collate(train[16 * step : 16 * (step + 1)])).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        model.eval()
        accuracy = _accuracy(spec, model, collate(test))
    finally:  # the backbone is shared by the whole session: leave it as it was
        backbone.requires_grad_(False)
        if original is not None:
            backbone.load_state_dict(original)
    return losses, accuracy


# Input prompts alone (prompt tuning v1) do not learn the colour-matching choice task on this
# 6-layer model within the budget (measured: accuracy 0.50-0.70 over learning rates 1e-2..1e-1,
# 45-80 steps, P 8-16): the paper's finding that v1 lags on small models. That pair is checked
# by `test_deep_prompts_beat_input_prompts_on_choice` instead.
LEARNS = [
    (method, task_type)
    for method in METHODS
    for task_type in sorted(TASKS)
    if (method, task_type) != ("prompt-tuning", "multiple_choice")
]


@pytest.mark.parametrize(("method", "task_type"), LEARNS)
def test_method_learns_task_needing_context(method, task_type, minilm):
    losses, accuracy = _train(method, task_type, minilm)
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.5 * first, (first, last)
    assert accuracy > 0.9, accuracy


def test_deep_prompts_beat_input_prompts_on_choice(minilm):
    _, deep = _train("p-tuning-v2", "multiple_choice", minilm)
    _, shallow = _train("prompt-tuning", "multiple_choice", minilm)
    assert deep > 0.9, deep
    assert deep > shallow + 0.15, (deep, shallow)
