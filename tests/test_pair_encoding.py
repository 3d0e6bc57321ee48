"""Text pairs encoded separately (`PromptConfig.pair_encoding` "separate", Sentence-BERT): each text
through the same frozen backbone and prompt, pooled to u and v, a linear head on [u, v, |u-v|, u*v]."""

from __future__ import annotations

import json
import random
import shutil

import numpy as np
import pytest
import torch

from ptuning.checkpoint import CONFIG_NAME, Checkpoint
from ptuning.core.config import PromptConfig
from ptuning.data import encode, make_collator
from ptuning.data.features import Collator
from ptuning.errors import CheckpointError, DataError, UserError
from ptuning.heads import PairClassificationHead, PairRegressionHead, pair_features, pool
from ptuning.inference import Predictor
from ptuning.model import PromptModel
from ptuning.serving import MultiTaskPredictor
from ptuning.tasks import TaskSpec
from ptuning.testing import tiny_backbone

SPEC = TaskSpec("pairs", "classification", labels=("different", "same"))
REGRESSION = TaskSpec("scores", "regression")
PAIRS = [
    {"text": "a gripping , funny film", "text_pair": "a gripping , funny film", "label": "same"},
    {"text": "the river runs past the old stone mill", "text_pair": "dull", "label": "different"},
    {"text": "music", "text_pair": "quiet music in the garden at night", "label": "different"},
]


def _separate(**kwargs) -> PromptConfig:
    return PromptConfig(prefix_len=4, pair_encoding="separate", **kwargs)


def _tokenizer(tiny_bert_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_bert_dir))


def _model(tiny_bert_dir, spec=SPEC, config=None) -> PromptModel:
    from ptuning.core.backbones import load_backbone

    backbone, tokenizer = load_backbone(str(tiny_bert_dir))
    torch.manual_seed(0)
    model = PromptModel(backbone, spec, config or _separate(), backbone_name=str(tiny_bert_dir))
    with torch.no_grad():  # a head far from zero, so that the answers differ by input
        for param in model.head.parameters():
            param.normal_(0, 0.5)
    model.tokenizer = tokenizer
    return model.eval()


# --- the setting --------------------------------------------------------------------------------


def test_the_setting_defaults_to_joint_and_refuses_other_values():
    assert PromptConfig().pair_encoding == "joint"
    assert PromptConfig.from_dict({"method": "p-tuning-v2"}).pair_encoding == "joint"  # older configs
    with pytest.raises(ValueError, match="pair_encoding must be one of joint, separate"):
        PromptConfig(pair_encoding="siamese")


@pytest.mark.parametrize(
    "spec",
    [
        TaskSpec("ner", "token_classification", labels=("O", "B-X")),
        TaskSpec("qa", "question_answering"),
        TaskSpec("copa", "multiple_choice", labels=("0", "1"), num_choices=2),
    ],
)
def test_heads_other_than_sentence_level_refuse_it(spec):
    from ptuning.core.config import SEPARATE_PAIR_TASK_TYPES
    from ptuning.heads import PAIR_HEADS

    assert tuple(PAIR_HEADS) == SEPARATE_PAIR_TASK_TYPES  # one pair head per type the check lets through
    with pytest.raises(ValueError, match="applies to text-pair classification and regression tasks, not"):
        PromptModel(tiny_backbone("bert"), spec, _separate())
    with pytest.raises(ValueError, match="applies to text-pair classification and regression tasks, not"):
        encode(spec, [], None, 64, pair_encoding="separate")


# --- features -----------------------------------------------------------------------------------


def test_features_hold_each_text_alone_and_the_collator_pads_each_side(tiny_bert_dir):
    tokenizer = _tokenizer(tiny_bert_dir)
    features = encode(SPEC, PAIRS, tokenizer, 64, pair_encoding="separate")
    for example, feature in zip(PAIRS, features, strict=True):
        assert feature["input_ids"] == tokenizer(example["text"])["input_ids"]
        assert feature["pair_input_ids"] == tokenizer(example["text_pair"])["input_ids"]
        assert feature["pair_attention_mask"] == [1] * len(feature["pair_input_ids"])
    batch = make_collator(SPEC, tokenizer)(features)
    longest = max(len(f["input_ids"]) for f in features)
    pair_longest = max(len(f["pair_input_ids"]) for f in features)
    assert batch["input_ids"].shape == (3, longest) and batch["pair_input_ids"].shape == (3, pair_longest)
    assert batch["pair_attention_mask"].sum(1).tolist() == [len(f["pair_input_ids"]) for f in features]
    assert batch["labels"].tolist() == [1, 0, 0]
    # each text is cut to max_length on its own
    cut = encode(SPEC, PAIRS, tokenizer, 8, pair_encoding="separate")
    assert max(len(f["input_ids"]) for f in cut) == 8 and len(cut[2]["pair_input_ids"]) == 8


def test_an_example_without_its_pair_is_refused(tiny_bert_dir):
    with pytest.raises(DataError, match="example 1 has no text_pair: pair_encoding 'separate'"):
        encode(
            SPEC,
            [PAIRS[0], {"text": "alone", "label": "same"}],
            _tokenizer(tiny_bert_dir),
            64,
            pair_encoding="separate",
        )


# --- the model ----------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["p-tuning-v2", "prefix-tuning", "prompt-tuning", "fine-tune"])
def test_logits_are_those_of_each_text_encoded_alone_with_the_same_prompt(tiny_bert_dir, method):
    model = _model(tiny_bert_dir, config=_separate(method=method))
    hidden = model.geometry.hidden_size
    assert isinstance(model.head, PairClassificationHead)
    assert model.head.classifier.weight.shape == (2, 4 * hidden)
    tokenizer = model.tokenizer
    batch = make_collator(SPEC, tokenizer)(encode(SPEC, PAIRS, tokenizer, 64, pair_encoding="separate"))
    with torch.no_grad():
        out = model(**batch)
        assert out.logits.shape == (3, 2) and out.loss is not None
        for i, example in enumerate(PAIRS):  # one pair at a time, each text unpadded, through encode
            pooled = []
            for text in (example["text"], example["text_pair"]):
                ids = tokenizer(text, return_tensors="pt")
                states = model.encode(ids["input_ids"], ids["attention_mask"], ids.get("token_type_ids"))
                pooled.append(pool(states, ids["attention_mask"], "mean"))  # (1, H)
            want = model.head.classifier(pair_features(*pooled))
            assert torch.allclose(out.logits[i], want[0], atol=1e-5), (method, i)


def test_regression_head_reads_four_hidden_widths_and_gives_one_score(tiny_bert_dir):
    model = _model(tiny_bert_dir, spec=REGRESSION)
    assert isinstance(model.head, PairRegressionHead)
    examples = [{**ex, "label": float(i)} for i, ex in enumerate(PAIRS)]
    batch = make_collator(REGRESSION, model.tokenizer)(
        encode(REGRESSION, examples, model.tokenizer, 64, pair_encoding="separate")
    )
    with torch.no_grad():
        out = model(**batch)
    assert out.logits.shape == (3,) and out.loss.ndim == 0


def test_one_backbone_pass_holds_both_texts(tiny_bert_dir):
    model = _model(tiny_bert_dir)
    batch = make_collator(SPEC, model.tokenizer)(
        encode(SPEC, PAIRS, model.tokenizer, 64, pair_encoding="separate")
    )
    rows = []
    handle = model.backbone.register_forward_hook(
        lambda m, args, kw, out: rows.append(kw["input_ids"].shape[0]), with_kwargs=True
    )
    with torch.no_grad():
        model(**batch)
    handle.remove()
    assert rows == [6]  # 2B rows, one call, one prefix


def test_inputs_without_the_second_text_are_refused(tiny_bert_dir):
    model = _model(tiny_bert_dir)
    ids = model.tokenizer(["a", "b"], ["c", "d"], return_tensors="pt")  # what a pipeline passes
    with pytest.raises(DataError, match="encodes the two texts of a pair separately"):
        model(**ids)


def test_the_pipeline_helper_reads_each_text_apart_and_answers_as_the_predictor(tiny_bert_dir):
    from ptuning import Predictor
    from ptuning.interop.pipeline import prompt_pipeline

    model = _model(tiny_bert_dir)
    pipe = prompt_pipeline(model)
    pairs = [{"text": ex["text"], "text_pair": ex["text_pair"]} for ex in PAIRS]
    expected = Predictor(model).predict(pairs)
    for pair, ours in zip(pairs, expected, strict=True):
        answer = pipe(pair)[0] if isinstance(pipe(pair), list) else pipe(pair)
        assert answer["label"] == ours["label"]
        assert answer["score"] == pytest.approx(ours["probabilities"][ours["label"]], abs=1e-5)
    with pytest.raises(ValueError, match="this model reads text pairs"):
        pipe("one text alone")


def test_handcrafted_refuses_it():
    from ptuning.handcrafted.run import train_handcrafted
    from ptuning.training.config import TrainConfig

    cfg = TrainConfig.build(method="handcrafted", task="rte", pair_encoding="separate")
    with pytest.raises(UserError, match="--pair-encoding separate is for a prompt model's head"):
        train_handcrafted(cfg)


# --- checkpoints --------------------------------------------------------------------------------


def test_save_and_load_give_the_same_logits_and_the_schema_checks_it(tiny_bert_dir, tmp_path):
    model = _model(tiny_bert_dir)
    batch = make_collator(SPEC, model.tokenizer)(
        encode(SPEC, PAIRS, model.tokenizer, 64, pair_encoding="separate")
    )
    folder = tmp_path / "ckpt"
    model.save_pretrained(folder)
    config = json.loads((folder / CONFIG_NAME).read_text())
    assert config["prompt_config"]["pair_encoding"] == "separate"
    loaded = PromptModel.from_pretrained(folder)
    assert loaded.prompt_config.pair_encoding == "separate"
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, loaded(**batch).logits)

    def broken(**change):
        bad = json.loads(json.dumps(config))
        bad["prompt_config"].update(change.pop("prompt", {}))
        bad["task"].update(change)
        (folder / CONFIG_NAME).write_text(json.dumps(bad))

    broken(prompt={"pair_encoding": "siamese"})
    with pytest.raises(CheckpointError, match="prompt_config.pair_encoding"):
        Checkpoint.read(folder)
    broken(task_type="token_classification")
    with pytest.raises(CheckpointError, match="pair_encoding 'separate' applies to text-pair"):
        Checkpoint.read(folder)
    broken(prompt={"pair_encoding": "joint"})  # the head is 4H wide: not a joint checkpoint's
    with pytest.raises(CheckpointError, match="head.classifier.weight"):
        PromptModel.from_pretrained(folder)


def test_a_checkpoint_without_the_field_loads_as_joint(demo_checkpoints, tmp_path):
    folder = tmp_path / "old"
    shutil.copytree(demo_checkpoints["sentiment"], folder)
    config = json.loads((folder / CONFIG_NAME).read_text())
    del config["prompt_config"]["pair_encoding"]  # as written before the setting existed
    (folder / CONFIG_NAME).write_text(json.dumps(config))
    model = PromptModel.from_pretrained(folder)
    assert model.prompt_config.pair_encoding == "joint"
    assert model.head.classifier.weight.shape[1] == model.geometry.hidden_size


# --- predict and serve --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pair_checkpoints(tiny_bert_dir, tmp_path_factory):
    """A separate-encoding deep prompt, a separate prompt-tuning one, and a joint one, on one backbone."""
    folder = tmp_path_factory.mktemp("pairs")
    paths = {}
    for name, config in (
        ("apart", _separate()),
        ("apart-input", _separate(method="prompt-tuning")),
        ("joint", PromptConfig(prefix_len=6)),
    ):
        model = _model(tiny_bert_dir, config=config)
        if model.input_prompt is not None:
            with torch.no_grad():
                model.input_prompt.embedding.add_(torch.randn_like(model.input_prompt.embedding))
        paths[name] = folder / name
        model.save_pretrained(paths[name])
    return paths


def test_predict_answers_a_pair_checkpoint(pair_checkpoints):
    predictor = Predictor.from_checkpoint(pair_checkpoints["apart"], max_length=16)
    inputs = [{"text": ex["text"], "text_pair": ex["text_pair"]} for ex in PAIRS] + [
        {"text": "one two " * 20, "text_pair": "x"}
    ]
    answers = predictor.predict(inputs)
    assert [a.get("truncated", False) for a in answers] == [False, False, False, True]
    model, tokenizer = predictor.model, predictor.tokenizer
    batch = make_collator(SPEC, tokenizer)(encode(SPEC, PAIRS, tokenizer, 16, pair_encoding="separate"))
    with torch.no_grad():
        probs = torch.softmax(model(**batch).logits, -1)
    for answer, row in zip(answers, probs, strict=False):
        assert answer["probabilities"]["same"] == pytest.approx(float(row[1]), abs=1e-5)
    with pytest.raises(DataError):
        predictor.predict(["only one text"])


def test_serving_mixes_separate_pairs_with_other_tasks_and_answers_as_predict(pair_checkpoints):
    served = MultiTaskPredictor.from_checkpoints(pair_checkpoints, max_length=32, max_batch_size=5)
    inputs = [{"text": ex["text"], "text_pair": ex["text_pair"]} for ex in PAIRS]
    passes = []
    forward = served._forward
    served._forward = lambda rows, out: (passes.append(len(rows)), forward(rows, out))
    answers = served.predict_many([(name, inputs) for name in ("apart", "joint", "apart-input")])
    # deep rows of both tasks share passes (6 + 3 rows in passes of at most 5); the input prompt's own
    assert sum(passes) == 6 + 3 + 6 and max(passes) <= 5
    for name, got in zip(("apart", "joint", "apart-input"), answers, strict=True):
        alone = Predictor(served.task(name).model, served.tokenizer, max_length=32).predict(inputs)
        for g, w in zip(got, alone, strict=True):
            assert g["label"] == w["label"]
            for label, p in w["probabilities"].items():
                assert g["probabilities"][label] == pytest.approx(p, abs=1e-5), name
    # different answers for different pairs: the head reads each pair's own rows
    apart = [a["probabilities"]["same"] for a in answers[0]]
    assert len({round(p, 4) for p in apart}) == 3
    assert served.prepare("apart", inputs).num_rows == 6


# --- training -----------------------------------------------------------------------------------

WORDS = ["apple", "river", "stone", "cloud", "table", "music", "garden", "window", "paper", "light"]


def _toy_pairs(n: int, seed: int) -> list[dict]:
    """Label "same" when the second text is the first one's words, else another random sentence."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = [rng.choice(WORDS) for _ in range(5)]
        same = rng.random() < 0.5
        other = words if same else [rng.choice(WORDS) for _ in range(5)]
        out.append(
            {"text": " ".join(words), "text_pair": " ".join(other), "label": "same" if same else "different"}
        )
    return out


def test_a_tiny_run_learns_a_pair_task(tiny_bert_dir):
    model = _model(tiny_bert_dir, config=_separate(prompt_dropout=0.0, head_dropout=0.0))
    with torch.no_grad():
        model.head.classifier.weight.zero_()
    collate = make_collator(SPEC, model.tokenizer)
    features = encode(SPEC, _toy_pairs(64, 0), model.tokenizer, 32, pair_encoding="separate")
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-2)
    model.train()
    losses = []
    for _ in range(6):
        for start in range(0, len(features), 16):
            loss = model(**collate(features[start : start + 16])).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    first, last = np.mean(losses[:4]), np.mean(losses[-4:])
    assert last < 0.5 * first, (first, last)


def test_train_eval_and_predict_through_the_library(tiny_bert_dir, tmp_path):
    import ptuning
    from ptuning.training.config import TrainConfig

    for split, n, seed in (("train", 96, 0), ("dev", 32, 1)):
        rows = _toy_pairs(n, seed)
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "run"
    cfg = TrainConfig.build(
        train_file=str(tmp_path / "train.jsonl"),
        validation_file=str(tmp_path / "dev.jsonl"),
        text_pair_column="text_pair",
        backbone=str(tiny_bert_dir),
        pair_encoding="separate",
        epochs=4,
        lr=2e-2,
        prefix_len=4,
        output_dir=str(out),
        report_to="none",
        progress=False,
    )
    metrics = ptuning.train(cfg)
    assert metrics["validation"]["accuracy"] >= 0.8, metrics["validation"]
    assert json.loads((out / CONFIG_NAME).read_text())["prompt_config"]["pair_encoding"] == "separate"
    scored = ptuning.evaluate(out, validation_file=str(tmp_path / "dev.jsonl"))
    assert scored["accuracy"] == pytest.approx(metrics["validation"]["accuracy"])
    answers = Predictor.from_checkpoint(out).predict([{"text": "apple river", "text_pair": "apple river"}])
    assert answers[0]["label"] in ("same", "different")


def test_the_shallow_cache_holds_both_texts_of_a_pair():
    from ptuning.core.shallow_cache import attach_shallow_cache

    torch.manual_seed(0)
    config = _separate(prompt_layers=1, prompt_dropout=0.0, head_dropout=0.0)
    model = PromptModel(tiny_backbone("bert"), SPEC, config)
    gen = torch.Generator().manual_seed(0)
    features = []
    for i in range(8):
        a, b = (torch.randint(200, 999, (int(n),), generator=gen).tolist() for n in (3 + i, 9 - i))
        features.append(
            {
                "input_ids": a,
                "attention_mask": [1] * len(a),
                "pair_input_ids": b,
                "pair_attention_mask": [1] * len(b),
                "labels": i % 2,
            }
        )
    collate = Collator(task_type="classification", pad_token_id=0)
    batch = collate(features)
    model.train()
    uncached = model(**batch).loss
    cache = attach_shallow_cache(model, features, collate)
    assert len(cache.entries) == 16
    cached = model(**batch).loss
    assert cache.hits == 16 and cache.misses == 0
    assert torch.allclose(cached, uncached, atol=1e-5)


def test_a_peft_export_and_import_keep_the_pair_head(pair_checkpoints, tmp_path):
    from ptuning.interop.peft import export_peft, import_peft

    export_peft(pair_checkpoints["apart"], tmp_path / "peft")
    back = import_peft(tmp_path / "peft", tmp_path / "back")
    original = PromptModel.from_pretrained(pair_checkpoints["apart"])
    assert back.prompt_config.pair_encoding == "separate"
    batch = make_collator(SPEC, original.tokenizer)(
        encode(SPEC, PAIRS, original.tokenizer, 64, pair_encoding="separate")
    )
    with torch.no_grad():
        assert torch.allclose(back.eval()(**batch).logits, original(**batch).logits, atol=1e-6)
