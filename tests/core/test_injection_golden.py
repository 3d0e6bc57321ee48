"""Golden test against transformers' own cache path: for BERT and RoBERTa, prefix keys and values
filled into a `DynamicCache`, the attention mask extended by P ones and explicit (unshifted) position
ids give the hidden states that ptuning's injection gives, for every real token."""

from __future__ import annotations

import copy
import inspect

import pytest
import torch
from transformers import DynamicCache

from ptuning.core.config import PromptConfig
from ptuning.model import PromptModel
from ptuning.tasks import TaskSpec
from ptuning.testing import tiny_backbone

TOLERANCE = 2.4e-7  # measured independently; the cache path and ours run the same SDPA arithmetic
P = 3


def _cache_keyword(backbone) -> str:
    """transformers 5.x renamed `past_key_values` to `cache` for these encoders (5.17 vs 5.24)."""
    return "cache" if "cache" in inspect.signature(backbone.forward).parameters else "past_key_values"


@pytest.mark.parametrize("model_type", ["bert", "roberta"])
def test_injection_equals_transformers_dynamic_cache(model_type):
    torch.manual_seed(0)
    plain = tiny_backbone(model_type).eval()
    spec = TaskSpec("toy", "classification", labels=("a", "b"))
    model = PromptModel(copy.deepcopy(plain), spec, PromptConfig(prefix_len=P, prompt_dropout=0.0)).eval()
    ids = torch.randint(5, 900, (2, 7))
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0  # a padded row
    with torch.no_grad():
        prefix = model.prefix_encoder(2)
        ours = model.encode(ids, mask)
        cache = DynamicCache(config=plain.config)
        for layer in range(plain.config.num_hidden_layers):
            cache.update(prefix[layer].key.clone(), prefix[layer].value.clone(), layer)
        positions = torch.arange(ids.shape[1]).expand(2, -1)  # not shifted by P
        if model_type == "roberta":  # RoBERTa counts positions from padding_idx + 1
            positions = positions + plain.config.pad_token_id + 1
        reference = plain(
            input_ids=ids,
            attention_mask=torch.cat([torch.ones(2, P, dtype=mask.dtype), mask], dim=1),
            position_ids=positions,
            use_cache=True,
            **{_cache_keyword(plain): cache},
        ).last_hidden_state
        without_prefix = plain(input_ids=ids, attention_mask=mask).last_hidden_state
    real = mask.bool()
    assert (ours - reference)[real].abs().max().item() <= TOLERANCE
    assert (ours - without_prefix)[real].abs().max().item() > 1e-2  # the cache was used, not ignored
