"""The shallow-layer cache gives the uncached losses, logits and gradients (lower-layer dropout off)."""

from __future__ import annotations

import json

import pytest
import torch

from ptuning.core.config import PromptConfig
from ptuning.core.shallow_cache import ShallowCacheError, attach_shallow_cache
from ptuning.data.features import Collator
from ptuning.model import PromptModel
from ptuning.tasks import TaskSpec
from ptuning.testing import tiny_backbone

SPECS = {
    "classification": TaskSpec("t", "classification", ("a", "b", "c"), "accuracy"),
    "token_classification": TaskSpec("n", "token_classification", ("O", "B-X", "I-X"), "f1"),
    "question_answering": TaskSpec("q", "question_answering", (), "f1"),
}


def _features(task_type: str, n: int = 24, seed: int = 0) -> list[dict]:
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        length = int(torch.randint(4, 20, (1,), generator=gen))
        ids = [101] + torch.randint(200, 999, (length - 2,), generator=gen).tolist() + [102]
        split = length // 2
        feature = {
            "input_ids": ids,
            "attention_mask": [1] * length,
            "token_type_ids": [0] * split + [1] * (length - split),
        }
        if task_type == "classification":
            feature["labels"] = int(torch.randint(0, 3, (1,), generator=gen))
        elif task_type == "token_classification":
            feature["labels"] = [-100] + torch.randint(0, 3, (length - 2,), generator=gen).tolist() + [-100]
        else:
            start = int(torch.randint(1, length - 1, (1,), generator=gen))
            feature["start_positions"] = start
            feature["end_positions"] = min(length - 2, start + 2)
        out.append(feature)
    return out


def _model(task_type: str, prompt_layers: int | None = 2, method: str = "p-tuning-v2") -> PromptModel:
    torch.manual_seed(0)
    backbone = tiny_backbone("bert")  # 3 layers, every dropout 0
    config = PromptConfig(
        method=method, prefix_len=4, prompt_layers=prompt_layers, prompt_dropout=0.0, head_dropout=0.0
    )
    return PromptModel(backbone, SPECS[task_type], config)


def _batches(features: list[dict], task_type: str, size: int = 8):
    collate = Collator(task_type=task_type, pad_token_id=0)
    return [collate(features[i : i + size]) for i in range(0, len(features), size)]


@pytest.mark.parametrize("task_type", list(SPECS))
def test_cached_path_gives_the_uncached_losses_logits_and_gradients(task_type):
    features = _features(task_type)
    plain = _model(task_type)
    cached = _model(task_type)  # same seed, same weights and prompt (a deepcopy would lose the prefix)
    cache = attach_shallow_cache(
        cached, features, Collator(task_type=task_type, pad_token_id=0), batch_size=5
    )
    assert cache.summary()["entries"] == len(features)
    assert cache.split == 1 and cache.top == 2

    plain.train()
    cached.train()
    opt_a = torch.optim.SGD([p for p in plain.parameters() if p.requires_grad], lr=0.5)
    opt_b = torch.optim.SGD([p for p in cached.parameters() if p.requires_grad], lr=0.5)
    for _ in range(2):  # two epochs: the cache is reused and the prompts have moved
        for batch in _batches(features, task_type):
            out_a, out_b = plain(**batch), cached(**batch)
            torch.testing.assert_close(out_b.loss, out_a.loss, rtol=1e-5, atol=1e-6)
            logits_a = out_a.start_logits if task_type == "question_answering" else out_a.logits
            logits_b = out_b.start_logits if task_type == "question_answering" else out_b.logits
            real = batch["attention_mask"].bool()
            if task_type == "classification":
                torch.testing.assert_close(logits_b, logits_a, rtol=1e-5, atol=1e-5)
            else:  # padding positions are ignored by the loss (and masked for QA)
                torch.testing.assert_close(logits_b[real], logits_a[real], rtol=1e-5, atol=1e-5)
            out_a.loss.backward()
            out_b.loss.backward()
            for (name, p_a), (_, p_b) in zip(
                plain.named_parameters(), cached.named_parameters(), strict=True
            ):
                if p_a.requires_grad:
                    torch.testing.assert_close(p_b.grad, p_a.grad, rtol=1e-4, atol=1e-6, msg=name)
            opt_a.step()
            opt_b.step()
            opt_a.zero_grad()
            opt_b.zero_grad()
    batches = len(_batches(features, task_type))
    assert cache.hits == 2 * len(features) and cache.misses == 0, cache.summary()
    assert batches > 1

    # evaluation runs the whole model and never reads the cache
    cached.eval()
    with torch.no_grad():
        cached(**_batches(features, task_type)[0])
    assert cache.hits == 2 * len(features)


def test_lower_layers_really_are_skipped():
    features = _features("classification")
    model = _model("classification")
    attach_shallow_cache(model, features, Collator(task_type="classification", pad_token_id=0))
    calls = []
    hooks = [
        layer.register_forward_hook(lambda *_, i=i: calls.append(i))
        for i, layer in enumerate(model.backbone.encoder.layer)
    ]
    model.backbone.embeddings.word_embeddings.register_forward_hook(lambda *_: calls.append("embed"))
    model.train()
    model(**_batches(features, "classification")[0])
    assert calls == [1, 2]
    calls.clear()
    model.eval()
    model(**_batches(features, "classification")[0])
    assert calls == ["embed", 0, 1, 2]
    for hook in hooks:
        hook.remove()


def test_unknown_rows_fall_back_to_the_whole_model():
    features = _features("classification")
    model = _model("classification")
    cache = attach_shallow_cache(model, features[:8], Collator(task_type="classification", pad_token_id=0))
    reference = _model("classification")
    model.train()
    reference.train()
    batch = _batches(features[8:16], "classification")[0]
    torch.testing.assert_close(model(**batch).loss, reference(**batch).loss)
    assert cache.misses == 1 and cache.hits == 0


@pytest.mark.parametrize(
    ("method", "prompt_layers", "message"),
    [
        ("p-tuning-v2", None, "top k layers"),
        ("p-tuning-v2", 3, "top k layers"),
        ("prompt-tuning", 2, "deep prompt"),
        ("fine-tune", 2, "deep prompt"),
    ],
)
def test_configurations_without_fixed_lower_layers_are_refused(method, prompt_layers, message):
    model = _model("classification", prompt_layers=prompt_layers, method=method)
    with pytest.raises(ShallowCacheError, match=message):
        attach_shallow_cache(model, _features("classification", 4), Collator("classification", 0))


def test_other_architectures_are_refused():
    backbone = tiny_backbone("mpnet")
    model = PromptModel(backbone, SPECS["classification"], PromptConfig(prefix_len=2, prompt_layers=1))
    with pytest.raises(ShallowCacheError, match="supports bert"):
        attach_shallow_cache(model, _features("classification", 4), Collator("classification", 0))


def test_train_with_the_flag_reports_the_cache(tiny_bert_dir, tmp_path):
    from ptuning.training.config import TrainConfig
    from ptuning.training.run import train

    rows = [
        {"text": f"sample number {i} {'good' if i % 2 else 'bad'}", "label": str(i % 2)} for i in range(24)
    ]
    train_file, dev_file = tmp_path / "train.jsonl", tmp_path / "dev.jsonl"
    train_file.write_text("\n".join(json.dumps(r) for r in rows))
    dev_file.write_text("\n".join(json.dumps(r) for r in rows[:8]))
    cfg = TrainConfig.build(
        task="custom",
        backbone=str(tiny_bert_dir),
        train_file=str(train_file),
        validation_file=str(dev_file),
        prompt_layers=2,
        prefix_len=4,
        cache_shallow_layers=True,
        epochs=2,
        batch_size=8,
        max_seq_length=32,
        output_dir=str(tmp_path / "run"),
        progress=False,
    )
    metrics = train(cfg)
    summary = metrics["shallow_cache"]
    assert summary["entries"] == 24 and summary["cached_layers"] == 1
    assert summary["hits"] == 2 * 24 and summary["misses"] == 0
