"""Prompt tuning puts its P vectors at positions 0..P-1 and the text after them, so the text has
max_position_embeddings - P positions left: train, eval, predict and serve cut it there (a longer
sequence used to crash the position embeddings: 528 vs 512 on MiniLM with P = 16)."""

from __future__ import annotations

import json

import pytest

from ptuning.cli import main
from ptuning.core.config import PromptConfig
from ptuning.model import PromptModel
from ptuning.tasks import TaskSpec
from ptuning.testing import tiny_backbone

SPEC = TaskSpec("sentiment", "classification", labels=("negative", "positive"))
LONG = "the plot was long and the film went on " * 40  # far past the tiny backbone's 128 positions


@pytest.mark.parametrize(
    ("model_type", "method", "room"),
    [
        ("bert", "prompt-tuning", 128 - 16),
        ("bert", "p-tuning-v2", 128),
        ("roberta", "prompt-tuning", 128 - 2 - 16),  # RoBERTa's positions start after the padding index
        ("roberta", "fine-tune", 128 - 2),
    ],
)
def test_text_room_is_the_positions_left_after_the_input_prompt(model_type, method, room):
    model = PromptModel(tiny_backbone(model_type), SPEC, PromptConfig(method=method, prefix_len=16))
    assert model.max_text_length == room


def test_prompt_tuning_reads_long_texts_in_train_eval_predict_and_serve(tmp_path, tiny_bert_dir, capsys):
    rows = [{"text": f"{LONG} {i}", "label": ("negative", "positive")[i % 2]} for i in range(8)]
    data = tmp_path / "long.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "long-prompt-tuning"
    common = ["--max-seq-length", "128"]
    train = [
        "train", "--method", "prompt-tuning", "--prefix-len", "16", "--backbone", str(tiny_bert_dir),
        "--train-file", str(data), "--validation-file", str(data), "--output-dir", str(out),
        "--max-steps", "1", "--batch-size", "4", "--quiet", *common,
    ]  # fmt: skip
    assert main(train) == 0
    assert "text cut to 112" in capsys.readouterr().out
    assert main(["eval", "--checkpoint", str(out), "--validation-file", str(data), *common]) == 0
    assert main(["predict", "--checkpoint", str(out), LONG, *common]) == 0
    answer = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert answer["label"] in SPEC.labels and answer["truncated"] is True

    from ptuning.serving import MultiTaskPredictor

    server = MultiTaskPredictor.from_checkpoints({"long": out}, max_batch_size=4)
    assert server.task("long").predictor.max_length == 128 - 16
    (served,) = server.predict("long", [LONG])
    assert served["label"] in SPEC.labels and served["truncated"] is True
