"""The eval-mode prefix cache: same outputs as computing the prefix every call, dropped when weights change."""

from __future__ import annotations

import copy

import pytest
import torch

from ptuning.core.config import PromptConfig
from ptuning.core.injection import LayerPrefix, attend
from ptuning.model import PromptModel
from ptuning.tasks import TaskSpec
from ptuning.testing import tiny_backbone

SPEC = TaskSpec("toy", "classification", labels=("no", "yes"))


def _model(model_type: str = "bert", **config) -> PromptModel:
    config = {"prefix_len": 5, "prompt_dropout": 0.0, "head_dropout": 0.0, **config}
    return PromptModel(tiny_backbone(model_type), SPEC, PromptConfig(**config)).eval()


def _batch():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 900, (3, 9), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def _uncached(model: PromptModel, batch) -> torch.Tensor:
    """Logits with the prefix computed afresh (grad mode skips the cache)."""
    with torch.enable_grad():
        return model(**batch).logits.detach()


@pytest.mark.parametrize("model_type", ["bert", "mpnet", "deberta-v2"])
@pytest.mark.parametrize("projection", [False, True])
def test_cached_prefix_gives_the_uncached_outputs(model_type, projection):
    model = _model(model_type, prefix_projection=projection)
    batch = _batch()
    with torch.no_grad():
        first = model(**batch).logits
        table = model.prefix_encoder.inference_table()
        second = model(**batch).logits
        assert model.prefix_encoder.inference_table() is table  # computed once, then reused
    assert torch.equal(first, second)
    assert torch.allclose(first, _uncached(model, batch), atol=1e-6)


def test_cache_follows_an_optimizer_step():
    model = _model()
    batch = _batch()
    with torch.no_grad():
        before = model(**batch).logits
    optimizer = torch.optim.SGD(model.prefix_encoder.parameters(), lr=1000.0)
    model.train()
    model(**batch, labels=torch.tensor([0, 1, 1])).loss.backward()
    optimizer.step()
    model.eval()
    with torch.no_grad():
        after = model(**batch).logits
    assert not torch.allclose(before, after, atol=1e-4)
    assert torch.allclose(after, _uncached(model, batch), atol=1e-6)


def test_cache_follows_an_in_place_update_in_eval_mode():
    model = _model()
    batch = _batch()
    with torch.no_grad():
        model(**batch)  # fills the cache
        model.prefix_encoder.embedding.weight.mul_(-1.0)  # no train() in between
        after = model(**batch).logits
    assert torch.allclose(after, _uncached(model, batch), atol=1e-6)


def test_cache_follows_load_state_dict():
    model, other = _model(), _model()
    torch.manual_seed(1)
    other.prefix_encoder.embedding.weight.data.normal_()
    batch = _batch()
    with torch.no_grad():
        model(**batch)  # fills the cache with the old table
        model.prefix_encoder.load_state_dict(other.prefix_encoder.state_dict())
        loaded = model(**batch).logits
    assert torch.allclose(loaded, _uncached(model, batch), atol=1e-6)
    assert torch.allclose(loaded, _uncached(other, batch), atol=1e-6)  # same backbone and head (seeded)


def test_train_drops_the_cache():
    encoder = _model().prefix_encoder
    with torch.no_grad():
        encoder(2)
    assert "_cache" in encoder.__dict__
    encoder.train()
    assert "_cache" not in encoder.__dict__
    with torch.no_grad():
        encoder(2)  # training mode: computed every call, never cached
    assert "_cache" not in encoder.__dict__


def test_grad_mode_in_eval_gets_a_prefix_with_a_graph():
    encoder = _model().prefix_encoder
    prefix = encoder(2)
    assert prefix[0].key.requires_grad  # not the cache (which holds no graph)


def test_an_all_visible_mask_is_dropped_once_not_checked_per_layer():
    encoder = _model().prefix_encoder
    with torch.no_grad():
        visible = encoder(2, torch.ones(2, 5, dtype=torch.bool))
        partial = encoder(2, torch.tensor([[True] * 5, [True, True, False, False, False]]))
    assert all(p.mask is None for p in visible.values())
    assert all(p.mask is not None for p in partial.values())


def test_attend_with_an_all_visible_prefix_mask_equals_no_mask():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, 6, 8, generator=g) for _ in range(3))
    pk, pv = torch.randn(2, 4, 3, 8, generator=g), torch.randn(2, 4, 3, 8, generator=g)
    plain = attend(q, k, v, None, LayerPrefix(pk, pv), scale=None)
    masked = attend(q, k, v, None, LayerPrefix(pk, pv, torch.ones(2, 3, dtype=torch.bool)), scale=None)
    assert torch.allclose(plain, masked, atol=1e-6)


def test_deepcopy_keeps_a_correct_cache():
    model = _model()
    batch = _batch()
    with torch.no_grad():
        model(**batch)
        twin = copy.deepcopy(model)
        twin.prefix_encoder.embedding.weight.mul_(2.0)
        assert torch.allclose(twin(**batch).logits, _uncached(twin, batch), atol=1e-6)
        assert torch.allclose(model(**batch).logits, _uncached(model, batch), atol=1e-6)


@pytest.mark.parametrize("model_type", ["bert", "mpnet"])
def test_deepcopy_of_a_model_keeps_its_own_prefix(model_type):
    """Attention modules reach their injector by reference, so a copy injects the copy's prefix."""
    model = _model(model_type)
    batch = _batch()
    twin = copy.deepcopy(model)
    hidden_prefix = torch.zeros(3, 5, dtype=torch.bool)
    with torch.no_grad():
        original = model(**batch).logits
        assert torch.allclose(twin(**batch).logits, original, atol=1e-6)
        assert not torch.allclose(twin(**batch, prefix_mask=hidden_prefix).logits, original, atol=1e-4)
        twin.prefix_encoder.embedding.weight.mul_(3.0)
        assert not torch.allclose(twin(**batch).logits, original, atol=1e-4)  # the copy reads its own table
        assert torch.equal(model(**batch).logits, original)  # and the original is untouched


def test_a_backbone_without_attention_modules_is_refused():
    from transformers import AutoModel

    from ptuning.core.injection import PrefixInjector
    from ptuning.testing import tiny_config

    config = tiny_config("bert")
    config.num_hidden_layers = 0
    with pytest.raises(ValueError, match="no self-attention module"):
        PrefixInjector.attach(AutoModel.from_config(config))
