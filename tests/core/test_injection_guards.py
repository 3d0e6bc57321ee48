"""The injection refuses to run silently without its prompt: a prefix no attention read is an
error, and so is a backbone whose attention modules do not match its layers."""

from __future__ import annotations

import pytest
import torch

from ptuning.core.config import PromptConfig
from ptuning.core.injection import PrefixInjector
from ptuning.errors import BackboneError
from ptuning.model import PromptModel
from ptuning.tasks import TaskSpec
from ptuning.testing import TINY_MODEL_TYPES, tiny_backbone

SPEC = TaskSpec("toy", "classification", labels=("a", "b"))


def _ids():
    ids = torch.randint(5, 900, (2, 6))
    return ids, torch.ones_like(ids)


@pytest.mark.parametrize("model_type", TINY_MODEL_TYPES)
def test_every_prompted_layer_reads_its_prefix(model_type):
    model = PromptModel(tiny_backbone(model_type), SPEC, PromptConfig(prefix_len=2)).eval()
    with torch.no_grad():
        model.encode(*_ids())  # no error: every layer read its prefix


def test_a_prefix_left_unread_is_an_error():
    model = PromptModel(tiny_backbone("bert"), SPEC, PromptConfig(prefix_len=2)).eval()
    model.backbone.set_attn_implementation("sdpa")  # attention no longer routed through ptuning
    unread = r"prefix of layer\(s\) \[0, 1, 2\] was not read.*sdpa"
    with pytest.raises(RuntimeError, match=unread), torch.no_grad():
        model.encode(*_ids())


def test_an_unread_layer_is_named():
    backbone = tiny_backbone("bert").eval()
    injector = PrefixInjector.attach(backbone)
    model = PromptModel(backbone, SPEC, PromptConfig(prefix_len=2)).eval()
    prefix = model.prefix_encoder(2)
    prefix[7] = prefix[0]  # a layer this backbone does not have
    with pytest.raises(RuntimeError, match=r"\[7\]"), torch.no_grad(), injector.active(prefix):
        backbone(*_ids())


def test_attention_modules_must_match_the_layers():
    backbone = tiny_backbone("bert")
    backbone.config.num_hidden_layers += 1  # as if one attention module were not found
    with pytest.raises(BackboneError, match="expects one per layer"):
        PrefixInjector.attach(backbone)
