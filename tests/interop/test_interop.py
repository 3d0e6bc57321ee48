"""Hugging Face interop: pipelines, PEFT adapters out and in, checkpoints through the hub cache.

The PEFT logit-parity tests need a PEFT whose prefix tuning runs on BERT with the installed
transformers (PEFT 0.21 failed under 5.24; 0.21 under 5.17, CI's lowest environment, and 0.22 under
5.25 run): `peft_prefix_failure` asks the libraries, and where it fails those tests skip with its
error while the layout and round-trip tests still run.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import (
    AutoModel,
    AutoModelForQuestionAnswering,
    AutoModelForTokenClassification,
    AutoTokenizer,
)

from ptuning.cli import main
from ptuning.core.config import PromptConfig
from ptuning.errors import CheckpointError
from ptuning.interop.peft import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    HEAD_WEIGHTS,
    TASK_FILE,
    export_peft,
    import_peft,
    load_peft_adapter,
)
from ptuning.model import PromptModel
from ptuning.tasks import TaskSpec
from tests.helpers import peft_prefix_failure

SST = TaskSpec("sent", "classification", labels=("negative", "positive"))
NER = TaskSpec("ner", "token_classification", labels=("O", "B-PER", "I-PER"), metric="f1")
QA = TaskSpec("qa", "question_answering", metric="f1")
TEXTS = ["John Smith lives in Paris", "a gripping, funny film that never drags"]


def _model(tiny_bert_dir, spec, seed=0, **prompt) -> PromptModel:
    torch.manual_seed(seed)
    model, _ = PromptModel.from_backbone(
        str(tiny_bert_dir), spec, PromptConfig(**{"prefix_len": 4, **prompt})
    )
    with torch.no_grad():  # a head far from its initialisation, so a lost head would show
        for p in model.head.parameters():
            p.add_(torch.randn_like(p))
    return model.eval()


def _batch(model):
    batch = model.tokenizer(TEXTS, padding=True, return_tensors="pt")
    return {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}


_PEFT_PREFIX_FAILURE = peft_prefix_failure() if importlib.util.find_spec("peft") else "peft is not installed"
needs_peft_prefix = pytest.mark.skipif(
    _PEFT_PREFIX_FAILURE is not None,
    reason=f"PEFT's prefix tuning does not run on BERT here: {_PEFT_PREFIX_FAILURE}",
)


def _shifted_back(batch, prefix_len):
    """PEFT numbers the text's positions from P; `arange - P` (PEFT adds P) gives ptuning's 0.."""
    length = batch["input_ids"].shape[1]
    return (torch.arange(length) - prefix_len).expand(batch["input_ids"].shape[0], -1)


# --- pipelines ------------------------------------------------------------------------------------


def test_text_classification_pipeline_answers_as_the_model(tiny_bert_dir):
    from transformers import pipeline

    from ptuning import Predictor

    model = _model(tiny_bert_dir, SST)
    pipe = pipeline("text-classification", model=model, tokenizer=model.tokenizer)
    got = pipe(TEXTS)
    expected = Predictor(model).predict(TEXTS)
    for answer, ours in zip(got, expected, strict=True):
        assert answer["label"] == ours["label"]
        assert answer["score"] == pytest.approx(ours["probabilities"][ours["label"]], abs=1e-5)
    assert model.config.id2label == {0: "negative", 1: "positive"}
    assert model.backbone.config.id2label != model.config.id2label  # the backbone's config untouched


def test_token_classification_pipeline_tags_as_the_model(tiny_bert_dir):
    from ptuning.interop.pipeline import prompt_pipeline

    model = _model(tiny_bert_dir, NER, seed=3)
    pipe = prompt_pipeline(model)
    got = pipe(TEXTS[0])
    encoded = model.tokenizer(TEXTS[0], return_tensors="pt")
    with torch.no_grad():
        tags = model(**encoded).logits[0].argmax(-1).tolist()
    expected = [
        (i, NER.labels[t]) for i, t in enumerate(tags) if NER.labels[t] != "O" and 0 < i < len(tags) - 1
    ]
    assert [(e["index"], e["entity"]) for e in got] == expected
    assert expected  # the random head tags something, so the comparison says something


def test_pipeline_helper_refuses_a_task_without_pipeline(tiny_bert_dir):
    from ptuning.interop.pipeline import prompt_pipeline

    with pytest.raises(ValueError, match="no transformers pipeline for task type 'question_answering'"):
        prompt_pipeline(_model(tiny_bert_dir, QA))


# --- PEFT export: layout (any transformers) --------------------------------------------------------


def test_export_peft_prefix_layout_matches_peft(tiny_bert_dir, tmp_path):
    peft = pytest.importorskip("peft")
    model = _model(tiny_bert_dir, NER)
    model.save_pretrained(tmp_path / "ckpt")
    done = export_peft(tmp_path / "ckpt", tmp_path / "peft")
    assert done.peft_type == "PREFIX_TUNING" and done.task_type == "TOKEN_CLS" and done.head == "adapter"
    config = json.loads((tmp_path / "peft" / ADAPTER_CONFIG).read_text())
    assert (config["num_virtual_tokens"], config["num_layers"], config["num_attention_heads"]) == (4, 3, 4)
    assert config["token_dim"] == 32 and config["modules_to_save"] == ["classifier"]
    tensors = load_file(tmp_path / "peft" / ADAPTER_WEIGHTS)
    assert tensors["prompt_embeddings"].shape == (4, 3 * 2 * 32)
    assert torch.equal(tensors["prompt_embeddings"], model.prefix_encoder.embedding.weight)
    assert torch.equal(tensors["base_model.classifier.weight"], model.head.classifier.weight)

    # PEFT itself reads the folder: its prefix table and its classifier are ours
    base = AutoModelForTokenClassification.from_pretrained(tiny_bert_dir, num_labels=3)
    loaded = peft.PeftModel.from_pretrained(base, tmp_path / "peft")
    assert torch.equal(
        loaded.prompt_encoder["default"].embedding.weight, model.prefix_encoder.embedding.weight
    )
    assert torch.equal(loaded.base_model.classifier.weight, model.head.classifier.weight)
    # PEFT's view of the table, (P, 2L, heads, d) -> per layer (keys, values), is ptuning's
    kv = (
        tensors["prompt_embeddings"].view(4, 6, 4, 8).permute(1, 2, 0, 3)
    )  # PEFT's get_prompt: (2L, heads, P, d)
    with torch.no_grad():
        ours = model.prefix_encoder(1)
    for layer in range(3):
        assert torch.equal(kv[2 * layer], ours[layer].key[0])
        assert torch.equal(kv[2 * layer + 1], ours[layer].value[0])


def test_export_refuses_what_peft_cannot_hold(tiny_bert_dir, tmp_path):
    partial = _model(tiny_bert_dir, SST, prompt_layers=2)
    partial.save_pretrained(tmp_path / "partial")
    with pytest.raises(CheckpointError, match="prompts every layer; this checkpoint prompts layers 1-2 of 3"):
        export_peft(tmp_path / "partial", tmp_path / "out")
    whole = _model(tiny_bert_dir, SST, method="fine-tune")
    whole.save_pretrained(tmp_path / "whole")
    with pytest.raises(CheckpointError, match="fine-tune checkpoint holds the whole backbone"):
        export_peft(tmp_path / "whole", tmp_path / "out")


# --- PEFT export: the same logits in PEFT (transformers 5.17) ----------------------------------------


@needs_peft_prefix
def test_peft_prefix_gives_ptuning_logits(tiny_bert_dir, tmp_path):
    peft = pytest.importorskip("peft")
    model = _model(tiny_bert_dir, NER)
    model.save_pretrained(tmp_path / "ckpt")
    export_peft(tmp_path / "ckpt", tmp_path / "peft")
    base = AutoModelForTokenClassification.from_pretrained(tiny_bert_dir, num_labels=3)
    theirs = peft.PeftModel.from_pretrained(base, tmp_path / "peft").eval()
    batch = _batch(model)
    with torch.no_grad():
        ours = model(**batch).logits
        got = theirs(**batch, position_ids=_shifted_back(batch, 4)).logits
        shifted = theirs(**batch).logits  # PEFT's own numbering (from P): close, not equal
    real = batch["attention_mask"].bool()
    assert torch.allclose(ours[real], got[real], atol=1e-5)
    assert not torch.allclose(ours[real], shifted[real], atol=1e-3)


def test_export_peft_qa_head_is_peft_qa_outputs(tiny_bert_dir, tmp_path):
    """PEFT's QA forward drops `position_ids` (and `token_type_ids`), so its prefix logits always use
    its own numbering: the head is checked by what PEFT loads, not by logits."""
    peft = pytest.importorskip("peft")
    model = _model(tiny_bert_dir, QA)
    model.save_pretrained(tmp_path / "ckpt")
    assert export_peft(tmp_path / "ckpt", tmp_path / "peft").task_type == "QUESTION_ANS"
    loaded = peft.PeftModel.from_pretrained(
        AutoModelForQuestionAnswering.from_pretrained(tiny_bert_dir), tmp_path / "peft"
    )
    assert torch.equal(loaded.base_model.qa_outputs.weight, model.head.qa_outputs.weight)
    assert torch.equal(loaded.base_model.qa_outputs.bias, model.head.qa_outputs.bias)
    assert torch.equal(
        loaded.prompt_encoder["default"].embedding.weight, model.prefix_encoder.embedding.weight
    )


@needs_peft_prefix
def test_peft_feature_extraction_export_gives_ptuning_states(tiny_bert_dir, tmp_path):
    peft = pytest.importorskip("peft")
    model = _model(tiny_bert_dir, SST)
    model.save_pretrained(tmp_path / "ckpt")
    done = export_peft(tmp_path / "ckpt", tmp_path / "peft")
    assert done.task_type == "FEATURE_EXTRACTION" and done.head == HEAD_WEIGHTS
    theirs = peft.PeftModel.from_pretrained(
        AutoModel.from_pretrained(tiny_bert_dir), tmp_path / "peft"
    ).eval()
    batch = _batch(model)
    with torch.no_grad():
        hidden = theirs(**batch, position_ids=_shifted_back(batch, 4)).last_hidden_state
        assert torch.allclose(model.encode(**batch), hidden, atol=1e-5)
        # the head beside the adapter, on PEFT's states, gives ptuning's logits
        assert torch.allclose(
            model.head.scores(hidden, batch["attention_mask"]), model(**batch).logits, atol=1e-5
        )


def test_peft_prompt_tuning_gives_ptuning_logits(tiny_bert_dir, tmp_path):
    """Prompt tuning goes through the input embeddings: it runs in PEFT on every transformers."""
    peft = pytest.importorskip("peft")
    model = _model(tiny_bert_dir, NER, method="prompt-tuning")
    model.save_pretrained(tmp_path / "ckpt")
    assert export_peft(tmp_path / "ckpt", tmp_path / "peft").peft_type == "PROMPT_TUNING"
    base = AutoModelForTokenClassification.from_pretrained(tiny_bert_dir, num_labels=3)
    theirs = peft.PeftModel.from_pretrained(base, tmp_path / "peft").eval()
    batch = _batch(model)
    with torch.no_grad():
        ours = model(**batch).logits
        got = theirs(**batch).logits[:, 4:]  # PEFT's logits include the P prompt positions
    assert torch.allclose(ours, got, atol=1e-5)


# --- PEFT import ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "prompt"),
    [
        (SST, {}),
        (NER, {}),
        (QA, {}),
        (SST, {"method": "prompt-tuning"}),
        (NER, {"method": "prefix-tuning"}),
    ],
    ids=["classification", "token_classification", "qa", "prompt_tuning", "prefix_tuning_mlp"],
)
def test_export_then_import_gives_the_same_checkpoint(tiny_bert_dir, tmp_path, spec, prompt):
    model = _model(tiny_bert_dir, spec, **prompt)
    model.save_pretrained(tmp_path / "ckpt")
    export_peft(tmp_path / "ckpt", tmp_path / "peft")
    assert (tmp_path / "peft" / TASK_FILE).is_file()
    import_peft(tmp_path / "peft", tmp_path / "back")
    back = PromptModel.from_pretrained(tmp_path / "back")
    assert back.spec == model.spec and back.prompt_config == model.prompt_config
    batch = _batch(model)
    with torch.no_grad():
        before, after = model(**batch), back(**batch)
    names = ("start_logits", "end_logits") if spec is QA else ("logits",)
    for name in names:
        assert torch.allclose(getattr(before, name), getattr(after, name), atol=1e-6)
    assert AutoTokenizer.from_pretrained(tmp_path / "back").vocab == model.tokenizer.vocab


def _peft_adapter(tiny_bert_dir, folder, kind="prefix", **options):
    """An adapter made by PEFT itself, as a PEFT user would (random prompt and classifier)."""
    peft = pytest.importorskip("peft")
    torch.manual_seed(5)
    base = AutoModelForTokenClassification.from_pretrained(tiny_bert_dir, num_labels=3)
    if kind == "prefix":
        config = peft.PrefixTuningConfig(task_type="TOKEN_CLS", num_virtual_tokens=4, **options)
    else:
        config = peft.PromptTuningConfig(task_type="TOKEN_CLS", num_virtual_tokens=4, **options)
    made = peft.get_peft_model(base, config)
    with torch.no_grad():
        made.base_model.classifier.modules_to_save["default"].weight.normal_()
    made.save_pretrained(folder)
    return peft.PeftModel.from_pretrained(
        AutoModelForTokenClassification.from_pretrained(tiny_bert_dir, num_labels=3), folder
    ).eval()


@pytest.mark.parametrize("options", [{}, {"prefix_projection": True}], ids=["table", "mlp"])
def test_import_a_peft_prefix_adapter_with_its_head(tiny_bert_dir, tmp_path, options):
    theirs = _peft_adapter(tiny_bert_dir, tmp_path / "adapter", **options)
    model = import_peft(
        tmp_path / "adapter", tmp_path / "ckpt", backbone=str(tiny_bert_dir), labels=["O", "B-PER", "I-PER"]
    )
    saved = load_file(tmp_path / "adapter" / ADAPTER_WEIGHTS)
    assert torch.equal(model.prefix_encoder.embedding.weight, saved["prompt_embeddings"])
    assert torch.equal(model.head.classifier.weight, theirs.base_model.classifier.weight)
    loaded = PromptModel.from_pretrained(tmp_path / "ckpt")
    assert loaded.spec.labels == ("O", "B-PER", "I-PER") and loaded.spec.task_type == "token_classification"
    if _PEFT_PREFIX_FAILURE is None:  # and it computes what PEFT computes (with ptuning's positions)
        batch = _batch(loaded)
        with torch.no_grad():
            got = theirs(**batch, position_ids=_shifted_back(batch, 4)).logits
            ours = loaded(**batch).logits
        real = batch["attention_mask"].bool()
        assert torch.allclose(ours[real], got[real], atol=1e-5)


def test_import_a_peft_prompt_tuning_adapter_gives_its_logits(tiny_bert_dir, tmp_path):
    theirs = _peft_adapter(tiny_bert_dir, tmp_path / "adapter", kind="prompt")
    model = load_peft_adapter(tmp_path / "adapter", backbone=str(tiny_bert_dir))
    assert model.prompt_config.method == "prompt-tuning" and model.spec.labels == (
        "LABEL_0",
        "LABEL_1",
        "LABEL_2",
    )
    batch = _batch(model)
    with torch.no_grad():
        assert torch.allclose(model(**batch).logits, theirs(**batch).logits[:, 4:], atol=1e-5)


def test_import_refuses_a_sequence_head_unless_prompt_only(tiny_bert_dir, tmp_path):
    peft = pytest.importorskip("peft")
    from transformers import AutoModelForSequenceClassification

    base = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir, num_labels=2)
    made = peft.get_peft_model(base, peft.PrefixTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=4))
    made.save_pretrained(tmp_path / "adapter")
    with pytest.raises(
        CheckpointError, match="the prompt imports, the head does not .*BERT's reads the pooler"
    ):
        load_peft_adapter(tmp_path / "adapter", backbone=str(tiny_bert_dir))
    model = import_peft(
        tmp_path / "adapter", tmp_path / "ckpt", backbone=str(tiny_bert_dir), prompt_only=True
    )
    assert model.spec.labels == ("LABEL_0", "LABEL_1")
    table = load_file(tmp_path / "adapter" / ADAPTER_WEIGHTS)["prompt_embeddings"]
    assert torch.equal(PromptModel.from_pretrained(tmp_path / "ckpt").prefix_encoder.embedding.weight, table)


def test_import_errors_are_one_line(tiny_bert_dir, tmp_path):
    with pytest.raises(CheckpointError, match="is not a PEFT adapter folder .adapter_config.json missing"):
        load_peft_adapter(tmp_path)
    (tmp_path / ADAPTER_CONFIG).write_text(json.dumps({"peft_type": "LORA"}))
    (tmp_path / ADAPTER_WEIGHTS).write_bytes(b"")
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        load_peft_adapter(tmp_path)


def test_export_and_import_commands(tiny_bert_dir, tmp_path, capsys):
    model = _model(tiny_bert_dir, NER)
    model.save_pretrained(tmp_path / "ckpt")
    assert main(["export", "--format", "peft", str(tmp_path / "ckpt"), str(tmp_path / "peft")]) == 0
    assert "PREFIX_TUNING adapter, task type TOKEN_CLS, head in the adapter" in capsys.readouterr().out
    assert main(["import-peft", str(tmp_path / "peft"), str(tmp_path / "back")]) == 0
    assert PromptModel.from_pretrained(tmp_path / "back").spec == NER
    assert main(["export", "--format", "peft", str(tmp_path / "nothing"), str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ptuning export: error: ") and "\n" not in err


# --- hub -----------------------------------------------------------------------------------------


def _hub_cache(root: Path, repo_id: str, checkpoint: Path, revision: str = "0" * 40) -> Path:
    """The hub cache layout huggingface_hub reads: models--user--name/{refs/main, snapshots/<rev>/}."""
    repo = root / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    for path in checkpoint.iterdir():
        (snapshot / path.name).write_bytes(path.read_bytes())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    return snapshot


def test_from_pretrained_reads_a_hub_repo_from_the_cache_offline(tiny_bert_dir, tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    model = _model(tiny_bert_dir, SST)
    model.save_pretrained(tmp_path / "ckpt")
    snapshot = _hub_cache(tmp_path / "cache", "user/sst2-prompt", tmp_path / "ckpt")
    loaded = PromptModel.from_pretrained("user/sst2-prompt", cache_dir=tmp_path / "cache")
    batch = _batch(model)
    with torch.no_grad():
        assert torch.allclose(loaded(**batch).logits, model(**batch).logits, atol=1e-6)
    assert (
        loaded.tokenizer is not None
        and AutoTokenizer.from_pretrained(snapshot).vocab == model.tokenizer.vocab
    )
    with pytest.raises(CheckpointError, match="user/other is not a checkpoint folder here, nor a hub repo"):
        PromptModel.from_pretrained("user/other", cache_dir=tmp_path / "cache")


def test_push_to_hub_uploads_the_checkpoint_folder(tiny_bert_dir, monkeypatch):
    import huggingface_hub

    calls: dict[str, object] = {}

    class FakeApi:
        def __init__(self, token=None):
            calls["token"] = token

        def create_repo(self, repo_id, private=None, exist_ok=False):
            calls["create"] = (repo_id, private, exist_ok)

        def upload_folder(self, *, repo_id, folder_path, commit_message, revision=None, create_pr=False):
            folder = Path(folder_path)
            calls["files"] = sorted(p.name for p in folder.iterdir())
            calls["config"] = json.loads((folder / "ptuning_config.json").read_text())
            calls["card"] = (folder / "README.md").read_text()
            calls["upload"] = (repo_id, commit_message)
            return "https://huggingface.co/user/sst2-prompt/commit/abc"

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    model = _model(tiny_bert_dir, SST)
    url = model.push_to_hub("user/sst2-prompt", private=True, token="t")
    assert url.endswith("/commit/abc")
    assert calls["create"] == ("user/sst2-prompt", True, True) and calls["token"] == "t"
    assert calls["files"] == [
        "README.md",
        "prompt.safetensors",
        "ptuning_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    assert calls["config"]["task"]["labels"] == ["negative", "positive"]
    assert "library_name: ptuning" in calls["card"] and 'from_pretrained("user/sst2-prompt")' in calls["card"]
