"""bf16 autocast: where it is used (native bf16 only), what --bf16 / --no-bf16 / the default choose."""

from __future__ import annotations

import json

import pytest
import torch

from ptuning.cli import main
from ptuning.core import precision
from ptuning.core.precision import resolve_precision
from ptuning.inference import Predictor
from ptuning.model import PromptModel


@pytest.fixture
def native_bf16(monkeypatch):
    monkeypatch.setattr(precision, "cpu_supports_bf16", lambda: True)


@pytest.fixture
def no_native_bf16(monkeypatch):
    monkeypatch.setattr(precision, "cpu_supports_bf16", lambda: False)


def test_bf16_requested_on_a_cpu_with_native_bf16_autocasts(native_bf16):
    chosen = resolve_precision(True, "cpu")
    assert chosen.bf16 and chosen.name == "bf16 autocast"
    a, b = torch.randn(4, 8), torch.randn(8, 3)
    with chosen.autocast():
        assert (a @ b).dtype == torch.bfloat16
    assert (a @ b).dtype == torch.float32


def test_bf16_requested_on_a_cpu_without_native_bf16_stays_fp32_and_says_why(no_native_bf16):
    chosen = resolve_precision(True, "cpu")
    assert not chosen.bf16
    assert "no native bf16" in chosen.describe()
    with chosen.autocast():
        assert (torch.randn(2, 2) @ torch.randn(2, 2)).dtype == torch.float32


def test_no_bf16_wins_everywhere(native_bf16):
    assert not resolve_precision(False, "cpu").bf16
    assert not resolve_precision(False, "cuda").bf16


@pytest.mark.parametrize("default", [True, False])
def test_the_cpu_default_follows_the_switch(native_bf16, monkeypatch, default):
    monkeypatch.setattr(precision, "CPU_BF16_DEFAULT", default)
    assert resolve_precision(None, "cpu").bf16 is default


def test_detection_falls_back_to_cpuinfo_flags(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    for flags, expected in (({"avx512f", "avx512_bf16"}, True), ({"amx_bf16"}, True), ({"avx2"}, False)):
        monkeypatch.setattr(precision, "_cpuinfo_flags", lambda flags=flags: flags)
        precision.cpu_supports_bf16.cache_clear()
        assert precision.cpu_supports_bf16() is expected
    precision.cpu_supports_bf16.cache_clear()


def _linear_dtypes(model: PromptModel) -> list[torch.dtype]:
    seen: list[torch.dtype] = []
    linear = next(m for m in model.backbone.modules() if isinstance(m, torch.nn.Linear))
    linear.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    return seen


def test_cli_bf16_train_predict_eval(native_bf16, tmp_path, tiny_bert_dir, shared_data, capsys):
    out = tmp_path / "sst2"
    common = ["--max-seq-length", "32", "--quiet"]
    args = [
        "train", "--task", "sst2", "--backbone", str(tiny_bert_dir), "--output-dir", str(out),
        "--max-train-samples", "16", "--max-eval-samples", "8", "--max-steps", "2", "--batch-size", "8",
        "--prefix-len", "4", "--bf16", *common,
    ]  # fmt: skip
    assert main(args) == 0
    assert "precision: bf16 autocast on the CPU" in capsys.readouterr().out
    assert json.loads((out / "metrics.json").read_text())["precision"] == "bf16 autocast"

    texts = ["a gripping, funny film", "dull and overlong"]
    assert main(["predict", "--checkpoint", str(out), "--bf16", *texts]) == 0
    answers = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [a["label"] in ("negative", "positive") for a in answers] == [True, True]
    assert main(["eval", "--checkpoint", str(out), "--max-eval-samples", "8", "--no-bf16"]) == 0
    assert "accuracy" in json.loads(capsys.readouterr().out)

    # the predictor really computes in bf16 with bf16, in fp32 without, and both agree closely
    results = {}
    for bf16 in (True, False):
        predictor = Predictor.from_checkpoint(out, bf16=bf16)
        dtypes = _linear_dtypes(predictor.model)
        results[bf16] = predictor.predict(texts)
        linear = next(m for m in predictor.model.backbone.modules() if isinstance(m, torch.nn.Linear))
        assert linear.weight.dtype == (torch.bfloat16 if bf16 else torch.float32)
        assert set(dtypes) == {torch.bfloat16 if bf16 else torch.float32}
    for a, b in zip(results[True], results[False], strict=True):
        for label, p in a["probabilities"].items():
            assert abs(p - b["probabilities"][label]) < 0.05

    from ptuning.serving import MultiTaskPredictor

    served = MultiTaskPredictor.from_checkpoints({"sst2": out}, bf16=True)
    dtypes = _linear_dtypes(served.task("sst2").model)
    assert [a["label"] for a in served.predict("sst2", texts)] == [a["label"] for a in results[True]]
    assert set(dtypes) == {torch.bfloat16}


def test_bench_environment_names_the_precision(native_bf16):
    from ptuning.experiments.bench import BenchConfig, environment

    assert environment(BenchConfig(device="cpu", bf16=False))["dtype"] == "fp32"
    assert environment(BenchConfig(device="cpu", bf16=True))["dtype"] == "bf16 autocast"


def test_predictions_default_to_fp32_and_opt_in_to_bf16(native_bf16):
    assert resolve_precision(None, "cpu").bf16  # training, evaluation, bench
    assert not resolve_precision(None, "cpu", answers=True).bf16  # predict, serve
    assert resolve_precision(True, "cpu", answers=True).bf16


def _prompt_model(model_type: str, method: str) -> PromptModel:
    from ptuning.core.config import PromptConfig
    from ptuning.tasks import TaskSpec
    from ptuning.testing import tiny_backbone

    torch.manual_seed(0)
    spec = TaskSpec("toy", "classification", labels=("no", "yes"))
    config = PromptConfig(method=method, prefix_len=4, prompt_dropout=0.0, head_dropout=0.0)
    return PromptModel(tiny_backbone(model_type), spec, config).eval()


def _toy_batch():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 900, (3, 10), generator=g)
    mask = torch.ones_like(ids)
    mask[0, 7:] = 0
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([0, 1, 1])}


@pytest.mark.parametrize("model_type", ["bert", "mpnet", "deberta-v2"])
@pytest.mark.parametrize("method", ["p-tuning-v2", "prompt-tuning"])
def test_frozen_backbone_held_in_bf16_computes_as_autocast_does(model_type, method):
    import copy

    from ptuning.core.backbones import fingerprint
    from ptuning.core.precision import hold_frozen_in_bf16

    model = _prompt_model(model_type, method)
    held = copy.deepcopy(model)
    print_before = fingerprint(held.backbone)
    freed = hold_frozen_in_bf16(held)
    linears = [m for m in held.backbone.modules() if isinstance(m, torch.nn.Linear)]
    assert {m.weight.dtype for m in linears} == {torch.bfloat16}
    assert held.backbone.get_input_embeddings().weight.dtype == torch.bfloat16
    norms = [m for m in held.backbone.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert norms and {m.weight.dtype for m in norms} == {torch.float32}
    trainable = [p for p in held.parameters() if p.requires_grad]
    assert trainable and {p.dtype for p in trainable} == {torch.float32}  # fp32 master weights
    assert freed == 2 * sum(p.numel() for p in held.parameters() if p.dtype == torch.bfloat16)
    assert fingerprint(held.backbone) == print_before  # still the same backbone to a checkpoint

    batch = _toy_batch()
    with torch.no_grad():
        exact = model(**batch).logits
        with torch.autocast("cpu", dtype=torch.bfloat16):
            autocast = model(**batch).logits.float()
            ours = held(**batch).logits.float()
    # the products are the same bf16 products; only the word table's rounding is new
    assert (ours - autocast).abs().max() <= 2 * (autocast - exact).abs().max() + 1e-2

    held.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = held(**batch).loss
    loss.backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in trainable)
    assert all(p.grad is None for p in held.backbone.parameters())


def test_fine_tune_keeps_its_weights_in_fp32():
    from ptuning.core.precision import hold_frozen_in_bf16

    model = _prompt_model("bert", "fine-tune")
    assert hold_frozen_in_bf16(model) == 0
    assert {p.dtype for p in model.parameters()} == {torch.float32}


def test_the_cached_prefix_is_held_in_the_compute_dtype():
    model = _prompt_model("bert", "p-tuning-v2")
    batch = {k: v for k, v in _toy_batch().items() if k != "labels"}
    encoder = model.prefix_encoder
    with torch.no_grad():
        plain = model(**batch).logits
        assert encoder.inference_table().dtype == torch.float32
        with torch.autocast("cpu", dtype=torch.bfloat16):
            layers = encoder(3)
            assert {p.key.dtype for p in layers.values()} == {torch.bfloat16}
            table = encoder.inference_table(torch.bfloat16)
            assert encoder.inference_table(torch.bfloat16) is table  # cast once, then reused
            low = model(**batch).logits.float()
        assert encoder.inference_table().dtype == torch.float32  # fp32 again outside autocast
    assert torch.allclose(low, plain, atol=5e-2)


def test_bf16_training_holds_the_frozen_backbone_in_bf16(native_bf16, tmp_path, tiny_bert_dir, shared_data):
    from transformers import TrainerCallback

    from ptuning.training.config import TrainConfig
    from ptuning.training.run import train

    seen: dict[str, set] = {}

    class Spy(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):
            seen["frozen"] = {p.dtype for p in model.backbone.parameters() if p.dim() == 2}
            seen["trained"] = {p.dtype for p in model.parameters() if p.requires_grad}

    cfg = TrainConfig.build(
        task="sst2", backbone=str(tiny_bert_dir), output_dir=str(tmp_path / "out"), max_train_samples=16,
        max_eval_samples=8, max_steps=2, batch_size=8, prefix_len=4, max_seq_length=32, bf16=True,
    )  # fmt: skip
    train(cfg, callbacks=[Spy()])
    assert torch.bfloat16 in seen["frozen"]
    assert seen["trained"] == {torch.float32}
