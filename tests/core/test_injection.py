"""Parity of the prefix injection with the plain backbone, on every supported architecture."""

from __future__ import annotations

import pytest
import torch

from ptuning.core.config import PromptConfig
from ptuning.model import PromptModel
from ptuning.tasks import TaskSpec
from ptuning.testing import TINY_MODEL_TYPES, tiny_backbone

SPEC = TaskSpec("toy", "classification", labels=("no", "yes"))


def _batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 900, (3, 9), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    mask[2, 4:] = 0
    return ids, mask


def _model(model_type: str, **config) -> PromptModel:
    config = {"prefix_len": 5, "prompt_dropout": 0.0, "head_dropout": 0.0, **config}
    return PromptModel(tiny_backbone(model_type), SPEC, PromptConfig(**config)).eval()


@pytest.mark.parametrize("model_type", TINY_MODEL_TYPES)
def test_fully_masked_prefix_equals_plain_backbone(model_type):
    plain = tiny_backbone(model_type)
    model = _model(model_type)
    ids, mask = _batch()
    with torch.no_grad():
        expected = plain(input_ids=ids, attention_mask=mask).last_hidden_state
        hidden = model.encode(ids, mask, prefix_mask=torch.zeros(3, 5, dtype=torch.bool))
        visible = model.encode(ids, mask)
    real = mask.bool()
    assert (hidden - expected)[real].abs().max().item() <= 1e-5
    # and the prefix, once visible, really changes the output
    assert (visible - expected)[real].abs().max().item() > 1e-3


@pytest.mark.parametrize("model_type", TINY_MODEL_TYPES)
@pytest.mark.parametrize("method", ["p-tuning-v2", "prompt-tuning"])
def test_padded_row_equals_row_alone(model_type, method):
    model = _model(model_type, method=method)
    ids, mask = _batch(1)
    with torch.no_grad():
        batched = model(input_ids=ids, attention_mask=mask).logits
        for row in range(ids.shape[0]):
            length = int(mask[row].sum())
            alone = model(
                input_ids=ids[row : row + 1, :length], attention_mask=mask[row : row + 1, :length]
            ).logits
            assert torch.allclose(batched[row], alone[0], atol=1e-5), (row, batched[row], alone[0])


@pytest.mark.parametrize("model_type", TINY_MODEL_TYPES)
def test_partially_masked_prefix_matches_shorter_prefix(model_type):
    """Hiding the last prefix slots is the same as a prefix that never had them."""
    model = _model(model_type)
    short = _model(model_type, prefix_len=3)
    with torch.no_grad():
        table = model.prefix_encoder.embedding.weight
        short.prefix_encoder.embedding.weight.copy_(table[:3])
    short.head.load_state_dict(model.head.state_dict())
    ids, mask = _batch(2)
    prefix_mask = torch.tensor([[True, True, True, False, False]]).expand(3, -1)
    with torch.no_grad():
        a = model(input_ids=ids, attention_mask=mask, prefix_mask=prefix_mask).logits
        b = short(input_ids=ids, attention_mask=mask).logits
    assert torch.allclose(a, b, atol=1e-5)


def test_prefix_only_in_top_layers():
    model = _model("bert", prompt_layers=1)
    assert model.prefix_encoder.layers == [2]
    assert model.prefix_encoder.embedding.weight.shape == (5, 1 * 2 * 32)


def test_two_models_share_one_backbone_injector():
    backbone = tiny_backbone("bert")
    a = PromptModel(backbone, SPEC, PromptConfig(prefix_len=2))
    b = PromptModel(backbone, SPEC, PromptConfig(prefix_len=3))
    assert a.injector is b.injector
