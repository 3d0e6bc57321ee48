"""Built-in benchmark tasks and users' own task files: where the data lives, how it is read, what an example is.

Every loader returns plain example dicts whose shape depends on the task type (this is what
`ptuning.data.features.encode` consumes):

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

import csv
import io
import json
import os
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ptuning.data.spec import TASK_TYPES, DataError, TaskSpec

Example = dict[str, Any]
PathLike = str | os.PathLike[str]

#: Environment variable naming the data directory when no ``data_dir`` is given.
DATA_ENV = "PTUNING_DATA"

_HINT_TAIL = f"or set {DATA_ENV} / --data-dir"


@dataclass
class TaskData:
    """A task's spec with its training and validation examples (dicts in the format of its task type)."""

    spec: TaskSpec
    train: list[Example]
    validation: list[Example]


# --------------------------------------------------------------------------------------------------
# Errors and records


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _error(source: PathLike, where: str | None, expected: str) -> DataError:
    """A one-line `DataError`: ``<file>, <where>: <what was expected / found>``."""
    location = str(source) if where is None else f"{source}, {where}"
    return DataError(_one_line(f"{location}: {expected}", limit=1000))


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


@dataclass(frozen=True)
class _Record:
    """One input record (a table row, a JSON object, a hub row) and where it came from, for error messages."""

    source: str
    where: str
    data: dict[str, Any]
    kind: str = "key"  # what a field is called in messages: "column" for table rows

    def error(self, expected: str) -> DataError:
        return _error(self.source, self.where, expected)

    def get(self, key: str, types: type | tuple[type, ...] = str) -> Any:
        """The value of `key`, checked to be of `types` (bools are never accepted as ints)."""
        if key not in self.data or self.data[key] is None:
            found = ", ".join(map(str, self.data)) or "none"
            raise self.error(f"missing {self.kind} {key!r}; {self.kind}s found: {found}")
        value = self.data[key]
        wanted = types if isinstance(types, tuple) else (types,)
        if not isinstance(value, wanted) or (isinstance(value, bool) and bool not in wanted):
            names = " or ".join(t.__name__ for t in wanted)
            raise self.error(f"expected {key!r} to be {names}, found {_type_name(value)} {value!r}")
        return value

    def sub(self, key: str, index: int | None = None) -> _Record:
        """A nested record (a JSON object under `key`, or the `index`-th object of the list under `key`)."""
        value = self.get(key, list if index is not None else dict)
        where = f"{self.where}, {key}" if index is None else f"{self.where}, {key}[{index}]"
        if index is not None:
            value = value[index]
            if not isinstance(value, dict):
                raise self.error(f"expected {key}[{index}] to be a JSON object, found {_type_name(value)}")
        return _Record(self.source, where, value, self.kind)


# --------------------------------------------------------------------------------------------------
# File readers (TSV/CSV, JSONL, JSON, CoNLL columns, SQuAD)


def _read_text(path: Path) -> str:
    """The whole file as text (UTF-8, a byte-order mark dropped); errors name the file and line."""
    if not path.is_file():
        raise _error(path, None, "file not found")
    raw = path.read_bytes()
    if not raw.strip():
        raise _error(path, None, "file is empty")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise _error(
            path, f"line {line}", f"expected UTF-8 text, found byte 0x{raw[err.start]:02x}"
        ) from None


def _lines(text: str) -> list[str]:
    """Lines split on newlines only (str.splitlines would also split on form feeds and U+2028)."""
    return [line.removesuffix("\r") for line in text.split("\n")]


def _read_table(
    path: Path, *, delimiter: str, header: Sequence[str] | None = None, required: Sequence[str] = ()
) -> list[_Record]:
    """Rows of a CSV/TSV file as records keyed by column name (header from the first line unless given).

    TSV files are read without quote handling, as GLUE TSVs contain bare ``"`` characters; CSV files
    use standard quoting. A UTF-8 byte-order mark (MRPC has one) is dropped. Blank lines are skipped.
    """
    text = _read_text(path)
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    columns = list(header) if header is not None else None
    records: list[_Record] = []
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting)
    try:
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            if columns is None:
                columns = [cell.strip() for cell in row]
                missing = [name for name in required if name not in columns]
                if missing:
                    raise _error(
                        path,
                        f"line {reader.line_num}",
                        f"missing column {missing[0]!r} (expected {', '.join(required)}); "
                        f"columns found: {', '.join(columns)}",
                    )
                continue
            if len(row) != len(columns):
                raise _error(
                    path,
                    f"line {reader.line_num}",
                    f"expected {len(columns)} columns ({', '.join(columns)}), found {len(row)}",
                )
            records.append(
                _Record(str(path), f"line {reader.line_num}", dict(zip(columns, row, strict=True)), "column")
            )
    except csv.Error as err:
        raise _error(
            path,
            f"line {reader.line_num}",
            f"unreadable {'TSV' if quoting == csv.QUOTE_NONE else 'CSV'} ({err})",
        ) from None
    if columns is None:
        raise _error(path, None, "file is empty")
    if not records:
        raise _error(path, None, "no examples (only a header line)")
    return records


def _read_jsonl(path: Path) -> list[_Record]:
    """One record per non-blank line of a JSON-lines file; each line must be a JSON object."""
    records: list[_Record] = []
    for line_no, line in enumerate(_lines(_read_text(path)), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as err:
            raise _error(
                path,
                f"line {line_no}",
                f"invalid JSON ({err.msg} at column {err.colno}); expected one JSON object per line",
            ) from None
        except RecursionError:
            raise _error(path, f"line {line_no}", "invalid JSON (nested too deeply)") from None
        if not isinstance(value, dict):
            raise _error(path, f"line {line_no}", f"expected a JSON object, found {_type_name(value)}")
        records.append(_Record(str(path), f"line {line_no}", value))
    if not records:
        raise _error(path, None, "file is empty")
    return records


def _read_json(path: Path) -> Any:
    text = _read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise _error(path, f"line {err.lineno}", f"invalid JSON ({err.msg} at column {err.colno})") from None
    except RecursionError:
        raise _error(path, None, "invalid JSON (nested too deeply)") from None


@dataclass(frozen=True)
class _Sentence:
    tokens: list[str]
    tags: list[str]
    lines: list[int]  # file line of each token, for error messages


def _read_conll(path: Path, tag_column: int = -1) -> list[_Sentence]:
    """Sentences of a CoNLL column file: whitespace-separated columns, the token first, a blank line
    between sentences, ``-DOCSTART-`` lines skipped. Every token line must have as many columns as
    the first one; the tag is taken from column `tag_column` (default: the last)."""
    sentences: list[_Sentence] = []
    current = _Sentence([], [], [])
    n_columns: int | None = None
    first_line = 0
    for line_no, line in enumerate(_lines(_read_text(path)), start=1):
        parts = line.split()
        if not parts or parts[0] == "-DOCSTART-":
            if current.tokens:
                sentences.append(current)
                current = _Sentence([], [], [])
            continue
        if n_columns is None:
            n_columns, first_line = len(parts), line_no
            if n_columns < 2:
                raise _error(
                    path,
                    f"line {line_no}",
                    "expected at least 2 whitespace-separated columns (token ... tag), found 1",
                )
            if not -n_columns <= tag_column < n_columns:
                raise _error(
                    path,
                    f"line {line_no}",
                    f"tag column {tag_column} does not exist: lines have {n_columns} columns",
                )
        elif len(parts) != n_columns:
            raise _error(
                path,
                f"line {line_no}",
                f"expected {n_columns} whitespace-separated columns like line {first_line}, "
                f"found {len(parts)}: {line.strip()[:80]!r}",
            )
        current.tokens.append(parts[0])
        current.tags.append(parts[tag_column])
        current.lines.append(line_no)
    if current.tokens:
        sentences.append(current)
    if not sentences:
        raise _error(path, None, "file is empty (no token lines)")
    return sentences


_TAG_RE = re.compile(r"^([BIELSU])-(.+)$")


def _to_iob2(tags: Sequence[str], where: Callable[[int], str], source: PathLike) -> list[str]:
    """Tags in IOB2 form. IOB1, BIOES and BILOU inputs are converted (E/L -> I, S/U -> B, an I that
    starts an entity -> B), so that seqeval and the model see one scheme."""
    out: list[str] = []
    open_type: str | None = None  # type of the entity the previous token leaves open
    for i, tag in enumerate(tags):
        if tag == "O":
            out.append("O")
            open_type = None
            continue
        match = _TAG_RE.match(tag)
        if match is None:
            raise _error(
                source, where(i), f"tag {tag!r} is not O or PREFIX-TYPE with PREFIX one of B, I, E, L, S, U"
            )
        prefix, kind = match.groups()
        continues = prefix in "IEL" and open_type == kind
        out.append(("I-" if continues else "B-") + kind)
        open_type = kind if prefix in "BI" else None
    return out


def _iob2_order(tags: set[str]) -> tuple[str, ...]:
    """Tag names in a stable id order: O first, then by entity type with B before I."""
    rest = sorted((t for t in tags if t != "O"), key=lambda t: (t[2:], t[:1]))
    return ("O", *rest)


def _read_squad_articles(path: Path) -> list[list[Example]]:
    """Examples of an official SQuAD JSON file, grouped by article (in file order).

    Checks every record: `context`, `question`, `id` and `answers` must be present, and each answer's
    `answer_start` must point at its text in the context."""
    data = _read_json(path)
    articles = data.get("data") if isinstance(data, dict) else None
    if not isinstance(articles, list):
        raise _error(path, None, "expected SQuAD JSON: an object with a 'data' list of articles")
    seen: set[str] = set()
    grouped: list[list[Example]] = []
    for a_index, article in enumerate(articles):
        record = _Record(str(path), f"article {a_index}", article if isinstance(article, dict) else {})
        examples: list[Example] = []
        for p_index in range(len(record.get("paragraphs", list))):
            paragraph = record.sub("paragraphs", p_index)
            examples.extend(_squad_paragraph(paragraph, seen))
        grouped.append(examples)
    if not any(grouped):
        raise _error(path, None, "no questions found")
    return grouped


def _squad_paragraph(paragraph: _Record, seen: set[str]) -> list[Example]:
    questions = paragraph.get("qas", list)
    first_id = questions[0].get("id") if questions and isinstance(questions[0], dict) else None
    where = paragraph.where if first_id is None else f"question id {first_id}"
    context = _Record(paragraph.source, where, paragraph.data).get("context")
    examples = []
    for q_index in range(len(questions)):
        qa = paragraph.sub("qas", q_index)
        qid = str(qa.get("id", (str, int)))
        qa = _Record(qa.source, f"question id {qid}", qa.data)
        if qid in seen:
            raise qa.error("duplicate question id")
        seen.add(qid)
        question = qa.get("question")
        texts, starts = [], []
        for a_index in range(len(qa.get("answers", list))):
            answer = qa.sub("answers", a_index)
            answer = _Record(qa.source, f"question id {qid}, answer {a_index}", answer.data)
            text, start = answer.get("text"), answer.get("answer_start", int)
            found = context[start : start + len(text)]
            if found != text:
                raise answer.error(
                    f"answer_start {start} does not match the answer text {text!r} (the context there reads {found!r})"
                )
            texts.append(text)
            starts.append(start)
        examples.append(
            {
                "id": qid,
                "question": question,
                "context": context,
                "answers": {"text": texts, "answer_start": starts},
            }
        )
    return examples


# --------------------------------------------------------------------------------------------------
# Record -> example converters (shared by local files and hub rows)

Converter = Callable[[_Record, TaskSpec], list[Example]]


def _class_label(record: _Record, key: str, spec: TaskSpec, mapping: dict[str, str] | None = None) -> str:
    """A label name from a record: names pass through (after `mapping`), bools become "True"/"False"
    and integers index `spec.labels` (the hub's class order)."""
    value = record.get(key, (str, int, bool))
    if isinstance(value, bool):
        name = str(value)
    elif isinstance(value, int):
        name = spec.labels[value] if 0 <= value < len(spec.labels) else str(value)
    else:
        name = value.strip()
        name = mapping.get(name, name) if mapping else name
    if name not in spec.labels:
        raise record.error(f"label {value!r} is not one of {', '.join(spec.labels)}")
    return name


def _float_label(record: _Record, key: str) -> float:
    value = record.get(key, (str, int, float))
    try:
        return float(value)
    except ValueError:
        raise record.error(f"expected a number in {key!r}, found {value!r}") from None


def _pair(text: str, pair: str | None, label: str, mapping: dict[str, str] | None = None) -> Converter:
    """Sentence (pair) classification or regression from the given keys."""

    def convert(record: _Record, spec: TaskSpec) -> list[Example]:
        value: str | float
        if spec.task_type == "regression":
            value = _float_label(record, label)
        else:
            value = _class_label(record, label, spec, mapping)
        second = record.get(pair).strip() if pair is not None else None
        return [{"text": record.get(text).strip(), "text_pair": second, "label": value}]

    return convert


_COPA_QUESTIONS = {"cause": "What was the CAUSE of this?", "effect": "What happened as a RESULT?"}


def _copa(record: _Record, spec: TaskSpec) -> list[Example]:
    """COPA as multiple choice: context "<premise> What was the CAUSE of this?" (or "What happened as a
    RESULT?" for effect questions) and the two alternatives as choices."""
    kind = record.get("question")
    if kind not in _COPA_QUESTIONS:
        raise record.error(f"expected 'question' to be 'cause' or 'effect', found {kind!r}")
    label = record.get("label", int)
    if not 0 <= label < 2:
        raise record.error(f"expected 'label' 0 or 1, found {label}")
    context = f"{record.get('premise').strip()} {_COPA_QUESTIONS[kind]}"
    return [{"context": context, "choices": [record.get("choice1"), record.get("choice2")], "label": label}]


def _wsc(record: _Record, spec: TaskSpec) -> list[Example]:
    """WSC as sentence-pair classification: text = the sentence, text_pair = "<span2> refers to <span1>"
    (the pronoun and the candidate referent), label "True"/"False".

    Chosen over marking the spans inside the sentence because it needs no special tokens and reads as
    an entailment question for the encoder; the span indices are not used. Accepts the SuperGLUE JSONL
    layout (a `target` object) and the hub's flat `span1_text`/`span2_text` columns."""
    target = record.sub("target") if "target" in record.data else record
    pronoun, referent = target.get("span2_text").strip(), target.get("span1_text").strip()
    label = _class_label(record, "label", spec)
    return [
        {"text": record.get("text").strip(), "text_pair": f"{pronoun} refers to {referent}", "label": label}
    ]


def _multirc(record: _Record, spec: TaskSpec) -> list[Example]:
    """MultiRC (SuperGLUE JSONL, one paragraph per line): one example per answer, text = the paragraph,
    text_pair = question + " " + answer, group = "<paragraph idx>-<question idx>" for the EM metric."""
    passage = record.sub("passage")
    paragraph_id = record.get("idx", (int, str))
    text = passage.get("text")
    examples = []
    for q_index in range(len(passage.get("questions", list))):
        question = passage.sub("questions", q_index)
        group = f"{paragraph_id}-{question.get('idx', (int, str))}"
        for a_index in range(len(question.get("answers", list))):
            answer = question.sub("answers", a_index)
            examples.append(
                {
                    "text": text,
                    "text_pair": f"{question.get('question').strip()} {answer.get('text').strip()}",
                    "label": _class_label(answer, "label", spec),
                    "group": group,
                }
            )
    return examples


def _multirc_hub(record: _Record, spec: TaskSpec) -> list[Example]:
    """MultiRC as the hub stores it: one row per answer with an `idx` object {paragraph, question, answer}."""
    idx = record.sub("idx")
    group = f"{idx.get('paragraph', (int, str))}-{idx.get('question', (int, str))}"
    pair = f"{record.get('question').strip()} {record.get('answer').strip()}"
    return [
        {
            "text": record.get("paragraph"),
            "text_pair": pair,
            "label": _class_label(record, "label", spec),
            "group": group,
        }
    ]


def _check_tags(tags: list[str], spec: TaskSpec, error: Callable[[int, str], DataError]) -> list[str]:
    for i, tag in enumerate(tags):
        if tag not in spec.labels:
            raise error(i, f"tag {tag!r} is not one of {', '.join(spec.labels)}")
    return tags


def _tokens_hub(record: _Record, spec: TaskSpec) -> list[Example]:
    """A hub NER row: `tokens` and `ner_tags` (names, after class-label decoding)."""
    tokens, raw = record.get("tokens", list), record.get("ner_tags", list)
    if len(tokens) != len(raw):
        raise record.error(f"{len(tokens)} tokens but {len(raw)} tags")
    tags = _to_iob2([str(t) for t in raw], lambda i: f"{record.where}, token {i}", record.source)
    _check_tags(tags, spec, lambda i, msg: record.error(f"token {i}: {msg}"))
    return [{"tokens": [str(t) for t in tokens], "tags": tags}]


def _squad_hub(record: _Record, spec: TaskSpec) -> list[Example]:
    answers = record.get("answers", dict)
    return [
        {
            "id": str(record.get("id")),
            "question": record.get("question"),
            "context": record.get("context"),
            "answers": {
                "text": list(answers["text"]),
                "answer_start": [int(s) for s in answers["answer_start"]],
            },
        }
    ]


# --------------------------------------------------------------------------------------------------
# Local readers for built-in files

Reader = Callable[[Path, TaskSpec], list[Example]]


def _records_reader(read: Callable[[Path], list[_Record]], convert: Converter) -> Reader:
    def reader(path: Path, spec: TaskSpec) -> list[Example]:
        return [example for record in read(path) for example in convert(record, spec)]

    return reader


def _tsv(
    text: str,
    pair: str | None,
    label: str,
    *,
    mapping: dict[str, str] | None = None,
    header: Sequence[str] | None = None,
) -> Reader:
    required = [c for c in (text, pair, label) if c is not None]
    read = lambda path: _read_table(path, delimiter="\t", header=header, required=required)  # noqa: E731
    return _records_reader(read, _pair(text, pair, label, mapping))


def _jsonl(convert: Converter) -> Reader:
    return _records_reader(_read_jsonl, convert)


def _read_mrpc_train(path: Path, spec: TaskSpec) -> list[Example]:
    """MRPC train. When the original ``msr_paraphrase_train.txt`` and ``dev_ids.tsv`` sit next to
    ``train.tsv``, train is rebuilt from them exactly as GLUE's download script does (all pairs not in
    dev: 3,668), because some copies of train.tsv lost a row; otherwise ``train.tsv`` is read."""
    original, dev_ids = path.with_name("msr_paraphrase_train.txt"), path.with_name("dev_ids.tsv")
    convert = _pair("#1 String", "#2 String", "Quality", _MRPC_LABELS)
    if not (original.is_file() and dev_ids.is_file()):
        return _MRPC_READER(path, spec)
    required = ("Quality", "#1 ID", "#2 ID", "#1 String", "#2 String")
    dev = {
        (r.data["a"].strip(), r.data["b"].strip())
        for r in _read_table(dev_ids, delimiter="\t", header=("a", "b"))
    }
    rows = _read_table(original, delimiter="\t", required=required)
    kept = [r for r in rows if (r.data["#1 ID"].strip(), r.data["#2 ID"].strip()) not in dev]
    return [example for record in kept for example in convert(record, spec)]


def _read_conll_task(path: Path, spec: TaskSpec) -> list[Example]:
    """A CoNLL column file of a built-in task: tags (last column) converted to IOB2 and checked against
    the task's tag set."""
    examples = []
    for sentence in _read_conll(path):
        where = lambda i, s=sentence: f"line {s.lines[i]}"  # noqa: E731
        tags = _to_iob2(sentence.tags, where, path)
        _check_tags(tags, spec, lambda i, msg, w=where: _error(path, w(i), msg))
        examples.append({"tokens": sentence.tokens, "tags": tags})
    return examples


def _read_conll04(path: Path, spec: TaskSpec) -> list[Example]:
    """CoNLL04 JSON: a list of sentences with `tokens` and either BILOU/IOB `tags` (the copy here) or
    `entities` spans ``{"type", "start", "end"}`` (end exclusive, the SpERT layout); relations are ignored."""
    data = _read_json(path)
    if not isinstance(data, list):
        raise _error(path, None, f"expected a JSON list of sentences, found {_type_name(data)}")
    examples = []
    for index, item in enumerate(data):
        record = _Record(str(path), f"record {index}", item if isinstance(item, dict) else {})
        tokens = record.get("tokens", list)
        if "tags" in record.data:
            raw = record.get("tags", list)
            if len(raw) != len(tokens):
                raise record.error(f"{len(tokens)} tokens but {len(raw)} tags")
        else:
            raw = ["O"] * len(tokens)
            for e_index in range(len(record.get("entities", list))):
                entity = record.sub("entities", e_index)
                start, end, kind = entity.get("start", int), entity.get("end", int), entity.get("type")
                if not 0 <= start < end <= len(tokens):
                    raise entity.error(f"span [{start}, {end}) is outside the {len(tokens)} tokens")
                raw[start:end] = [f"B-{kind}"] + [f"I-{kind}"] * (end - start - 1)
        tags = _to_iob2(raw, lambda i, w=record.where: f"{w}, token {i}", path)
        _check_tags(tags, spec, lambda i, msg, r=record: r.error(f"token {i}: {msg}"))
        examples.append({"tokens": [str(t) for t in tokens], "tags": tags})
    if not examples:
        raise _error(path, None, "no sentences")
    return examples


def _read_squad(path: Path, spec: TaskSpec) -> list[Example]:
    return [example for article in _read_squad_articles(path) for example in article]


# Splits of a file when the offline copy has no train file. Every 5th item goes to validation.
_EVERY = 5

Splitter = Callable[[Path, TaskSpec, str], tuple[list[Example], list[Example], str]]


def _split_examples(
    path: Path, spec: TaskSpec, display: str, reader: Reader
) -> tuple[list[Example], list[Example], str]:
    examples = reader(path, spec)
    train = [ex for i, ex in enumerate(examples) if i % _EVERY != _EVERY - 1]
    validation = [ex for i, ex in enumerate(examples) if i % _EVERY == _EVERY - 1]
    note = (
        f"{display}: no train file was found, so {path.name} ({len(examples):,} examples) was split by "
        f"position: every 5th example (0-based index % 5 == 4) is validation ({len(validation):,}), the "
        f"others are training ({len(train):,}); scores are not comparable with published dev-set results."
    )
    return train, validation, note


def _split_squad(path: Path, spec: TaskSpec, display: str) -> tuple[list[Example], list[Example], str]:
    articles = _read_squad_articles(path)
    train = [ex for i, article in enumerate(articles) if i % _EVERY != _EVERY - 1 for ex in article]
    validation = [ex for i, article in enumerate(articles) if i % _EVERY == _EVERY - 1 for ex in article]
    n_val = sum(1 for i in range(len(articles)) if i % _EVERY == _EVERY - 1)
    note = (
        f"{display}: no train file was found, so {path.name} was split by article: every 5th article in "
        f"file order (0-based index % 5 == 4; {n_val} of {len(articles)}) is validation ({len(validation):,} "
        f"questions), the others are training ({len(train):,} questions); scores are not comparable with "
        f"published dev-set results."
    )
    return train, validation, note


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


_MRPC_LABELS = {"0": "not_equivalent", "1": "equivalent"}
_MRPC_READER = _tsv("#1 String", "#2 String", "Quality", mapping=_MRPC_LABELS)
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
#: live in their own modules (wic, squad2, srl), built on this module's readers; `ptuning.data`
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


def _class_names(features: Any) -> dict[str, list[str]]:
    """Class-label names of the columns of a hub split (plain and sequence-of class labels)."""
    names: dict[str, list[str]] = {}
    for column, feature in dict(features or {}).items():
        inner = getattr(feature, "feature", feature)
        if getattr(inner, "names", None):
            names[column] = list(inner.names)
    return names


def _convert_hub_split(split: Any, source: str, convert: Converter, spec: TaskSpec) -> list[Example]:
    names = _class_names(getattr(split, "features", None))
    examples = []
    for index, row in enumerate(split):
        row = dict(row)
        for column, labels in names.items():
            value = row.get(column)
            if isinstance(value, list):
                row[column] = [labels[v] if isinstance(v, int) and 0 <= v < len(labels) else v for v in value]
            elif isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(labels):
                row[column] = labels[value]
        examples.extend(convert(_Record(source, f"row {index}", row), spec))
    return examples


# --------------------------------------------------------------------------------------------------
# Users' own files

_TABLE_DELIMITERS = {".csv": ",", ".tsv": "\t"}


def load_user_task(
    task_type: str,
    train_file: PathLike,
    validation_file: PathLike,
    *,
    text_column: str = "text",
    text_pair_column: str | None = None,
    label_column: str = "label",
    tag_column: int = -1,
    name: str = "custom",
) -> TaskData:
    """A task from the user's own train and validation files.

    - classification / regression: CSV, TSV or JSONL (by extension ``.csv``, ``.tsv``, ``.jsonl``)
      with `text_column`, optional `text_pair_column` and `label_column`. Classification labels are
      the sorted set of training labels; a validation label not seen in training is an error.
      Primary metric: accuracy (classification), pearson (regression).
    - token_classification: CoNLL column files (token first, tag in column `tag_column`, default the
      last; blank line between sentences; ``-DOCSTART-`` skipped). Tags are converted to IOB2 (from
      IOB1, BIOES or BILOU); tag ids: O first, then by type. Primary metric: entity-level f1.
    - question_answering: SQuAD JSON. Primary metric: f1.
    """
    train_path, validation_path = Path(train_file), Path(validation_file)
    if task_type in ("classification", "regression"):
        train = _read_user_table(train_path, text_column, text_pair_column, label_column)
        validation = _read_user_table(validation_path, text_column, text_pair_column, label_column)
        return _user_sequence_task(task_type, name, label_column, train, validation)
    if task_type == "token_classification":
        train_sentences = _read_user_conll(train_path, tag_column)
        validation_sentences = _read_user_conll(validation_path, tag_column)
        labels = _iob2_order({tag for _, ex in train_sentences for tag in ex["tags"]})
        for path, sentences in ((validation_path, validation_sentences),):
            for lines, example in sentences:
                for i, tag in enumerate(example["tags"]):
                    if tag not in labels:
                        raise _error(
                            path,
                            f"line {lines[i]}",
                            f"tag {tag!r} does not occur in the training file; known: {', '.join(labels)}",
                        )
        spec = TaskSpec(name, "token_classification", labels, "f1")
        return TaskData(spec, [ex for _, ex in train_sentences], [ex for _, ex in validation_sentences])
    if task_type == "question_answering":
        spec = TaskSpec(name, "question_answering", (), "f1")
        return TaskData(spec, _read_squad(train_path, spec), _read_squad(validation_path, spec))
    if task_type in TASK_TYPES:
        raise DataError(
            f"task type {task_type!r} is not supported for user files (only built-in tasks, e.g. copa)"
        )
    raise DataError(f"unknown task type {task_type!r}; known: {', '.join(TASK_TYPES)}")


def _read_user_table(path: Path, text: str, pair: str | None, label: str) -> list[tuple[_Record, Example]]:
    """(record, example) pairs of a CSV/TSV/JSONL file; labels are kept raw (str or float) until the
    label set is known."""
    suffix = path.suffix.lower()
    required = [c for c in (text, pair, label) if c is not None]
    if suffix in _TABLE_DELIMITERS:
        records = _read_table(path, delimiter=_TABLE_DELIMITERS[suffix], required=required)
    elif suffix == ".jsonl":
        records = _read_jsonl(path)
    else:
        raise _error(
            path, None, f"unsupported file type {suffix or '(none)'!r}; expected .csv, .tsv or .jsonl"
        )
    rows = []
    for record in records:
        value = record.get(label, (str, int, float, bool))
        second = record.get(pair, str) if pair is not None else None
        rows.append((record, {"text": record.get(text, str), "text_pair": second, "label": value}))
    return rows


def _user_sequence_task(
    task_type: str,
    name: str,
    label_column: str,
    train: list[tuple[_Record, Example]],
    validation: list[tuple[_Record, Example]],
) -> TaskData:
    """Labels of a user classification task are the sorted set of training labels (as strings);
    regression labels must parse as floats."""
    if task_type == "regression":
        for record, example in (*train, *validation):
            example["label"] = _float_label(record, label_column)
        spec = TaskSpec(name, "regression", (), "pearson")
        return TaskData(spec, [ex for _, ex in train], [ex for _, ex in validation])
    for record, example in (*train, *validation):
        value = example["label"]
        example["label"] = str(value).strip()
        if not example["label"]:
            raise record.error("empty label")
    labels = tuple(sorted({ex["label"] for _, ex in train}))
    for record, example in validation:
        if example["label"] not in labels:
            raise record.error(
                f"label {example['label']!r} does not occur in the training file; known: {', '.join(labels)}"
            )
    spec = TaskSpec(name, "classification", labels, "accuracy")
    return TaskData(spec, [ex for _, ex in train], [ex for _, ex in validation])


def _read_user_conll(path: Path, tag_column: int) -> list[tuple[list[int], Example]]:
    out = []
    for sentence in _read_conll(path, tag_column):
        tags = _to_iob2(sentence.tags, lambda i, s=sentence: f"line {s.lines[i]}", path)
        out.append((sentence.lines, {"tokens": sentence.tokens, "tags": tags}))
    return out


# --------------------------------------------------------------------------------------------------


def subsample(examples: Sequence[Example], n: int | None, seed: int) -> list[Example]:
    """`n` examples drawn without replacement with `random.Random(seed)`, kept in their original order
    (all of them, copied, when `n` is None or not smaller than the number of examples)."""
    if n is None or n >= len(examples):
        return list(examples)
    if n < 0:
        raise ValueError(f"cannot take {n} examples")
    chosen = sorted(random.Random(seed).sample(range(len(examples)), n))
    return [examples[i] for i in chosen]
