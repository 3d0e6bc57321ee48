"""--method handcrafted: template and verbalizer parsing, both scorers against a hand computation,
the label-bias fit, CLI errors, and zero-/few-shot runs end to end (MiniLM and a tiny MLM)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoModelForMaskedLM, AutoTokenizer

from ptuning.cli import main
from ptuning.errors import DataError
from ptuning.handcrafted import (
    HandcraftedScorer,
    Template,
    Verbalizer,
    fit_label_bias,
    is_handcrafted,
    load_handcrafted,
)
from ptuning.tasks import TaskSpec
from ptuning.testing import save_tiny_backbone

SST2 = TaskSpec("sst2", "classification", ("negative", "positive"))
EXAMPLES = [
    {"text": "a gripping, funny film", "label": "positive"},
    {"text": "dull and overlong, with nothing to say", "label": "negative"},
    {"text": "fine", "label": "positive"},
]


@pytest.fixture(scope="module")
def tiny_mlm_dir(tmp_path_factory):
    return save_tiny_backbone("bert", tmp_path_factory.mktemp("tiny-mlm"), mlm=True)


def test_template_and_verbalizer_parse():
    template = Template.parse("{text} ? {mask} , {text_pair}")
    assert template.slots == ("text", "mask", "text_pair") and template.has_pair
    assert template.fill({"text": "A", "text_pair": "B", "mask": "[MASK]"}) == "A ? [MASK] , B"
    assert Template.parse("{{ {text} }} {mask}").fill({"text": "x", "mask": "m"}) == "{ x } m"
    verbalizer = Verbalizer.parse("positive=great|good, negative=terrible", SST2)
    assert verbalizer.labels == ("negative", "positive")  # the task's label order
    assert verbalizer.to_dict() == {"negative": ["terrible"], "positive": ["great", "good"]}


@pytest.mark.parametrize(
    ("template", "needle"),
    [
        ("{text} It was.", "exactly one {mask}"),
        ("{text} {mask} {mask}", "exactly one {mask}"),
        ("It was {mask}.", "{text} slot"),
        ("{text} {label} {mask}", "unknown slot {label}"),
        ("{text} {mask", "expected '}'"),
        ("{text:>5} {mask}", "unknown slot"),
    ],
)
def test_bad_templates(template, needle):
    with pytest.raises(DataError) as info:
        Template.parse(template)
    assert needle in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("verbalizer", "needle"),
    [
        ("negative:terrible,positive=great", "is not label=word"),
        ("negative=,positive=great", "empty word"),
        ("negative=terrible,positive=great,negative=bad", "given twice"),
        ("negative=bad,positive=bad", "both"),
        ("negative=terrible,neutral=meh,positive=great", "'neutral' is not a label of task 'sst2'"),
        ("negative=terrible", "'positive' of task 'sst2' has no word"),
        ("negative=very bad,positive=great", "without spaces"),
    ],
)
def test_bad_verbalizers(verbalizer, needle):
    with pytest.raises(DataError) as info:
        Verbalizer.parse(verbalizer, SST2)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_mlm_scorer_equals_a_hand_computation(tiny_mlm_dir):
    template = Template.parse("{text} It was {mask}.")
    verbalizer = Verbalizer.parse("negative=terrible,positive=great|good", SST2)
    scorer = HandcraftedScorer.from_backbone(str(tiny_mlm_dir), SST2, template, verbalizer)
    assert scorer.scoring == "mlm"
    scores, truncated = scorer.scores(EXAMPLES, batch_size=2)  # two batches, padded

    tokenizer = AutoTokenizer.from_pretrained(tiny_mlm_dir)
    model = AutoModelForMaskedLM.from_pretrained(tiny_mlm_dir).eval()
    word = {w: tokenizer.convert_tokens_to_ids(w) for w in ("terrible", "great", "good")}
    for row, example in zip(scores, EXAMPLES, strict=True):
        batch = tokenizer(f"{example['text']} It was [MASK].", return_tensors="pt")
        with torch.no_grad():
            logits = model(**batch).logits[0]
        position = batch["input_ids"][0].tolist().index(tokenizer.mask_token_id)
        probs = torch.softmax(logits[position].double(), dim=-1)
        expected = [
            torch.log(probs[word["terrible"]]).item(),
            torch.log(probs[word["great"]] + probs[word["good"]]).item(),
        ]
        np.testing.assert_allclose(row, expected, atol=1e-5)
    assert truncated == [False] * 3
    logits, _ = HandcraftedScorer(
        model, tokenizer, SST2, template, verbalizer, scoring="mlm", bias=[0.5, -0.5]
    ).logits(EXAMPLES)
    np.testing.assert_allclose(logits, scores + [0.5, -0.5], atol=1e-5)


def test_similarity_scorer_equals_a_hand_computation(tiny_bert_dir):
    template = Template.parse("{text} It was {mask}.")
    verbalizer = Verbalizer.parse("negative=terrible|awful,positive=great", SST2)
    scorer = HandcraftedScorer.from_backbone(str(tiny_bert_dir), SST2, template, verbalizer)
    assert scorer.scoring == "similarity"  # the tiny BERT folder has no MLM head
    scores, _ = scorer.scores(EXAMPLES, batch_size=2)

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    model = AutoModel.from_pretrained(tiny_bert_dir).eval()

    def embed(text):
        with torch.no_grad():
            hidden = model(**tokenizer(text, return_tensors="pt")).last_hidden_state[0]
        mean = hidden.mean(dim=0)
        return mean / mean.norm()

    anchors = {w: embed(f"It was {w}.") for w in ("terrible", "awful", "great")}
    for row, example in zip(scores, EXAMPLES, strict=True):
        e = embed(f"{example['text']} It was [MASK].")
        negative = (e @ anchors["terrible"] + e @ anchors["awful"]) / 2
        expected = [20 * negative, 20 * (e @ anchors["great"])]
        np.testing.assert_allclose(row, expected, atol=1e-4)


def test_long_text_is_cut_and_the_mask_survives(tiny_mlm_dir):
    spec = TaskSpec("rte", "classification", ("entailment", "not_entailment"))
    template = Template.parse("{text} ? {mask} , {text_pair}")
    verbalizer = Verbalizer.parse("entailment=yes,not_entailment=no", spec)
    scorer = HandcraftedScorer.from_backbone(str(tiny_mlm_dir), spec, template, verbalizer, max_length=24)
    long = {"text": "the cat sat on the mat " * 20, "text_pair": "a short claim", "label": "entailment"}
    short = {"text": "a cat", "text_pair": "a claim", "label": "entailment"}
    encoded = scorer.encode([long, short])
    assert encoded.truncated == [True, False]
    ids = encoded.features[0]["input_ids"]
    assert len(ids) <= 24 and ids.count(scorer.tokenizer.mask_token_id) == 1
    text = scorer.tokenizer.decode(ids)
    assert "a short claim" in text  # the longest slot was cut, the short one kept
    scores, flags = scorer.scores([long, short])
    assert np.isfinite(scores).all() and flags == [True, False]


def test_label_bias_recovers_a_skew():
    rng = np.random.default_rng(0)
    true = rng.normal(size=(4000, 3)) * 2
    labels = [int(rng.choice(3, p=np.exp(z) / np.exp(z).sum())) for z in true]
    skewed = true + np.array([0.0, 2.0, -1.0])  # the scorer prefers label 1's word
    bias = fit_label_bias(skewed, labels, l2=0.0)
    centred = bias - bias.mean()
    np.testing.assert_allclose(centred, -(np.array([0.0, 2.0, -1.0]) - 1 / 3), atol=0.25)
    accuracy = lambda s: np.mean(s.argmax(1) == np.array(labels))  # noqa: E731
    assert accuracy(skewed + bias) > accuracy(skewed) + 0.05


def _cli(capsys, *args):
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err.strip()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--template", "{text} It was."), "exactly one {mask}"),
        (("--template", "{text} {oops} {mask}"), "unknown slot {oops}"),
        (("--verbalizer", "negative=terrible"), "'positive' of task 'sst2' has no word"),
        (("--verbalizer", "bad"), "is not label=word"),
        (("--task", "conll03"), "needs a classification task"),
        (("--task", "stsb"), "needs a classification task"),
    ],
)
def test_cli_refuses_bad_templates_and_verbalizers(capsys, tmp_path, args, needle):
    code, _, err = _cli(
        capsys, "train", "--method", "handcrafted", "--output-dir", str(tmp_path / "out"), "--quiet", *args
    )
    assert code == 2 and len(err.splitlines()) == 1 and needle in err, err
    assert not (tmp_path / "out").exists()  # refused before any loading


def test_cli_refuses_a_template_for_another_method(capsys, tmp_path):
    code, _, err = _cli(
        capsys, "train", "--template", "{text} {mask}", "--output-dir", str(tmp_path), "--quiet"
    )
    assert code == 2 and "--method handcrafted" in err


def test_cli_refuses_a_single_text_template_for_a_pair_task(capsys, tmp_path, shared_data, tiny_bert_dir):
    code, _, err = _cli(
        capsys, "train", "--method", "handcrafted", "--task", "rte", "--backbone", str(tiny_bert_dir),
        "--template", "{text} It was {mask}.", "--verbalizer", "entailment=yes,not_entailment=no",
        "--output-dir", str(tmp_path / "out"), "--quiet",
    )  # fmt: skip
    assert code == 2 and len(err.splitlines()) == 1 and "add a {text_pair} slot" in err, err


def test_minilm_zero_shot_end_to_end(capsys, tmp_path, shared_data):
    out = tmp_path / "sst2-handcrafted"
    code, stdout, _ = _cli(
        capsys, "train", "--method", "handcrafted", "--task", "sst2", "--max-train-samples", "0",
        "--max-eval-samples", "48", "--output-dir", str(out), "--quiet",
    )  # fmt: skip
    assert code == 0, stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["trainable_params"] == 0 and metrics["train_examples"] == 0
    assert metrics["eval_examples"] == 48
    assert metrics["handcrafted"]["scoring"] == "similarity"
    assert (
        metrics["validation"]["accuracy"] > 0.55
    )  # zero-shot beats chance on SST-2 (measured 0.70 on all 872)
    assert sorted(p.name for p in out.iterdir()) == [
        "metrics.json",
        "ptuning_config.json",
        "train_config.json",
    ]
    assert metrics["checkpoint_bytes"] == (out / "ptuning_config.json").stat().st_size < 2000
    assert is_handcrafted(out)

    code, stdout, _ = _cli(capsys, "eval", "--checkpoint", str(out), "--max-eval-samples", "48")
    assert code == 0
    assert json.loads(stdout)["accuracy"] == pytest.approx(metrics["validation"]["accuracy"])

    code, stdout, _ = _cli(
        capsys, "predict", "--checkpoint", str(out), "a gripping, funny film", "dull and overlong"
    )
    answers = [json.loads(line) for line in stdout.splitlines()]
    assert code == 0 and len(answers) == 2
    assert answers[0]["label"] == "positive" and set(answers[0]["probabilities"]) == {"negative", "positive"}

    # the checkpoint is not a prefix: serving and PromptModel refuse it with a message naming it
    code, _, err = _cli(capsys, "serve", "--prompt", str(out), "--port", "0")
    assert code == 2 and "handcrafted" in err


def test_few_shot_fits_a_bias_on_a_tiny_mlm(capsys, tmp_path, shared_data, tiny_mlm_dir):
    out = tmp_path / "rte-handcrafted"
    code, stdout, _ = _cli(
        capsys, "train", "--method", "handcrafted", "--task", "rte", "--backbone", str(tiny_mlm_dir),
        "--max-train-samples", "8", "--max-eval-samples", "16", "--output-dir", str(out), "--quiet",
    )  # fmt: skip
    assert code == 0, stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert (
        metrics["handcrafted"]["scoring"] == "mlm" and metrics["handcrafted"]["calibration"] == "label-bias"
    )
    assert metrics["trainable_params"] == 2 and any(b != 0 for b in metrics["handcrafted"]["bias"])
    scorer = load_handcrafted(out)
    np.testing.assert_allclose(scorer.bias, metrics["handcrafted"]["bias"])
    assert scorer.template.source == "{text} ? {mask} , {text_pair}"


def test_bench_row(tiny_mlm_dir):
    from ptuning.experiments.bench import QUICK, BenchConfig, format_table
    from ptuning.experiments.bench.worker import measure_method

    cfg = BenchConfig(backbone=str(tiny_mlm_dir), threads=1, methods=("handcrafted",), **QUICK)
    row = measure_method(cfg, "handcrafted")
    assert row["status"] == "ok", row.get("trace")
    assert row["scoring"] == "mlm" and row["trainable_params"] == 0 and row["step_ms"] == 0.0
    assert 0 < row["checkpoint_bytes"] < 2000 and row["infer_ms"] > 0 and row["infer_plain_ms"] > 0
    table = format_table({"config": cfg.__dict__, "environment": {"device": "cpu", "dtype": "fp32"},
                          "rows": [row], "ratios_vs_fine_tune": {}, "targets": {}})  # fmt: skip
    assert "| handcrafted | 0 |" in table


@pytest.mark.parametrize("model_type", ["roberta", "electra", "distilbert", "deberta-v2", "mpnet"])
def test_mlm_scoring_on_every_architecture(tmp_path, model_type):
    folder = save_tiny_backbone(model_type, tmp_path / model_type, mlm=True)
    template = Template.parse("{text} It was {mask}.")
    verbalizer = Verbalizer.parse("negative=terrible,positive=great", SST2)
    scorer = HandcraftedScorer.from_backbone(str(folder), SST2, template, verbalizer)
    assert scorer.scoring == "mlm"
    scores, _ = scorer.scores(EXAMPLES[:2])
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForMaskedLM.from_pretrained(folder).eval()
    batch = tokenizer(f"{EXAMPLES[1]['text']} It was [MASK].", return_tensors="pt")
    if model_type in ("distilbert", "roberta", "mpnet"):  # no token types (zeros for roberta: the same)
        batch.pop("token_type_ids", None)
    with torch.no_grad():
        logits = model(**batch).logits[0]
    position = batch["input_ids"][0].tolist().index(tokenizer.mask_token_id)
    log_probs = torch.log_softmax(logits[position].double(), dim=-1)
    words = [tokenizer.convert_tokens_to_ids(w) for w in ("terrible", "great")]
    np.testing.assert_allclose(scores[1], log_probs[words].numpy(), atol=1e-5)


def test_your_own_files_need_a_template_and_verbalizer(capsys, tmp_path, tiny_mlm_dir):
    data = tmp_path / "reviews.csv"
    data.write_text("review,stars\nloved it,good\nawful,bad\nfine film,good\nboring,bad\n")
    common = (
        "train", "--method", "handcrafted", "--backbone", str(tiny_mlm_dir), "--train-file", str(data),
        "--validation-file", str(data), "--text-column", "review", "--label-column", "stars", "--quiet",
        "--output-dir", str(tmp_path / "out"),
    )  # fmt: skip
    code, _, err = _cli(capsys, *common)
    assert code == 2 and "has no default handcrafted prompt; give --template and --verbalizer" in err
    code, _, err = _cli(
        capsys, *common, "--template", "{text} It was {mask}.", "--verbalizer", "good=great,bad=awful"
    )
    assert code == 0, err
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["eval_examples"] == 4 and metrics["handcrafted"]["verbalizer"] == {
        "bad": ["awful"],
        "good": ["great"],
    }
