"""The prompt levers of the converged protocol: a prefix started from the backbone's own keys and
values of vocabulary tokens (`prefix_init="vocab"`), and prompt dropout drawn per example."""

from __future__ import annotations

import pytest
import torch

from ptuning.core.config import PromptConfig
from ptuning.core.prompts import InputPrompt, PrefixEncoder, dropout_per_example
from ptuning.model import PromptModel
from ptuning.tasks import TaskSpec
from ptuning.testing import TINY_MODEL_TYPES, tiny_backbone

SPEC = TaskSpec("toy", "classification", labels=("no", "yes"))


def test_vocab_prefix_of_the_first_layer_is_its_key_and_value_projection_of_the_token_embeddings():
    backbone = tiny_backbone("bert")
    model = PromptModel(backbone, SPEC, PromptConfig(prefix_len=4, prefix_init="vocab"))
    table = model.prefix_encoder.embedding.weight.detach()
    g = model.geometry
    kv = table.view(4, 2 * backbone.config.num_hidden_layers, g.num_heads, g.head_dim)
    generator = torch.Generator().manual_seed(0)  # the tokens vocabulary_prefix draws
    ids = torch.randint(0, backbone.config.vocab_size, (1, 4), generator=generator)
    backbone.eval()
    with torch.no_grad():
        hidden = backbone.embeddings(input_ids=ids)  # positions 0..3, as in the one forward pass
        attention = backbone.encoder.layer[0].attention.self
        key = attention.key(hidden)[0].view(4, g.num_heads, g.head_dim)
        value = attention.value(hidden)[0].view(4, g.num_heads, g.head_dim)
    torch.testing.assert_close(kv[:, 0], key, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(kv[:, 1], value, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("model_type", TINY_MODEL_TYPES)
def test_vocab_prefix_fills_every_prompted_layer_on_every_architecture(model_type):
    torch.manual_seed(0)
    backbone = tiny_backbone(model_type)
    random_init = PromptModel(backbone, SPEC, PromptConfig(prefix_len=3, prompt_layers=2))
    backbone.train()
    vocab = PromptModel(backbone, SPEC, PromptConfig(prefix_len=3, prompt_layers=2, prefix_init="vocab"))
    table = vocab.prefix_encoder.embedding.weight.detach()
    assert table.shape == random_init.prefix_encoder.embedding.weight.shape
    assert torch.isfinite(table).all()
    per_layer = table.view(3, 4, -1)  # 2 layers x (key, value)
    assert all(per_layer[:, i].abs().sum() > 0 for i in range(4))  # each slot was written
    # real activations are on another scale than the N(0, 1) table
    assert not torch.allclose(table.std(), random_init.prefix_encoder.embedding.weight.std(), rtol=0.05)
    assert backbone.training  # the one eval-mode pass gave the backbone its mode back


def test_vocab_init_is_refused_with_the_reparameterization():
    with pytest.raises(ValueError, match="vocab"):
        PromptConfig(prefix_init="vocab", prefix_projection=True)
    with pytest.raises(ValueError, match="vocab"):
        PromptConfig(method="prefix-tuning", prefix_init="vocab")
    with pytest.raises(ValueError, match="prefix_init"):
        PromptConfig(prefix_init="words")


def _prefix_encoder(per_example: bool) -> PrefixEncoder:
    torch.manual_seed(0)
    return PrefixEncoder(4, [0, 1], 2, 8, 16, dropout=0.5, dropout_per_example=per_example).train()


def test_per_example_prefix_dropout_draws_a_mask_for_each_row():
    prefix = _prefix_encoder(per_example=True)(batch_size=3)[0].key
    assert not torch.equal(prefix[0], prefix[1])  # rows differ: independent masks
    shared = _prefix_encoder(per_example=False)(batch_size=3)[0].key
    assert torch.equal(shared[0], shared[1]) and torch.equal(shared[1], shared[2])


def test_per_example_prefix_dropout_keeps_the_expected_value_and_eval_has_none():
    encoder = _prefix_encoder(per_example=True)
    clean = encoder.table().view(4, 4, 2, 8).permute(1, 2, 0, 3)[0].detach()
    dropped = encoder(batch_size=4000)[0].key.detach()
    torch.testing.assert_close(dropped.mean(0), clean, atol=0.15, rtol=0.1)
    kept = (dropped != 0).float().mean()
    assert 0.45 < kept < 0.55
    encoder.eval()
    with torch.no_grad():
        assert torch.equal(encoder(batch_size=2)[0].key[1], clean)


def test_per_example_dropout_of_the_input_prompt():
    torch.manual_seed(0)
    embeddings = torch.nn.Embedding(50, 8)
    inputs = torch.zeros(3, 5, 8)
    per_example = InputPrompt(4, embeddings, dropout=0.5, dropout_per_example=True).train()(inputs)
    assert not torch.equal(per_example[0, :4], per_example[1, :4])
    shared = InputPrompt(4, embeddings, dropout=0.5).train()(inputs)
    assert torch.equal(shared[0, :4], shared[1, :4])


def test_per_example_dropout_trains_through_the_model():
    torch.manual_seed(0)
    config = PromptConfig(prefix_len=4, prompt_dropout=0.3, prompt_dropout_per_example=True)
    model = PromptModel(tiny_backbone("bert"), SPEC, config).train()
    ids = torch.randint(5, 900, (3, 7))
    out = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=torch.tensor([0, 1, 0]))
    out.loss.backward()
    assert model.prefix_encoder.embedding.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("p", [0.05, 0.1, 0.3, 0.5])
def test_dropout_per_example_drops_at_rate_p_and_keeps_the_expectation(p):
    torch.manual_seed(0)
    x = torch.full((400, 1000), 2.0)
    y = dropout_per_example(x, p)
    dropped = (y == 0).float().mean().item()
    assert abs(dropped - p) < 0.005  # 400,000 draws: the standard error is under 0.001
    kept = y[y != 0]
    torch.testing.assert_close(kept, torch.full_like(kept, 2.0 / (1 - round(p * 65536) / 65536)))
    assert abs(y.mean().item() - 2.0) < 0.02


def test_dropout_per_example_masks_are_independent_seeded_and_carry_the_gradient():
    torch.manual_seed(0)
    x = torch.randn(4, 64, requires_grad=True)
    masks = torch.stack([dropout_per_example(torch.ones(4, 64), 0.5) != 0 for _ in range(50)]).float()
    # any two elements (in one draw, or the same one in two draws) agree half the time, not always
    assert 0.4 < (masks[:, 0] == masks[:, 1]).float().mean() < 0.6
    assert 0.4 < (masks[0] == masks[1]).float().mean() < 0.6
    torch.manual_seed(7)
    first = dropout_per_example(x, 0.2)
    torch.manual_seed(7)
    assert torch.equal(first, dropout_per_example(x, 0.2))  # torch's global generator: seeded runs repeat
    first.sum().backward()
    torch.testing.assert_close(x.grad, (first / x).detach())  # d(x * keep)/dx = keep
    assert dropout_per_example(x, 0.0) is x
    assert torch.equal(dropout_per_example(x, 1.0), torch.zeros_like(x))
