"""The prefix's size watch: the backbone's own key and value norms, the prefix's against them, and
the one warning a run prints when the prefix has outgrown them (where training stops learning)."""

from __future__ import annotations

import pytest
import torch
from transformers import TrainerState

from ptuning.core.config import PromptConfig
from ptuning.model import PromptModel
from ptuning.tasks import TaskSpec
from ptuning.testing import TINY_MODEL_TYPES, tiny_backbone
from ptuning.training.prefix_watch import OUTGROWN, PrefixWatch, own_norms, prefix_scale

from .test_early_stopping import _train

SPEC = TaskSpec("toy", "classification", labels=("no", "yes"))


def _vocab_model() -> PromptModel:
    torch.manual_seed(0)
    return PromptModel(
        tiny_backbone("bert"), SPEC, PromptConfig(method="p-tuning-v2", prefix_len=4, prefix_init="vocab")
    )


@pytest.mark.parametrize("model_type", TINY_MODEL_TYPES)
def test_a_prefix_of_the_backbones_own_keys_and_values_measures_one(model_type):
    # the vocabulary initialisation copies the backbone's keys and values for P random tokens: the
    # same tokens (seed 0) measure exactly as large as the prefix, in every layer and part
    torch.manual_seed(0)
    model = PromptModel(
        tiny_backbone(model_type), SPEC, PromptConfig(method="p-tuning-v2", prefix_len=4, prefix_init="vocab")
    )
    own = own_norms(model, seed=0)
    assert own.shape == (2 * len(model.prefix_encoder.layers),) and bool((own > 0).all())
    assert prefix_scale(model, own).ratio == pytest.approx(1.0, rel=1e-5)


def test_the_backbones_own_are_measured_with_its_frozen_weights_held_in_bf16():
    from ptuning.core.precision import hold_frozen_in_bf16

    model = _vocab_model()
    fp32 = own_norms(model, seed=0)
    hold_frozen_in_bf16(model)  # what --bf16 does before training: then only autocast runs them
    assert torch.allclose(own_norms(model, seed=0), fp32, rtol=0.05)


def test_the_scale_names_the_layer_and_part_that_grew():
    torch.manual_seed(0)
    model = PromptModel(
        tiny_backbone("bert"), SPEC, PromptConfig(method="p-tuning-v2", prefix_len=4, prefix_init="vocab")
    )
    own = own_norms(model, seed=0)
    encoder = model.prefix_encoder
    with torch.no_grad():  # layer 1's values: the table's columns of (layer 1, value) are block 3 of 2L
        kv = encoder.embedding.weight.view(4, 2 * len(encoder.layers), -1)
        kv[:, 3] *= 20
    scale = prefix_scale(model, own)
    assert scale.ratio == pytest.approx(20.0, rel=1e-4)
    assert (scale.layer, scale.part) == (encoder.layers[1], "values")


def test_through_the_mlp_the_scale_is_the_mlps_output():
    torch.manual_seed(0)
    model = PromptModel(
        tiny_backbone("bert"), SPEC, PromptConfig(method="p-tuning-v2", prefix_len=4, prefix_projection=True)
    )
    own = own_norms(model)
    before = prefix_scale(model, own).ratio
    with torch.no_grad():
        model.prefix_encoder.mlp[-1].weight.mul_(50)
        model.prefix_encoder.mlp[-1].bias.mul_(50)
    assert prefix_scale(model, own).ratio == pytest.approx(50 * before, rel=1e-4)


def test_the_watch_speaks_on_growth_in_training_not_on_a_prefix_set_large():
    grown, set_large = _vocab_model(), _vocab_model()
    with torch.no_grad():
        set_large.prefix_encoder.embedding.weight.mul_(30)
    watches = {name: PrefixWatch(say=False) for name in ("grown", "set_large")}
    for name, model in (("grown", grown), ("set_large", set_large)):
        watches[name].on_train_begin(None, TrainerState(), None, model=model)
    assert watches["grown"].check(grown) is None  # the backbone's own size: nothing to say
    assert watches["set_large"].check(set_large) is None  # 30x from the start: not grown in training
    with torch.no_grad():
        grown.prefix_encoder.embedding.weight.mul_(30)
    scale = watches["grown"].check(grown)
    assert scale is not None and scale.ratio > OUTGROWN
    assert watches["grown"].check(grown) is None  # once


def test_a_run_whose_prefix_outgrows_the_backbone_says_so_once(tmp_path, tiny_bert_dir, capsys):
    _train(
        tmp_path, tiny_bert_dir, "--prefix-projection", "--lr", "1", "--epochs", "3", "--warmup-ratio", "0"
    )
    printed = capsys.readouterr().out
    assert printed.count("warning: at epoch") == 1
    line = next(line for line in printed.splitlines() if line.startswith("warning: at epoch 1 "))
    ratio = float(line.split(" are ")[1].split("x the size")[0])
    assert ratio >= OUTGROWN
    assert "a lower --lr (through the reparameterization MLP the default is 1e-3)" in line


def test_a_run_whose_prefix_stays_small_prints_no_warning(tmp_path, tiny_bert_dir, capsys):
    _train(tmp_path, tiny_bert_dir, "--lr", "1e-4", "--epochs", "2")
    assert "warning: at epoch" not in capsys.readouterr().out


def test_fine_tuning_has_no_prefix_to_watch(tmp_path, tiny_bert_dir, capsys):
    _train(tmp_path, tiny_bert_dir, "--method", "fine-tune", "--lr", "1", "--epochs", "1")
    assert "warning: at epoch" not in capsys.readouterr().out
