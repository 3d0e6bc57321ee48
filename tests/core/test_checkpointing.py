"""Activation checkpointing keeps the prefix in the recomputation: same loss and gradients, fewer
saved activations, on every supported architecture."""

from __future__ import annotations

import copy

import pytest
import torch

from ptuning.core.checkpointing import encoder_layers, is_checkpointed, set_activation_checkpointing
from ptuning.core.config import PromptConfig
from ptuning.model import PromptModel
from ptuning.tasks import TaskSpec
from ptuning.testing import TINY_MODEL_TYPES, tiny_backbone

SPEC = TaskSpec("toy", "classification", labels=("no", "yes"))


def _model(model_type: str, **config) -> PromptModel:
    # backbone and prompt dropout on: the recomputation must replay the same masks
    config = {"prefix_len": 4, "prompt_dropout": 0.1, "head_dropout": 0.0, **config}
    return PromptModel(tiny_backbone(model_type), SPEC, PromptConfig(**config)).train()


def _batch():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 900, (3, 12), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([0, 1, 1])}


def _loss_and_grads(model: PromptModel) -> tuple[float, dict[str, torch.Tensor], int]:
    """Loss, the trainable parameters' gradients and the bytes autograd saved for the backward."""
    saved = 0

    def pack(tensor):
        nonlocal saved
        saved += tensor.numel() * tensor.element_size()
        return tensor

    model.zero_grad(set_to_none=True)
    torch.manual_seed(7)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model(**_batch()).loss
    loss.backward()
    # (a fine-tuned BERT's pooler gets no gradient: the head pools the hidden states itself)
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return loss.item(), grads, saved


@pytest.mark.parametrize("model_type", TINY_MODEL_TYPES)
@pytest.mark.parametrize("method", ["p-tuning-v2", "prefix-tuning", "prompt-tuning", "fine-tune"])
def test_same_loss_and_gradients_fewer_saved_activations(model_type, method):
    model = _model(model_type, method=method)
    loss, grads, saved = _loss_and_grads(model)
    assert set_activation_checkpointing(model.backbone) == len(encoder_layers(model.backbone))
    assert is_checkpointed(model.backbone)
    loss_ckpt, grads_ckpt, saved_ckpt = _loss_and_grads(model)

    assert loss_ckpt == pytest.approx(loss, abs=1e-6)
    assert grads.keys() == grads_ckpt.keys()
    for name, grad in grads.items():
        assert torch.allclose(grads_ckpt[name], grad, atol=1e-6, rtol=1e-5), name
    # the prompt really trains through every layer (a prefix lost in the recomputation would
    # leave the lower layers' prefix gradient wrong, caught above)
    if model.prefix_encoder is not None:
        assert grads["prefix_encoder.embedding.weight"].abs().sum() > 0
    # only the layers' inputs stay, besides what lies outside the layers (embeddings, head, and for
    # prefix tuning its MLP, whose activations are most of what this tiny model saves)
    assert saved_ckpt < (0.8 if method == "prefix-tuning" else 0.3) * saved


@pytest.mark.parametrize("model_type", ["bert", "mpnet"])
def test_off_again_and_eval_untouched(model_type):
    model = _model(model_type)
    set_activation_checkpointing(model.backbone)
    model.eval()
    batch = {k: v for k, v in _batch().items() if k != "labels"}
    with torch.no_grad():
        on = model(**batch).logits
    set_activation_checkpointing(model.backbone, False)
    assert not is_checkpointed(model.backbone)
    assert all("forward" not in vars(layer) for layer in encoder_layers(model.backbone))
    with torch.no_grad():
        off = model(**batch).logits
    assert torch.equal(on, off)


def test_deepcopy_checkpoints_the_copy():
    model = _model("bert")
    set_activation_checkpointing(model.backbone)
    twin = copy.deepcopy(model)
    layer = encoder_layers(twin.backbone)[0]
    assert layer.forward.__self__ is layer  # bound to the copy, not to the original's layer
    _, grads, _ = _loss_and_grads(model)
    _, twin_grads, _ = _loss_and_grads(twin)
    for name, grad in grads.items():
        assert torch.allclose(twin_grads[name], grad, atol=1e-6), name


def test_recomputation_without_the_prefix_is_caught(monkeypatch):
    """Why the prefix state is re-entered: recomputed without it, the layer's saved tensors no
    longer match (keys over T instead of P + T) and torch refuses the backward."""
    import ptuning.core.checkpointing as checkpointing

    model = _model("bert")
    set_activation_checkpointing(model.backbone)
    monkeypatch.setattr(checkpointing, "_within", lambda state: checkpointing.nullcontext())
    with pytest.raises(torch.utils.checkpoint.CheckpointError):
        _loss_and_grads(model)


def test_every_n_layers_and_the_trainer_switch(tmp_path):
    """`every_n_layers` checkpoints layers 0, n, ...; transformers.Trainer's own switch
    (`activation_checkpointing`, `gradient_checkpointing` before 5.24) reaches the model's."""
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments

    model = _model("bert")
    layers = encoder_layers(model.backbone)
    assert set_activation_checkpointing(model.backbone, every_n_layers=2) == len(range(0, len(layers), 2))
    assert ["forward" in vars(layer) for layer in layers] == [i % 2 == 0 for i in range(len(layers))]
    model.gradient_checkpointing_disable()
    assert not model.is_gradient_checkpointing

    switch = (
        "activation_checkpointing"
        if "activation_checkpointing" in TrainingArguments.__dataclass_fields__
        else "gradient_checkpointing"
    )
    rows = [{k: v[i].tolist() for k, v in _batch().items()} for i in range(3)]
    args = TrainingArguments(
        output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=3, report_to=[], use_cpu=True,
        save_strategy="no", **{switch: True},
    )  # fmt: skip
    Trainer(model=model, args=args, train_dataset=Dataset.from_list(rows)).train()
    assert model.is_gradient_checkpointing
    with pytest.raises(ValueError, match="offload"):
        model.activation_checkpointing_enable(offload=True)
