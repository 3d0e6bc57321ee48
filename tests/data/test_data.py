"""Task loading: built-in files (counts against the data README), the hub path, user files, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ptuning.data import KNOWN_TASKS, get_task_spec, load_task, load_user_task, subsample
from ptuning.errors import DataError
from ptuning.tasks import TaskSpec
from tests.helpers import SHARED_DATA, needs_data

# Examples per split, from ../shared/data/README.md (QNLI, BoolQ, SQuAD: the deterministic split of the
# only offline split; CoLA, STS-B: the file line counts, as the README defers to MANIFEST).
EXPECTED_COUNTS = {
    "sst2": (67_349, 872),
    "rte": (2_490, 277),
    "mrpc": (3_668, 408),  # official count: rebuilt from msr_paraphrase_train.txt minus dev_ids.tsv
    "cola": (8_551, 1_043),
    "stsb": (5_749, 1_500),
    "qnli": (4_371, 1_092),  # 5,463 dev examples, every 5th to validation
    "boolq": (2_616, 654),  # 3,270 val examples, every 5th to validation
    "cb": (250, 56),
    "copa": (400, 100),
    "superglue-rte": (2_490, 277),
    "wsc": (554, 104),
    "multirc": (27_243, 4_848),  # one example per answer
    "conll03": (14_041, 3_250),
    "conll04": (922, 231),
    "squad": (8_595, 1_975),  # 10,570 questions; 9 of 48 articles to validation
}
# Built-in tasks without files in ../shared/data (tested on the hand-made files of tests/data).
NOT_IN_SHARED_DATA = ("wic", "squad2", "conll05")


def one_line_error(excinfo: pytest.ExceptionInfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


# --------------------------------------------------------------------------------------------------
# Built-in tasks


def test_registry_names_and_metrics() -> None:
    assert set(KNOWN_TASKS) == set(EXPECTED_COUNTS) | set(NOT_IN_SHARED_DATA)
    metrics = {name: get_task_spec(name).metric for name in KNOWN_TASKS}
    assert metrics == {
        "sst2": "accuracy",
        "rte": "accuracy",
        "mrpc": "f1",
        "cola": "matthews_correlation",
        "stsb": "pearson",
        "qnli": "accuracy",
        "boolq": "accuracy",
        "cb": "accuracy",
        "copa": "accuracy",
        "superglue-rte": "accuracy",
        "wsc": "accuracy",
        "multirc": "f1a",
        "conll03": "f1",
        "conll04": "f1",
        "squad": "f1",
        "wic": "accuracy",
        "squad2": "f1",
        "conll05": "f1",
    }
    copa = get_task_spec("COPA")
    assert (copa.task_type, copa.labels, copa.num_choices) == ("multiple_choice", ("0", "1"), 2)


def test_unknown_task_lists_known_ones() -> None:
    with pytest.raises(DataError) as excinfo:
        get_task_spec("mnli")
    message = one_line_error(excinfo)
    assert "'mnli'" in message and "sst2" in message and "squad" in message


@needs_data
@pytest.mark.parametrize("name", list(EXPECTED_COUNTS))
def test_counts_match_readme(tasks, name: str) -> None:
    data = tasks(name)
    assert (len(data.train), len(data.validation)) == EXPECTED_COUNTS[name]
    assert data.spec.name == name


@needs_data
@pytest.mark.parametrize(
    ("name", "labels"),
    [
        ("sst2", {"negative", "positive"}),
        ("rte", {"entailment", "not_entailment"}),
        ("mrpc", {"not_equivalent", "equivalent"}),
        ("cola", {"unacceptable", "acceptable"}),
        ("qnli", {"entailment", "not_entailment"}),
        ("boolq", {"False", "True"}),
        ("cb", {"entailment", "contradiction", "neutral"}),
        ("superglue-rte", {"entailment", "not_entailment"}),
        ("wsc", {"False", "True"}),
        ("multirc", {"False", "True"}),
    ],
)
def test_classification_label_sets(tasks, name: str, labels: set[str]) -> None:
    data = tasks(name)
    assert set(data.spec.labels) == labels
    for split in (data.train, data.validation):
        assert {ex["label"] for ex in split} == labels
        assert all(isinstance(ex["text"], str) and ex["text"] for ex in split)


@needs_data
def test_glue_examples(tasks) -> None:
    sst2 = tasks("sst2")
    assert sst2.train[0] == {
        "text": "hide new secretions from the parental units",
        "text_pair": None,
        "label": "negative",
    }
    rte = tasks("rte").validation[0]
    assert rte["text_pair"] == "Christopher Reeve had an accident." and rte["label"] == "not_entailment"
    mrpc = tasks("mrpc")
    # the row that this copy of train.tsv lost is back (rebuilt from the original file)
    assert any(ex["text"].startswith("Officials at Brandeis said") for ex in mrpc.train)
    assert mrpc.train[0]["label"] == "equivalent" and mrpc.train[1]["label"] == "not_equivalent"
    cola = tasks("cola").train[0]
    assert cola == {
        "text": "Our friends won't buy this analysis, let alone the next one we propose.",
        "text_pair": None,
        "label": "acceptable",
    }
    stsb = tasks("stsb")
    assert (
        stsb.spec.task_type == "regression"
        and stsb.train[0]["label"] == 5.0
        and stsb.train[1]["label"] == 3.8
    )
    assert all(0.0 <= ex["label"] <= 5.0 for ex in stsb.train + stsb.validation)


@needs_data
@pytest.mark.parametrize(("name", "total"), [("qnli", 5_463), ("boolq", 3_270)])
def test_split_of_dev_only_tasks_by_index(tasks, name: str, total: int) -> None:
    data = tasks(name)
    assert len(data.train) + len(data.validation) == total
    (note,) = data.spec.notes
    assert "index % 5 == 4" in note and f"{len(data.validation):,}" in note and f"{len(data.train):,}" in note
    # deterministic: a second load gives the same split
    again = load_task(name, SHARED_DATA)
    assert again.validation == data.validation and again.train[:50] == data.train[:50]


@needs_data
def test_squad_split_by_article(tasks) -> None:
    data = tasks("squad")
    assert len(data.train) + len(data.validation) == 10_570
    (note,) = data.spec.notes
    assert "by article" in note and "9 of 48" in note
    train_contexts = {ex["context"] for ex in data.train}
    assert not train_contexts & {ex["context"] for ex in data.validation}
    first = data.train[0]
    assert first["id"] == "56be4db0acb8001400a502ec"
    assert first["answers"] == {"text": ["Denver Broncos"] * 3, "answer_start": [177] * 3}
    for ex in data.train[:500] + data.validation[:500]:
        for text, start in zip(ex["answers"]["text"], ex["answers"]["answer_start"], strict=True):
            assert ex["context"][start : start + len(text)] == text


@needs_data
def test_superglue_formats(tasks) -> None:
    copa = tasks("copa")
    assert copa.train[0] == {
        "context": "My body cast a shadow over the grass. What was the CAUSE of this?",
        "choices": ["The sun was rising.", "The grass was cut."],
        "label": 0,
    }
    assert copa.validation[0]["context"] == "The man turned on the faucet. What happened as a RESULT?"
    assert {ex["label"] for ex in copa.train} == {0, 1}
    wsc = tasks("wsc").train[0]
    assert wsc["text_pair"] == "He refers to Mark" and wsc["label"] == "False"
    assert wsc["text"].startswith("Mark told Pete many lies")
    multirc = tasks("multirc")
    first = multirc.validation[0]
    assert (
        first["group"] == "0-0"
        and first["text_pair"].endswith("pick it up? No")
        and first["label"] == "False"
    )
    assert len({ex["group"] for ex in multirc.train}) == 5_131
    assert len({ex["group"] for ex in multirc.validation}) == 953
    boolq = tasks("boolq").train[0]
    assert boolq["text"] == "does ethanol take more energy make that produces" and boolq["label"] == "False"
    assert tasks("cb").spec.labels == ("entailment", "contradiction", "neutral")


@needs_data
def test_conll03(tasks) -> None:
    data = tasks("conll03")
    assert data.train[0] == {
        "tokens": ["EU", "rejects", "German", "call", "to", "boycott", "British", "lamb", "."],
        "tags": ["B-ORG", "O", "B-MISC", "O", "O", "O", "B-MISC", "O", "O"],
    }
    assert not any(ex["tokens"][0] == "-DOCSTART-" for ex in data.train)
    assert {t for ex in data.train for t in ex["tags"]} == set(data.spec.labels)
    assert data.spec.labels[0] == "O"


@needs_data
def test_conll04_bilou_is_converted_to_iob2(tasks) -> None:
    data = tasks("conll04")
    first = data.train[0]
    # the file's tags: ... U-Loc ... U-Loc B-Org I-Org L-Org O O B-Other L-Other B-Other I-Other L-Other
    assert first["tags"][4] == "B-Loc" and first["tokens"][4] == "U.S."
    assert first["tags"][9:13] == ["B-Loc", "B-Org", "I-Org", "I-Org"]
    assert first["tags"][15:] == ["B-Other", "I-Other", "B-Other", "I-Other", "I-Other"]
    assert {t for ex in data.train for t in ex["tags"]} == set(data.spec.labels)


def test_subsample_is_deterministic() -> None:
    items = [{"i": i} for i in range(100)]
    first = subsample(items, 10, seed=3)
    assert first == subsample(items, 10, seed=3)
    assert first != subsample(items, 10, seed=4)
    assert len(first) == 10 and [x["i"] for x in first] == sorted(x["i"] for x in first)
    assert subsample(items, None, seed=0) == items and subsample(items, 500, seed=0) == items


# --------------------------------------------------------------------------------------------------
# Data location: data_dir, PTUNING_DATA, optional train files, the hub


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_missing_builtin_files_say_where_to_put_them(tmp_path: Path) -> None:
    with pytest.raises(DataError) as excinfo:
        load_task("sst2", tmp_path)
    message = one_line_error(excinfo)
    assert f"missing {tmp_path}/glue/SST-2/train.tsv" in message
    assert (
        f"put SST-2 as {tmp_path}/glue/SST-2/train.tsv and dev.tsv, or set PTUNING_DATA / --data-dir"
        in message
    )


def test_data_dir_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "glue/SST-2/train.tsv", "sentence\tlabel\ngood film\t1\nbad film\t0\n")
    write(tmp_path / "glue/SST-2/dev.tsv", "sentence\tlabel\nfine film\t1\n")
    monkeypatch.setenv("PTUNING_DATA", str(tmp_path))
    data = load_task("sst2")
    assert [ex["label"] for ex in data.train] == ["positive", "negative"] and len(data.validation) == 1


def test_real_train_file_is_used_when_present(tmp_path: Path) -> None:
    header = "index\tquestion\tsentence\tlabel\n"
    write(tmp_path / "glue/QNLI/train.tsv", header + "0\tWho?\tHe did.\tentailment\n")
    write(
        tmp_path / "glue/QNLI/dev.tsv",
        header + "0\tWhat?\tNothing.\tnot_entailment\n1\tWhy?\tBecause.\tentailment\n",
    )
    data = load_task("qnli", tmp_path)
    assert (len(data.train), len(data.validation), data.spec.notes) == (1, 2, ())


@needs_data
def test_mrpc_without_original_files_reads_train_tsv(tmp_path: Path) -> None:
    folder = tmp_path / "glue" / "MRPC"
    folder.mkdir(parents=True)
    for name in ("train.tsv", "dev.tsv"):
        shutil.copy(SHARED_DATA / "glue" / "MRPC" / name, folder / name)
    data = load_task("mrpc", tmp_path)
    assert (len(data.train), len(data.validation)) == (3_667, 408)  # this copy of train.tsv lacks a row


class FakeHub:
    """Stands in for `datasets.load_dataset`: returns small splits built in memory, or raises."""

    def __init__(self, splits=None, error: Exception | None = None) -> None:
        self.splits, self.error, self.calls = splits, error, []

    def __call__(self, path, name=None, revision=None, **kwargs):
        self.calls.append((path, name, revision))
        if self.error is not None:
            raise self.error
        return self.splits


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch):
    """No data directory and a hub that looks reachable; returns a setter for the fake `load_dataset`."""
    import datasets

    monkeypatch.delenv("PTUNING_DATA", raising=False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)

    def install(fake: FakeHub) -> FakeHub:
        monkeypatch.setattr(datasets, "load_dataset", fake)
        return fake

    return install


def test_hub_rows_are_converted_with_class_names(online) -> None:
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    features = Features({"sentence": Value("string"), "label": ClassLabel(names=["negative", "positive"])})
    splits = DatasetDict(
        train=Dataset.from_dict({"sentence": ["good", "bad", "fine"], "label": [1, 0, 1]}, features=features),
        validation=Dataset.from_dict({"sentence": ["meh"], "label": [0]}, features=features),
    )
    fake = online(FakeHub(splits))
    data = load_task("sst2")
    assert fake.calls == [("nyu-mll/glue", "sst2", None)]
    assert [ex["label"] for ex in data.train] == ["positive", "negative", "positive"]
    assert data.validation == [{"text": "meh", "text_pair": None, "label": "negative"}]


def test_hub_token_classification_and_multirc(online) -> None:
    from datasets import ClassLabel, Dataset, DatasetDict, Features, List, Value

    names = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
    features = Features({"tokens": List(Value("string")), "ner_tags": List(ClassLabel(names=names))})
    split = Dataset.from_dict(
        {"tokens": [["John", "Smith", "in", "Paris"]], "ner_tags": [[1, 2, 0, 5]]}, features=features
    )
    online(FakeHub(DatasetDict(train=split, validation=split)))
    data = load_task("conll03")
    assert data.train == [
        {"tokens": ["John", "Smith", "in", "Paris"], "tags": ["B-PER", "I-PER", "O", "B-LOC"]}
    ]

    row = {
        "paragraph": "P.",
        "question": "Q?",
        "answer": "A",
        "idx": {"paragraph": 3, "question": 1, "answer": 0},
        "label": 1,
    }
    online(FakeHub({"train": [row], "validation": [row]}))
    data = load_task("multirc")
    assert data.train == [{"text": "P.", "text_pair": "Q? A", "label": "True", "group": "3-1"}]


def test_hub_failure_says_which_files_to_put_where(online) -> None:
    fake = online(FakeHub(error=ConnectionError("no network")))
    with pytest.raises(DataError) as excinfo:
        load_task("cb")
    message = one_line_error(excinfo)
    assert "aps/super_glue/cb" in message and "ConnectionError: no network" in message
    assert (
        "put CB as <dir>/superglue/CB/train.jsonl and val.jsonl, or set PTUNING_DATA / --data-dir" in message
    )
    assert [revision for _, _, revision in fake.calls] == ["refs/convert/parquet", None]


def test_offline_hub_and_hubless_task(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    monkeypatch.delenv("PTUNING_DATA", raising=False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    with pytest.raises(
        DataError, match=r"offline.*put SQuAD 1.1 as <dir>/squad/dev-v1.1.json \(and optionally"
    ):
        load_task("squad")
    with pytest.raises(
        DataError, match="put CoNLL04 as <dir>/conll04/conll04_train.json and conll04_dev.json"
    ):
        load_task("conll04")


# --------------------------------------------------------------------------------------------------
# User files


def test_user_csv_classification(tmp_path: Path) -> None:
    train = write(tmp_path / "train.csv", 'review,stars\n"great, really",pos\nawful,neg\nok,pos\n')
    dev = write(tmp_path / "dev.csv", "review,stars\nnice,pos\n")
    data = load_user_task(
        "classification", train, dev, text_column="review", label_column="stars", name="reviews"
    )
    assert data.spec == TaskSpec("reviews", "classification", ("neg", "pos"), "accuracy")
    assert data.train[0] == {"text": "great, really", "text_pair": None, "label": "pos"}
    assert data.validation == [{"text": "nice", "text_pair": None, "label": "pos"}]


def test_user_jsonl_pairs_and_tsv_regression(tmp_path: Path) -> None:
    rows = [{"a": "x", "b": "y", "y": 1}, {"a": "z", "b": "w", "y": 0}]
    train = write(tmp_path / "t.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n\n")
    data = load_user_task(
        "classification", train, train, text_column="a", text_pair_column="b", label_column="y"
    )
    assert data.spec.labels == ("0", "1") and data.train[0] == {"text": "x", "text_pair": "y", "label": "1"}
    tsv = write(tmp_path / "t.tsv", 'text\tlabel\nsaid "hi\t0.5\nbye\t2\n')
    data = load_user_task("regression", tsv, tsv)
    assert data.spec.task_type == "regression" and data.spec.metric == "pearson"
    assert data.train == [
        {"text": 'said "hi', "text_pair": None, "label": 0.5},
        {"text": "bye", "text_pair": None, "label": 2.0},
    ]


def test_user_conll_tag_column_docstart_and_iob1(tmp_path: Path) -> None:
    text = "-DOCSTART- X O\n\nJohn NNP I-PER\nSmith NNP I-PER\nvisited VBD O\nBerlin NNP I-LOC\n\nHi UH O\n"
    train = write(tmp_path / "train.conll", text)
    data = load_user_task("token_classification", train, train, tag_column=2)
    assert data.train[0] == {
        "tokens": ["John", "Smith", "visited", "Berlin"],
        "tags": ["B-PER", "I-PER", "O", "B-LOC"],
    }
    assert len(data.train) == 2
    assert data.spec.labels == ("O", "B-LOC", "B-PER", "I-PER") and data.spec.metric == "f1"
    # the POS column as tags cannot be IOB
    with pytest.raises(DataError, match=r"line 3: tag 'NNP' is not O or PREFIX-TYPE"):
        load_user_task("token_classification", train, train, tag_column=1)


def squad_json(context: str = "Paris is in France.", **qa_overrides) -> str:
    qa = {"id": "q1", "question": "Where is Paris?", "answers": [{"text": "France", "answer_start": 12}]}
    qa.update(qa_overrides)
    qa = {k: v for k, v in qa.items() if v is not None}
    paragraph = {"context": context, "qas": [qa]} if context is not None else {"qas": [qa]}
    return json.dumps({"version": "1.1", "data": [{"title": "T", "paragraphs": [paragraph]}]})


def test_user_squad(tmp_path: Path) -> None:
    path = write(tmp_path / "qa.json", squad_json())
    data = load_user_task("question_answering", path, path)
    assert data.spec.task_type == "question_answering" and data.spec.metric == "f1"
    assert data.train == [
        {
            "id": "q1",
            "question": "Where is Paris?",
            "context": "Paris is in France.",
            "answers": {"text": ["France"], "answer_start": [12]},
        }
    ]


# --------------------------------------------------------------------------------------------------
# Bad input: one-line DataError naming the file, the place and what was expected


def test_missing_file(tmp_path: Path) -> None:
    dev = write(tmp_path / "dev.csv", "text,label\na,b\n")
    with pytest.raises(DataError) as excinfo:
        load_user_task("classification", tmp_path / "nope.csv", dev)
    assert one_line_error(excinfo) == f"{tmp_path / 'nope.csv'}: file not found"


@pytest.mark.parametrize("name", ["empty.csv", "empty.jsonl", "empty.conll", "empty.json"])
def test_empty_file(tmp_path: Path, name: str) -> None:
    path = write(tmp_path / name, "")
    task_type = {".csv": "classification", ".jsonl": "classification", ".conll": "token_classification"}
    with pytest.raises(DataError) as excinfo:
        load_user_task(task_type.get(path.suffix, "question_answering"), path, path)
    assert one_line_error(excinfo) == f"{path}: file is empty"


def test_header_only_and_blank_files(tmp_path: Path) -> None:
    path = write(tmp_path / "h.tsv", "text\tlabel\n")
    with pytest.raises(DataError, match=r"h\.tsv: no examples \(only a header line\)"):
        load_user_task("classification", path, path)
    blank = write(tmp_path / "blank.conll", "\n\n-DOCSTART- O\n\n")
    with pytest.raises(DataError, match=r"blank\.conll: file is empty \(no token lines\)"):
        load_user_task("token_classification", blank, blank)


def test_missing_column_lists_columns_found(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", "sentence,label\nhi,a\n")
    with pytest.raises(DataError) as excinfo:
        load_user_task("classification", path, path)
    message = one_line_error(excinfo)
    assert (
        message.startswith(f"{path}, line 1: missing column 'text'")
        and "columns found: sentence, label" in message
    )


def test_missing_jsonl_key_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path / "t.jsonl", '{"text": "a", "label": 1}\n{"text": "b", "y": 0}\n')
    with pytest.raises(DataError) as excinfo:
        load_user_task("classification", path, path)
    assert one_line_error(excinfo) == f"{path}, line 2: missing key 'label'; keys found: text, y"


def test_wrong_number_of_fields(tmp_path: Path) -> None:
    path = write(tmp_path / "t.tsv", "text\tlabel\na\tx\nb\tx\textra\n")
    with pytest.raises(DataError) as excinfo:
        load_user_task("classification", path, path)
    assert one_line_error(excinfo) == f"{path}, line 3: expected 2 columns (text, label), found 3"


def test_validation_label_not_in_training(tmp_path: Path) -> None:
    train = write(tmp_path / "train.csv", "text,label\na,yes\nb,no\n")
    dev = write(tmp_path / "dev.csv", "text,label\nc,no\nd,maybe\n")
    with pytest.raises(DataError) as excinfo:
        load_user_task("classification", train, dev)
    assert (
        one_line_error(excinfo)
        == f"{dev}, line 3: label 'maybe' does not occur in the training data; known: no, yes"
    )


def test_bad_regression_value(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", "text,label\na,0.5\nb,high\n")
    with pytest.raises(DataError, match=r"t\.csv, line 3: expected a number in 'label', found 'high'"):
        load_user_task("regression", path, path)


def test_malformed_jsonl_line(tmp_path: Path) -> None:
    path = write(tmp_path / "t.jsonl", '{"text": "a", "label": 1}\n{"text": "b", "label": \n')
    with pytest.raises(DataError) as excinfo:
        load_user_task("classification", path, path)
    message = one_line_error(excinfo)
    assert (
        message.startswith(f"{path}, line 2: invalid JSON (")
        and "expected one JSON object per line" in message
    )
    array = write(tmp_path / "a.jsonl", "[1, 2]\n")
    with pytest.raises(DataError, match=r"a\.jsonl, line 1: expected a JSON object, found list"):
        load_user_task("classification", array, array)


def test_unsupported_extension_and_task_type(tmp_path: Path) -> None:
    path = write(tmp_path / "t.xlsx", "x")
    with pytest.raises(
        DataError,
        match=r"t\.xlsx: unsupported file type '.xlsx'; expected .csv, .tsv, .jsonl, .json, .parquet, "
        r"\.arrow or a save_to_disk folder",
    ):
        load_user_task("classification", path, path)
    with pytest.raises(DataError, match="unknown task type 'ranking'"):
        load_user_task("ranking", path, path)
    with pytest.raises(DataError, match="'multiple_choice' is not supported for user files"):
        load_user_task("multiple_choice", path, path)


def test_malformed_conll_line(tmp_path: Path) -> None:
    path = write(tmp_path / "t.conll", "EU NNP B-ORG\nrejects VBZ O\n\nGerman B-MISC\n")
    with pytest.raises(DataError) as excinfo:
        load_user_task("token_classification", path, path)
    assert one_line_error(excinfo) == (
        f"{path}, line 4: expected 3 whitespace-separated columns like line 1, found 2: 'German B-MISC'"
    )


def test_conll_validation_tag_not_in_training(tmp_path: Path) -> None:
    train = write(tmp_path / "train.conll", "John B-PER\nruns O\n")
    dev = write(tmp_path / "dev.conll", "Paris B-LOC\n")
    with pytest.raises(DataError) as excinfo:
        load_user_task("token_classification", train, dev)
    assert (
        one_line_error(excinfo)
        == f"{dev}, line 1: tag 'B-LOC' does not occur in the training data; known: O, B-PER"
    )


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"context": None}, "question id q1: missing key 'context'; keys found: qas"),
        ({"question": None}, "question id q1: missing key 'question'; keys found: id, answers"),
        ({"answers": None}, "question id q1: missing key 'answers'; keys found: id, question"),
        (
            {"answers": [{"text": "France", "answer_start": 3}]},
            "question id q1, answer 0: answer_start 3 does not match the answer text 'France' "
            "(the context there reads 'is is ')",
        ),
    ],
)
def test_malformed_squad_record(tmp_path: Path, overrides: dict, expected: str) -> None:
    overrides = dict(overrides)
    context = overrides.pop("context", "Paris is in France.")
    path = write(tmp_path / "qa.json", squad_json(context, **overrides))
    with pytest.raises(DataError) as excinfo:
        load_user_task("question_answering", path, path)
    assert one_line_error(excinfo) == f"{path}, {expected}"


def test_squad_invalid_json_and_wrong_layout(tmp_path: Path) -> None:
    path = write(tmp_path / "qa.json", '{"data": [\n{"title": }\n]}')
    with pytest.raises(DataError, match=r"qa\.json, line 2: invalid JSON"):
        load_user_task("question_answering", path, path)
    path = write(tmp_path / "list.json", "[]")
    with pytest.raises(DataError, match=r"list\.json: expected SQuAD JSON: an object with a 'data' list"):
        load_user_task("question_answering", path, path)


def test_bad_builtin_files(tmp_path: Path) -> None:
    write(tmp_path / "glue/SST-2/train.tsv", "sentence\tlabel\ngood\t1\nodd\t7\n")
    write(tmp_path / "glue/SST-2/dev.tsv", "sentence\tlabel\nfine\t1\n")
    with pytest.raises(DataError) as excinfo:
        load_task("sst2", tmp_path)
    assert (
        one_line_error(excinfo)
        == f"{tmp_path}/glue/SST-2/train.tsv, line 3: label '7' is not one of negative, positive"
    )

    write(tmp_path / "glue/RTE/train.tsv", "index\tpremise\tlabel\n0\ta\tentailment\n")
    write(tmp_path / "glue/RTE/dev.tsv", "index\tsentence1\tsentence2\tlabel\n")
    with pytest.raises(
        DataError, match=r"line 1: missing column 'sentence1' .*columns found: index, premise, label"
    ):
        load_task("rte", tmp_path)

    write(tmp_path / "conll2003/train.txt", "EU NNP B-NP B-ORG\nrejects VBZ B-VP O\nGerman JJ B-NP\n")
    write(tmp_path / "conll2003/valid.txt", "EU NNP B-NP B-ORG\n")
    with pytest.raises(
        DataError, match=r"conll2003/train\.txt, line 3: expected 4 whitespace-separated columns"
    ):
        load_task("conll03", tmp_path)

    write(tmp_path / "superglue/CB/train.jsonl", '{"premise": "a", "hypothesis": "b", "label": "maybe"}\n')
    write(tmp_path / "superglue/CB/val.jsonl", '{"premise": "a", "hypothesis": "b", "label": "neutral"}\n')
    with pytest.raises(
        DataError, match=r"CB/train\.jsonl, line 1: label 'maybe' is not one of entailment, contradiction"
    ):
        load_task("cb", tmp_path)

    write(tmp_path / "conll04/conll04_train.json", json.dumps([{"tokens": ["a", "b"], "tags": ["O"]}]))
    write(tmp_path / "conll04/conll04_dev.json", "[]")
    with pytest.raises(DataError, match=r"conll04_train\.json, record 0: 2 tokens but 1 tags"):
        load_task("conll04", tmp_path)


def test_undecodable_and_unreadable_files(tmp_path: Path) -> None:
    latin = tmp_path / "latin.tsv"
    latin.write_bytes("text\tlabel\ncaf\xe9\tx\n".encode("latin-1"))
    with pytest.raises(DataError) as excinfo:
        load_user_task("classification", latin, latin)
    assert one_line_error(excinfo) == f"{latin}, line 2: expected UTF-8 text, found byte 0xe9"
    huge = write(tmp_path / "huge.csv", "text,label\n" + "a" * 200_000 + ",x\n")
    with pytest.raises(DataError, match=r"huge\.csv, line 2: unreadable CSV \(field larger than field limit"):
        load_user_task("classification", huge, huge)
