"""Frozen backbone, gradients, reparameterization folding and prompt-only checkpoints."""

from __future__ import annotations

import json

import pytest
import torch

from ptuning.core.config import METHODS, PromptConfig
from ptuning.errors import CheckpointError
from ptuning.model import PromptModel
from ptuning.tasks import TaskSpec
from ptuning.testing import tiny_backbone

SPEC = TaskSpec("toy", "classification", labels=("no", "yes"))


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 900, (4, 8), generator=g)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.tensor([0, 1, 1, 0])}


@pytest.mark.parametrize("method", [m for m in METHODS if m != "fine-tune"])
def test_gradients_reach_only_prompt_and_head(method):
    model = PromptModel(tiny_backbone("bert"), SPEC, PromptConfig(method=method, prefix_len=4))
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=0.1)
    model.train()
    model(**_inputs()).loss.backward()
    own = {id(p) for m in model.prompt_modules().values() for p in m.parameters()}
    for name, param in model.named_parameters():
        if id(param) in own:
            assert param.grad is not None and param.grad.abs().sum() > 0, name
        else:
            assert not param.requires_grad and param.grad is None, name
    optimizer.step()
    after = model.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_fine_tune_trains_everything():
    model = PromptModel(tiny_backbone("bert"), SPEC, PromptConfig(method="fine-tune"))
    count = model.count_parameters()
    assert count.trainable == count.total and model.prefix_encoder is None and model.input_prompt is None


def test_folded_reparameterization_gives_same_logits():
    model = PromptModel(
        tiny_backbone("roberta"), SPEC, PromptConfig(method="prefix-tuning", prefix_len=4)
    ).eval()
    inputs = _inputs(1)
    with torch.no_grad():
        before = model(**inputs).logits
        model.fold_prefix()
        after = model(**inputs).logits
    assert not model.prefix_encoder.projection and not hasattr(model.prefix_encoder, "mlp")
    assert torch.allclose(before, after, atol=1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_save_load_round_trip(method, tmp_path):
    backbone = tiny_backbone("distilbert")
    model = PromptModel(
        backbone, SPEC, PromptConfig(method=method, prefix_len=4, prefix_projection=True)
    ).eval()
    with torch.no_grad():  # make the head non-trivial
        for p in model.head.parameters():
            p.add_(0.5)
        expected = model(**_inputs(2)).logits
    sizes = model.save_pretrained(tmp_path / "ckpt")
    files = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    assert files == ["prompt.safetensors", "ptuning_config.json"]
    config = json.loads((tmp_path / "ckpt" / "ptuning_config.json").read_text())
    assert config["prefix_folded"] is (method in ("p-tuning-v2", "prefix-tuning"))
    if method != "fine-tune":
        assert sizes["checkpoint_bytes"] < sizes["backbone_bytes"] / 5
    # a fresh copy of the same backbone (same seed) is accepted
    loaded = PromptModel.from_pretrained(tmp_path / "ckpt", backbone=tiny_backbone("distilbert"))
    assert not loaded.training  # loaded ready for inference (dropout off)
    with torch.no_grad():
        got = loaded(**_inputs(2)).logits
    assert torch.allclose(expected, got, atol=1e-6)


def test_mismatched_backbone_is_refused(tmp_path):
    model = PromptModel(tiny_backbone("bert", seed=0), SPEC, PromptConfig(prefix_len=2))
    model.save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="trained on backbone"):
        PromptModel.from_pretrained(tmp_path, backbone=tiny_backbone("bert", seed=1))


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="not a ptuning checkpoint"):
        PromptModel.from_pretrained(tmp_path)


def test_trainable_share_on_real_minilm(minilm):
    backbone, _ = minilm
    model = PromptModel(backbone, SPEC, PromptConfig(prefix_len=16), backbone_name="minilm")
    count = model.count_parameters()
    # 16 tokens x 6 layers x 2 x 384 + head (384*2+2)
    assert count.trainable == 16 * 6 * 2 * 384 + 384 * 2 + 2
    print(f"\nP-Tuning v2 on MiniLM, P=16: {count.describe()}")
    assert 0.001 <= count.share <= 0.03
    backbone.requires_grad_(False)


def test_prompt_tuning_input_past_the_positions_is_a_clear_error_before_the_backbone_runs():
    # the tiny backbone has 128 positions; P=16 input vectors leave 112 to the text
    model = PromptModel(tiny_backbone("bert"), SPEC, PromptConfig(method="prompt-tuning", prefix_len=16))
    ran = []
    model.backbone.register_forward_pre_hook(lambda *_: ran.append(True))
    ids = torch.randint(5, 900, (1, 120))
    with pytest.raises(
        ValueError,
        match=r"input of 120 tokens is longer than this prompt-tuning model reads: 112 tokens \(the backbone's 128 positions less the 16 prompt vectors\)",
    ):
        model(input_ids=ids, attention_mask=torch.ones_like(ids))
    assert not ran
    fits = torch.randint(5, 900, (1, 112))
    assert model(input_ids=fits, attention_mask=torch.ones_like(fits)).logits.shape == (1, 2)
    deep = PromptModel(
        tiny_backbone("bert"), SPEC, PromptConfig(prefix_len=16)
    )  # deep prompts take no positions
    with pytest.raises(ValueError, match="input of 129 tokens is longer than the backbone's 128 positions"):
        deep(input_ids=torch.randint(5, 900, (1, 129)))


def test_model_carries_what_hugging_face_code_reads():
    model = PromptModel(tiny_backbone("bert"), SPEC, PromptConfig(prefix_len=4))
    assert model.config.id2label == {0: "no", 1: "yes"} and model.config.label2id == {"no": 0, "yes": 1}
    assert model.config.problem_type == "single_label_classification" and model.config.num_labels == 2
    assert model.config.hidden_size == model.backbone.config.hidden_size
    assert model.device == torch.device("cpu") and model.dtype == torch.float32
    assert not model.can_generate() and model.tokenizer is None
    # the backbone's own config is not the task's (its fingerprint is what checkpoints record)
    assert model.backbone.config.id2label != model.config.id2label
    regression = PromptModel(tiny_backbone("bert"), TaskSpec("r", "regression"), PromptConfig(prefix_len=4))
    assert regression.config.num_labels == 1 and regression.config.problem_type == "regression"


def test_from_pretrained_returns_the_model_with_its_tokenizer(tiny_bert_dir, tmp_path):
    from transformers import AutoTokenizer

    model, tokenizer = PromptModel.from_backbone(str(tiny_bert_dir), SPEC, PromptConfig(prefix_len=4))
    model.save_pretrained(tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "tokenizer_config.json").is_file()
    loaded = PromptModel.from_pretrained(tmp_path / "ckpt")
    assert isinstance(loaded, PromptModel) and loaded.tokenizer is not None
    saved = AutoTokenizer.from_pretrained(tmp_path / "ckpt")
    assert saved("a gripping film")["input_ids"] == tokenizer("a gripping film")["input_ids"]
    # a loaded backbone passed in: the tokenizer still comes from the checkpoint folder
    again = PromptModel.from_pretrained(tmp_path / "ckpt", backbone=model.backbone)
    assert again.tokenizer("a gripping film")["input_ids"] == tokenizer("a gripping film")["input_ids"]
    # training checkpoints (not folded) carry no tokenizer
    model.save_pretrained(tmp_path / "train", fold=False)
    assert not (tmp_path / "train" / "tokenizer_config.json").exists()


def test_predictor_is_public_and_defaults_to_the_models_tokenizer(tiny_bert_dir, tmp_path):
    import ptuning

    model, _ = PromptModel.from_backbone(str(tiny_bert_dir), SPEC, PromptConfig(prefix_len=4))
    model.save_pretrained(tmp_path / "ckpt")
    assert "Predictor" in ptuning.__all__ and ">>>" in ptuning.Predictor.__doc__
    answers = ptuning.Predictor(PromptModel.from_pretrained(tmp_path / "ckpt")).predict(["a gripping film"])
    assert answers[0]["label"] in ("no", "yes")
    with pytest.raises(ValueError, match="needs a tokenizer"):
        ptuning.Predictor(PromptModel(tiny_backbone("bert"), SPEC, PromptConfig(prefix_len=4)))


def _backbone_with_dropout():
    from transformers import AutoModel

    from ptuning.testing import tiny_config

    config = tiny_config("bert")
    config.hidden_dropout_prob = config.attention_probs_dropout_prob = 0.2
    torch.manual_seed(0)
    return AutoModel.from_config(config, attn_implementation="eager")


@pytest.mark.parametrize("method", ["p-tuning-v2", "fine-tune"])
@pytest.mark.parametrize("backbone_dropout", [True, False])
def test_backbone_dropout_off_gives_deterministic_training_mode_states(method, backbone_dropout, tmp_path):
    # no prompt dropout here, so that only the backbone's dropout can make two passes differ
    config = PromptConfig(method=method, prefix_len=4, prompt_dropout=0.0, backbone_dropout=backbone_dropout)
    model = PromptModel(_backbone_with_dropout(), SPEC, config).train()
    batch = {k: v for k, v in _inputs().items() if k != "labels"}
    with torch.no_grad():
        first, second = (model.encode(**batch) for _ in range(2))
    assert torch.equal(first, second) is (not backbone_dropout)
    if method != "fine-tune":  # the prompt's own dropout stays
        kept = PromptModel(_backbone_with_dropout(), SPEC, PromptConfig(prefix_len=4, backbone_dropout=False))
        assert kept.prefix_encoder.dropout.p == kept.prompt_config.prompt_dropout > 0
    model.save_pretrained(tmp_path / "ckpt")
    saved = json.loads((tmp_path / "ckpt" / "ptuning_config.json").read_text())
    assert saved["prompt_config"]["backbone_dropout"] is backbone_dropout
    loaded = PromptModel.from_pretrained(tmp_path / "ckpt", backbone=_backbone_with_dropout())
    assert loaded.prompt_config.backbone_dropout is backbone_dropout
