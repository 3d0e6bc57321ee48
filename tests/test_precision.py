"""bf16 autocast: where it is used (native bf16 only), what --bf16 / --no-bf16 / the default choose."""

from __future__ import annotations

import json

import pytest
import torch

from ptuning import precision
from ptuning.cli import main
from ptuning.inference import Predictor
from ptuning.modeling import PromptModel
from ptuning.precision import resolve_precision


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
    from ptuning.bench import BenchConfig, environment

    assert environment(BenchConfig(device="cpu", bf16=False))["dtype"] == "fp32"
    assert environment(BenchConfig(device="cpu", bf16=True))["dtype"] == "bf16 autocast"


def test_predictions_default_to_fp32_and_opt_in_to_bf16(native_bf16):
    assert resolve_precision(None, "cpu").bf16  # training, evaluation, bench
    assert not resolve_precision(None, "cpu", answers=True).bf16  # predict, serve
    assert resolve_precision(True, "cpu", answers=True).bf16
