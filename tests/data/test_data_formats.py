"""The user's own data in every form: table files read through `datasets` (CSV, TSV, JSONL, JSON
arrays, Parquet, Arrow, save_to_disk folders), data passed from Python (lists of dicts, DataFrames,
Datasets, DatasetDicts), `--validation-split`, and the one-line errors of each. Tiny random BERT and
a few steps where a run trains."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import datasets
import pandas as pd
import pyarrow as pa
import pyarrow.feather as feather
import pytest

from ptuning.cli import main
from ptuning.data import TaskData, load_user_task
from ptuning.data.holdout import hold_out
from ptuning.data.load import load_data
from ptuning.errors import DataError
from ptuning.tasks import TaskSpec
from ptuning.training.config import TrainConfig

ROWS = [
    {"text": "a fine film", "label": "pos"},
    {"text": "007", "label": "neg"},  # stays text in every format (a CSV reader could make it 7)
    {"text": "NA", "label": "pos"},  # not a missing value
    {"text": 'said "hi"', "label": "neg"},
]
EXPECTED = [{"text": r["text"], "text_pair": None, "label": r["label"]} for r in ROWS]
TINY = dict(max_steps=2, batch_size=8, prefix_len=4, max_seq_length=32, quiet=True)


def one_line(excinfo: pytest.ExceptionInfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message, message
    return message


def _dataset(rows=ROWS) -> datasets.Dataset:
    return datasets.Dataset.from_list(list(rows))


def write_table(path: Path, rows=ROWS) -> Path:
    """`rows` written in the format of `path`'s suffix (a folder without one: Dataset.save_to_disk)."""
    suffix = path.suffix
    if suffix == ".csv":
        pd.DataFrame(rows).to_csv(path, index=False)
    elif suffix == ".tsv":
        lines = ["\t".join(rows[0])] + ["\t".join(str(v) for v in r.values()) for r in rows]
        path.write_text("\n".join(lines) + "\n")
    elif suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif suffix == ".json":
        path.write_text(json.dumps(rows))
    elif suffix == ".parquet":
        pd.DataFrame(rows).to_parquet(path)
    elif suffix == ".arrow":
        feather.write_feather(pa.Table.from_pylist(list(rows)), str(path))
    else:
        _dataset(rows).save_to_disk(str(path))
    return path


@pytest.mark.parametrize("name", ["t.csv", "t.tsv", "t.jsonl", "t.json", "t.parquet", "t.arrow", "saved"])
def test_every_table_format_reads_the_same_examples(tmp_path: Path, name: str) -> None:
    path = write_table(tmp_path / name)
    data = load_user_task("classification", path, path, name="reviews")
    assert data.spec == TaskSpec("reviews", "classification", ("neg", "pos"), "accuracy")
    assert data.train == EXPECTED and data.validation == EXPECTED


@pytest.mark.parametrize("source", ["list", "DataFrame", "Dataset"])
def test_data_from_python_reads_like_a_file(source: str) -> None:
    data = {"list": list(ROWS), "DataFrame": pd.DataFrame(ROWS), "Dataset": _dataset()}[source]
    task = load_user_task("classification", data, data)
    assert task.train == EXPECTED and task.spec.labels == ("neg", "pos")


def test_a_datasetdict_alone_gives_train_and_validation(tmp_path: Path) -> None:
    features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])}
    )
    train = datasets.Dataset.from_dict({"text": ["a", "b", "c"], "label": [0, 1, 1]}, features=features)
    dev = datasets.Dataset.from_dict({"text": ["d"], "label": [1]}, features=features)
    for held in ("validation", "dev", "test"):
        splits = datasets.DatasetDict({"train": train, held: dev})
        folder = tmp_path / held
        splits.save_to_disk(str(folder))
        for source in (splits, folder):  # in memory, and as a save_to_disk folder
            data = load_user_task("classification", source)
            assert [ex["label"] for ex in data.train] == ["neg", "pos", "pos"]  # class names, not ids
            assert data.validation == [{"text": "d", "text_pair": None, "label": "pos"}]
    # given as the validation source, a DatasetDict gives its validation part
    data = load_user_task("classification", train, splits)
    assert [ex["text"] for ex in data.validation] == ["d"]
    # without one, the message says what to give
    only = tmp_path / "only"
    datasets.DatasetDict({"train": train}).save_to_disk(str(only))
    with pytest.raises(
        DataError, match="no validation part .* --validation-file FILE, or --validation-split F"
    ):
        load_user_task("classification", only)
    with pytest.raises(DataError) as excinfo:
        load_user_task("classification", datasets.DatasetDict({"validation": dev}))
    assert one_line(excinfo) == "train_file (DatasetDict): no 'train' split; splits found: validation"


def test_token_and_qa_rows_from_python() -> None:
    tokens = [{"tokens": ["John", "lives", "here"], "tags": ["B-PER", "O", "O"]}]
    data = load_user_task("token_classification", tokens, tokens)
    assert data.train == [{"tokens": ["John", "lives", "here"], "tags": ["B-PER", "O", "O"]}]
    assert data.spec.labels == ("O", "B-PER")
    qa = [
        {
            "id": 1,
            "question": "Where?",
            "context": "In Paris.",
            "answers": {"text": ["Paris"], "answer_start": [3]},
        }
    ]
    assert load_user_task("question_answering", qa, qa).train[0]["answers"] == {
        "text": ["Paris"],
        "answer_start": [3],
    }
    qa[0]["answers"]["answer_start"] = [0]
    with pytest.raises(DataError, match=r"train_file \(list\), row 0: answer_start 0 does not match"):
        load_user_task("question_answering", qa, qa)


def test_errors_name_the_source_row_and_column(tmp_path: Path) -> None:
    with pytest.raises(DataError) as excinfo:
        load_user_task("classification", pd.DataFrame({"review": ["a"]}), None, label_column="stars")
    assert one_line(excinfo) == (
        "train_file (DataFrame): missing column 'text' (expected text, stars); columns found: review"
    )
    with pytest.raises(DataError) as excinfo:
        load_user_task("classification", [{"text": "a", "label": "x"}, {"text": "b", "label": None}], None)
    assert one_line(excinfo) == "train_file (list), row 1: no value in column 'label'"
    with pytest.raises(DataError) as excinfo:
        load_user_task("classification", pd.DataFrame({"text": ["a", None], "label": ["x", "y"]}), None)
    assert one_line(excinfo) == "train_file (DataFrame), row 1: no value in column 'text'"
    with pytest.raises(DataError) as excinfo:
        load_user_task("classification", [{"text": "a", "label": "x"}, "b"], None)
    assert one_line(excinfo) == "train_file (list), row 1: expected a dict of column -> value, found str"
    with pytest.raises(DataError, match="validation_file: expected a file path, a list of dicts, a pandas"):
        load_user_task("classification", ROWS, {"text": ["a"]})
    parquet = write_table(tmp_path / "p.parquet", [{"text": "a", "y": "b"}])
    with pytest.raises(DataError) as excinfo:
        load_user_task("classification", parquet, parquet)
    assert (
        one_line(excinfo)
        == f"{parquet}: missing column 'label' (expected text, label); columns found: text, y"
    )
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match=r"broken\.parquet: unreadable parquet file"):
        load_user_task("classification", broken, broken)
    folder = tmp_path / "folder"
    folder.mkdir()
    with pytest.raises(DataError, match=r"folder: not a folder written by Dataset.save_to_disk"):
        load_user_task("classification", folder, folder)
    short = tmp_path / "short.csv"
    short.write_text("text,label\na,x\nb\n")
    with pytest.raises(DataError) as excinfo:
        load_user_task("classification", short, short)
    assert one_line(excinfo) == f"{short}, line 3: expected 2 columns (text, label), found 1"
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text('{"text": "a", "label": 1}\n\n{"text": "b", "label": "x"}\n{"text": 3, "label": "y"}\n')
    with pytest.raises(DataError) as excinfo:  # the line counts the blank line
        load_user_task("classification", mixed, mixed)
    assert one_line(excinfo) == f"{mixed}, line 4: expected 'text' to be str, found int 3"
    array = tmp_path / "a.json"
    array.write_text('{"text": "a"}')
    with pytest.raises(DataError, match=r"a\.json: expected a JSON array of objects .* found dict"):
        load_user_task("classification", array, array)


def test_a_lone_surrogate_is_refused_naming_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text('{"text": "fine", "label": "a"}\n{"text": "bad \\ud800 text", "label": "b"}\n')
    with pytest.raises(DataError) as excinfo:
        load_user_task("classification", path, path)
    assert one_line(excinfo).startswith(f"{path}, line 2: 'text' holds the lone surrogate \\ud800")
    with pytest.raises(
        DataError, match=r"train_file \(list\), row 0: 'text' holds the lone surrogate \\udfff"
    ):
        load_user_task("classification", [{"text": "x\udfff", "label": "a"}], None, require_validation=False)


# --------------------------------------------------------------------------------------------------
# --validation-split


def _labelled(n_pos: int, n_neg: int) -> list[dict]:
    rows = [{"text": f"p{i}", "label": "pos"} for i in range(n_pos)] + [
        {"text": f"n{i}", "label": "neg"} for i in range(n_neg)
    ]
    random.Random(1).shuffle(rows)
    return rows


def test_validation_split_is_stratified_seeded_and_sized() -> None:
    cfg = TrainConfig.build(train_file=_labelled(70, 30), validation_split=0.2)
    data = load_data(cfg)
    assert (len(data.train), len(data.validation)) == (80, 20)
    assert Counter(ex["label"] for ex in data.validation) == {"pos": 14, "neg": 6}
    assert {ex["text"] for ex in data.train}.isdisjoint(ex["text"] for ex in data.validation)
    assert (
        data.test is None
        and "20 of 100 training examples held out (stratified by label" in data.spec.notes[-1]
    )
    # the same examples again, and whatever --seed: runs of several seeds select on one split
    again = load_data(TrainConfig.build(train_file=_labelled(70, 30), validation_split=0.2, seed=7))
    assert again.validation == data.validation and again.train == data.train
    # another fraction, another size; a label with one example stays in training
    rare = load_data(TrainConfig.build(train_file=_labelled(9, 1), validation_split=0.5))
    assert Counter(ex["label"] for ex in rare.validation) == {"pos": 4}
    assert Counter(ex["label"] for ex in rare.train) == {"pos": 5, "neg": 1}


def test_validation_split_keeps_the_given_validation_data_for_a_final_score() -> None:
    dev = [{"text": "d", "label": "pos"}]
    data = load_data(
        TrainConfig.build(train_file=_labelled(10, 10), validation_file=dev, validation_split=0.3)
    )
    assert len(data.validation) == 6 and data.test == [{"text": "d", "text_pair": None, "label": "pos"}]
    assert "the 1 validation examples are scored once, after training" in data.spec.notes[-1]


def test_validation_split_holds_out_whole_contexts_for_qa_and_refuses_nothing_held() -> None:
    examples = [
        {
            "id": f"{c}-{q}",
            "question": "q",
            "context": f"context {c}",
            "answers": {"text": [], "answer_start": []},
        }
        for c in range(10)
        for q in range(3)
    ]
    data = hold_out(TaskData(TaskSpec("qa", "question_answering", (), "f1"), examples, []), 0.2, 0)
    assert len(data.validation) == 6  # 2 of 10 contexts, with their 3 questions each
    assert {ex["context"] for ex in data.train}.isdisjoint(ex["context"] for ex in data.validation)
    tiny = TaskData(TaskSpec("t", "classification", ("a", "b"), "accuracy"), _labelled(1, 1), [])
    with pytest.raises(DataError, match=r"--validation-split 0.3 of 2 training examples holds out none"):
        hold_out(tiny, 0.3, 0)
    with pytest.raises(ValueError, match="--validation-split must be a share between 0 and 1"):
        TrainConfig.build(validation_split=1.5)


def test_validation_split_cli_option_and_one_line_errors(tmp_path: Path, capsys) -> None:
    train = write_table(tmp_path / "t.csv")
    assert main(["train", "--train-file", str(train), "--validation-split", "2"]) == 2
    assert "--validation-split must be a share between 0 and 1" in capsys.readouterr().err
    assert main(["train", "--train-file", str(train), "--backbone", "none-such-x"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1  # whatever comes first, one line


# --------------------------------------------------------------------------------------------------
# Through training and evaluation


def _reviews(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    words = ["good", "bad", "film", "plot", "dull", "bright"]
    return [{"review": " ".join(rng.choices(words, k=5)), "stars": ["neg", "pos"][i % 2]} for i in range(n)]


def test_parquet_alone_with_validation_split_trains_and_evaluates(tmp_path, tiny_bert_dir, capsys) -> None:
    train = write_table(tmp_path / "reviews.parquet", _reviews(40, 1))
    out = tmp_path / "out"
    code = main([
        "train", "--backbone", str(tiny_bert_dir), "--train-file", str(train), "--validation-split", "0.25",
        "--text-column", "review", "--label-column", "stars", "--output-dir", str(out),
        "--max-steps", "2", "--batch-size", "8", "--prefix-len", "4", "--quiet",
    ])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    capsys.readouterr()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["validation_split"] == {
        "fraction": 0.25,
        "seed": 0,
        "train_examples": 30,
        "held_out_examples": 10,
    }
    assert metrics["eval_examples"] == 10 and "dev" not in metrics  # no validation data of its own
    assert json.loads((out / "train_config.json").read_text())["validation_split"] == 0.25
    # eval with no data named scores the held-out split, as training did
    assert main(["eval", "--checkpoint", str(out)]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored["examples"] == 10
    assert scored["accuracy"] == pytest.approx(metrics["validation"]["accuracy"], abs=1e-6)
    # and a Parquet file given for evaluation is read with the trained columns
    test = write_table(tmp_path / "test.parquet", _reviews(6, 2))
    assert main(["eval", "--checkpoint", str(out), "--validation-file", str(test)]) == 0
    assert json.loads(capsys.readouterr().out)["examples"] == 6


def test_a_dataframe_run_records_a_description_and_refuses_to_be_rerun_from_it(
    tmp_path, tiny_bert_dir, capsys
):
    from ptuning import train

    out = tmp_path / "out"
    frame = pd.DataFrame(_reviews(24, 3))
    cfg = TrainConfig.build(
        train_file=frame, validation_file=_dataset(_reviews(8, 4)), text_column="review",
        label_column="stars", backbone=str(tiny_bert_dir), output_dir=str(out), **TINY,
    )  # fmt: skip
    assert cfg.task == "custom" and cfg.progress is False
    metrics = train(cfg)
    assert metrics["train_examples"] == 24 and metrics["eval_examples"] == 8
    recorded = json.loads((out / "train_config.json").read_text())
    assert recorded["train_file"].startswith("<in-memory: DataFrame of 24 rows; sha1 ")
    assert recorded["validation_file"].startswith("<in-memory: Dataset of 8 rows; sha1 ")
    # other data gives another description (so another run's checkpoint is not replaced silently)
    other = TrainConfig.build(
        train_file=pd.DataFrame(_reviews(24, 5)), text_column="review", label_column="stars"
    )
    assert other.to_dict()["train_file"] != recorded["train_file"]
    # the settings cannot stand for the data: --config, eval and a resume from the CLI refuse, in one line
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({k: recorded[k] for k in ("train_file", "validation_file", "backbone")}))
    assert main(["train", "--config", str(settings), "--output-dir", str(tmp_path / "again")]) == 2
    err = capsys.readouterr().err
    assert "stands for data passed from Python" in err and len(err.strip().splitlines()) == 1
    assert main(["eval", "--checkpoint", str(out)]) == 2
    assert "trained on data passed from Python" in capsys.readouterr().err
    assert main(["train", "--resume", "--output-dir", str(out), "--backbone", str(tiny_bert_dir)]) == 2
    assert "resume it from Python with the same data" in capsys.readouterr().err
    # from Python with the same data, the run resumes (a step more: a changed setting, said so)
    resumed = train(cfg.updated(resume=True, resume_with_changes=True, max_steps=3))  # 1 step more
    assert resumed["global_steps"] == 3


def test_builtin_task_with_validation_split_scores_dev_once(tmp_path, tiny_bert_dir, shared_data) -> None:
    from ptuning import train

    cfg = TrainConfig.build(
        task="rte", data_dir=str(shared_data), validation_split=0.1, max_eval_samples=16,
        backbone=str(tiny_bert_dir), output_dir=str(tmp_path / "rte"), **TINY,
    )  # fmt: skip
    metrics = train(cfg)
    split = metrics["validation_split"]
    assert split["train_examples"] + split["held_out_examples"] == 2490  # RTE train
    assert metrics["eval_examples"] == 16 and "accuracy" in metrics["dev"]
    assert any("277 validation examples are scored once" in note for note in metrics["notes"])
