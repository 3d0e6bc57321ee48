"""Built-in benchmark tasks (the registry, `load_task`, the hub): where the data lives, what an example is.

Every loader (here and `ptuning.data.user_files.load_user_task`) returns plain example dicts whose
shape depends on the task type (this is what `ptuning.data.features.encode` consumes):

- classification / regression: ``{"text": str, "text_pair": str | None, "label": str | float}``
  (the label NAME for classification, one of ``spec.labels``; a float for regression);
- multiple_choice: ``{"context": str, "choices": [str, ...], "label": int}`` (index of the right choice);
- token_classification: ``{"tokens": [str, ...], "tags": [str, ...]}`` with IOB2 tags;
- question_answering: ``{"id": str, "question": str, "context": str,
  "answers": {"text": [str, ...], "answer_start": [int, ...]}}`` (character offsets into the context).

Built-in tasks are read from a data directory laid out like ``/work/shared/data`` (GLUE TSVs under
``glue/``, SuperGLUE JSONL under ``superglue/``, ``conll2003/``, ``conll04/``, ``squad/``), given as an
argument or by the ``PTUNING_DATA`` environment variable, or else from the Hugging Face hub.

Bad input raises `DataError` with one line naming the file, the line (or record / question id) and
what was expected.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ptuning.data.converters import (
    _MRPC_READER,
    Converter,
    Reader,
    Splitter,
    _copa,
    _jsonl,
    _multirc,
    _multirc_hub,
    _pair,
    _read_conll04,
    _read_conll_task,
    _read_mrpc_train,
    _read_squad,
    _split_examples,
    _split_squad,
    _squad_hub,
    _tokens_hub,
    _tsv,
    _wsc,
)
from ptuning.data.readers import Example, PathLike, _one_line
from ptuning.data.tables import _dataset_records
from ptuning.errors import DataError
from ptuning.tasks import TaskSpec

#: Environment variable naming the data directory when no ``data_dir`` is given.
DATA_ENV = "PTUNING_DATA"

_HINT_TAIL = f"or set {DATA_ENV} / --data-dir"


@dataclass
class TaskData:
    """A task's spec with its training and validation examples (dicts in the format of its task type).

    `test`: where the validation examples were held out of the training data (`data.holdout`), the
    task's own validation examples, scored once after training."""

    spec: TaskSpec
    train: list[Example]
    validation: list[Example]
    test: list[Example] | None = None


# --------------------------------------------------------------------------------------------------
# The registry


@dataclass(frozen=True)
class HubSource:
    """Where a task lives on the Hugging Face hub; revisions are tried in order (the parquet
    conversion branch serves datasets whose main branch still holds a loading script)."""

    path: str
    config: str | None
    convert: Converter
    revisions: tuple[str | None, ...] = (None,)

    def describe(self) -> str:
        return self.path if self.config is None else f"{self.path}/{self.config}"


@dataclass(frozen=True)
class BuiltinTask:
    """A built-in task: its spec, its files under a data directory and how to read them, and its hub source.

    When `split` is set, the train file is optional: without it the validation file is split
    deterministically into train and validation, and the spec's notes say how."""

    spec: TaskSpec
    display: str
    folder: str
    train_file: str
    validation_file: str
    read: Reader
    read_train: Reader | None = None
    split: Splitter | None = None
    hub: HubSource | None = None

    def files_hint(self, root: PathLike) -> str:
        """A one-line instruction saying which files to put where."""
        base = f"{root}/{self.folder}"
        if self.split is not None:
            return f"put {self.display} as {base}/{self.validation_file} (and optionally {self.train_file}), {_HINT_TAIL}"
        return f"put {self.display} as {base}/{self.train_file} and {self.validation_file}, {_HINT_TAIL}"

    def load_local(self, root: Path) -> TaskData:
        folder = root / self.folder
        train_path, validation_path = folder / self.train_file, folder / self.validation_file
        required = [validation_path] if self.split is not None else [train_path, validation_path]
        for path in required:
            if not path.is_file():
                raise DataError(f"{self.display} data not found: missing {path}; {self.files_hint(root)}")
        if self.split is not None and not train_path.is_file():
            train, validation, note = self.split(validation_path, self.spec, self.display)
            return TaskData(replace(self.spec, notes=(*self.spec.notes, note)), train, validation)
        read_train = self.read_train or self.read
        return TaskData(self.spec, read_train(train_path, self.spec), self.read(validation_path, self.spec))


_NLI = ("entailment", "not_entailment")
_BOOL = ("False", "True")
_CONLL03_TAGS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC")
_CONLL04_TAGS = ("O", "B-Loc", "I-Loc", "B-Org", "I-Org", "B-Peop", "I-Peop", "B-Other", "I-Other")
_PARQUET = ("refs/convert/parquet", None)


def _glue(config: str, text: str, pair: str | None = None, label: str = "label") -> HubSource:
    return HubSource("nyu-mll/glue", config, _pair(text, pair, label))


def _superglue(config: str, convert: Converter) -> HubSource:
    return HubSource("aps/super_glue", config, convert, revisions=_PARQUET)


def _split_reader(reader: Reader) -> Splitter:
    return lambda path, spec, display: _split_examples(path, spec, display, reader)


def _build_registry() -> dict[str, BuiltinTask]:
    qnli_reader = _tsv("question", "sentence", "label")
    boolq_reader = _jsonl(_pair("question", "passage", "label"))
    tasks = [
        BuiltinTask(
            TaskSpec("sst2", "classification", ("negative", "positive"), "accuracy"),
            "SST-2", "glue/SST-2", "train.tsv", "dev.tsv",
            _tsv("sentence", None, "label", mapping={"0": "negative", "1": "positive"}),
            hub=_glue("sst2", "sentence"),
        ),
        BuiltinTask(
            TaskSpec("rte", "classification", _NLI, "accuracy"),
            "RTE", "glue/RTE", "train.tsv", "dev.tsv", _tsv("sentence1", "sentence2", "label"),
            hub=_glue("rte", "sentence1", "sentence2"),
        ),
        BuiltinTask(
            TaskSpec("mrpc", "classification", ("not_equivalent", "equivalent"), "f1"),
            "MRPC", "glue/MRPC", "train.tsv", "dev.tsv", _MRPC_READER, read_train=_read_mrpc_train,
            hub=_glue("mrpc", "sentence1", "sentence2"),
        ),
        BuiltinTask(
            TaskSpec("cola", "classification", ("unacceptable", "acceptable"), "matthews_correlation"),
            "CoLA", "glue/CoLA", "train.tsv", "dev.tsv",
            _tsv("sentence", None, "label", mapping={"0": "unacceptable", "1": "acceptable"},
                 header=("source", "label", "original_label", "sentence")),
            hub=_glue("cola", "sentence"),
        ),
        BuiltinTask(
            TaskSpec("stsb", "regression", (), "pearson"),
            "STS-B", "glue/STS-B", "train.tsv", "dev.tsv", _tsv("sentence1", "sentence2", "score"),
            hub=_glue("stsb", "sentence1", "sentence2"),
        ),
        BuiltinTask(
            TaskSpec("qnli", "classification", _NLI, "accuracy"),
            "QNLI", "glue/QNLI", "train.tsv", "dev.tsv", qnli_reader, split=_split_reader(qnli_reader),
            hub=_glue("qnli", "question", "sentence"),
        ),
        BuiltinTask(
            TaskSpec("boolq", "classification", _BOOL, "accuracy"),
            "BoolQ", "superglue/BoolQ", "train.jsonl", "val.jsonl", boolq_reader, split=_split_reader(boolq_reader),
            hub=_superglue("boolq", _pair("question", "passage", "label")),
        ),
        BuiltinTask(
            TaskSpec("cb", "classification", ("entailment", "contradiction", "neutral"), "accuracy"),
            "CB", "superglue/CB", "train.jsonl", "val.jsonl", _jsonl(_pair("premise", "hypothesis", "label")),
            hub=_superglue("cb", _pair("premise", "hypothesis", "label")),
        ),
        BuiltinTask(
            TaskSpec("copa", "multiple_choice", ("0", "1"), "accuracy", num_choices=2),
            "COPA", "superglue/COPA", "train.jsonl", "val.jsonl", _jsonl(_copa),
            hub=_superglue("copa", _copa),
        ),
        BuiltinTask(
            TaskSpec("superglue-rte", "classification", _NLI, "accuracy"),
            "SuperGLUE RTE", "superglue/RTE", "train.jsonl", "val.jsonl", _jsonl(_pair("premise", "hypothesis", "label")),
            hub=_superglue("rte", _pair("premise", "hypothesis", "label")),
        ),
        BuiltinTask(
            TaskSpec("wsc", "classification", _BOOL, "accuracy"),
            "WSC", "superglue/WSC", "train.jsonl", "val.jsonl", _jsonl(_wsc),
            hub=_superglue("wsc.fixed", _wsc),
        ),
        BuiltinTask(
            TaskSpec("multirc", "classification", _BOOL, "f1a"),
            "MultiRC", "superglue/MultiRC", "train.jsonl", "val.jsonl", _jsonl(_multirc),
            hub=_superglue("multirc", _multirc_hub),
        ),
        BuiltinTask(
            TaskSpec("conll03", "token_classification", _CONLL03_TAGS, "f1"),
            "CoNLL-2003", "conll2003", "train.txt", "valid.txt", _read_conll_task,
            hub=HubSource("eriktks/conll2003", None, _tokens_hub, revisions=_PARQUET),
        ),
        BuiltinTask(
            TaskSpec("conll04", "token_classification", _CONLL04_TAGS, "f1"),
            "CoNLL04", "conll04", "conll04_train.json", "conll04_dev.json", _read_conll04,
        ),
        BuiltinTask(
            TaskSpec("squad", "question_answering", (), "f1"),
            "SQuAD 1.1", "squad", "train-v1.1.json", "dev-v1.1.json", _read_squad, split=_split_squad,
            hub=HubSource("rajpurkar/squad", None, _squad_hub),
        ),
    ]  # fmt: skip
    return {task.spec.name: task for task in tasks}


#: The built-in tasks by name. Label order follows the Hugging Face hub's class order. Newer tasks
#: live in their own modules (wic, squad2, srl), built on `readers` and `converters`; `ptuning.data`
#: registers them (`register_task`), so this module imports none of them.
KNOWN_TASKS: dict[str, BuiltinTask] = _build_registry()


def register_task(task: BuiltinTask) -> None:
    """Add a built-in task to `KNOWN_TASKS` (a name may be registered once)."""
    if task.spec.name in KNOWN_TASKS:
        raise ValueError(f"task {task.spec.name!r} is already registered")
    KNOWN_TASKS[task.spec.name] = task


def _builtin(name: str) -> BuiltinTask:
    task = KNOWN_TASKS.get(name.strip().lower())
    if task is None:
        raise DataError(f"unknown task {name!r}; known tasks: {', '.join(KNOWN_TASKS)}")
    return task


def get_task_spec(name: str) -> TaskSpec:
    """The static spec of a built-in task (`DataError` listing the known names if there is none).

    A spec returned by `load_task` can add notes (e.g. how a missing train split was made)."""
    return _builtin(name).spec


# --------------------------------------------------------------------------------------------------
# Loading


def load_task(name: str, data_dir: PathLike | None = None) -> TaskData:
    """Train and validation examples of a built-in task.

    Data location, in order: `data_dir`, the ``PTUNING_DATA`` environment variable, the Hugging Face
    hub (real train splits). A missing file, or a hub that cannot be reached, raises `DataError`
    saying which files to put where."""
    task = _builtin(name)
    root = data_dir if data_dir is not None else (os.environ.get(DATA_ENV) or None)
    if root is not None:
        return task.load_local(Path(root))
    return _load_from_hub(task)


def _load_from_hub(task: BuiltinTask) -> TaskData:
    hint = task.files_hint("<dir>")
    if task.hub is None:
        raise DataError(f"{task.display} cannot be loaded from the Hugging Face hub; {hint}")
    import datasets  # heavy import, only needed for the hub

    if datasets.config.HF_HUB_OFFLINE:
        raise DataError(
            f"no data directory was given and the Hugging Face hub is offline (HF_HUB_OFFLINE); {hint}"
        )
    errors: list[str] = []
    for revision in task.hub.revisions:
        try:
            splits = datasets.load_dataset(task.hub.path, task.hub.config, revision=revision)
            train, validation = splits["train"], splits["validation"]
            break
        except Exception as err:  # network errors, a script-only repository, a missing split, ...
            errors.append(f"{type(err).__name__}: {err}")
    else:
        reason = _one_line(errors[-1], limit=200)
        raise DataError(
            f"could not load {task.display} from the Hugging Face hub ({task.hub.describe()}): {reason}; {hint}"
        )
    source = f"hub {task.hub.describe()}"
    return TaskData(
        task.spec,
        _convert_hub_split(train, f"{source} (train)", task.hub.convert, task.spec),
        _convert_hub_split(validation, f"{source} (validation)", task.hub.convert, task.spec),
    )


def _convert_hub_split(split: Any, source: str, convert: Converter, spec: TaskSpec) -> list[Example]:
    examples = []
    for record in _dataset_records(split, source, kind="key"):  # class-label ids as their names
        examples.extend(convert(record, spec))
    return examples
