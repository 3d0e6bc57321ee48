"""Record -> example converters (shared by local files and hub rows) and the readers of built-in task files.

The example dicts' shapes are described in `ptuning.data.registry`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from ptuning.data.readers import (
    Example,
    _error,
    _read_conll,
    _read_json,
    _read_jsonl,
    _read_squad_articles,
    _read_table,
    _Record,
    _to_iob2,
    _type_name,
)
from ptuning.errors import DataError
from ptuning.tasks import TaskSpec

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


_MRPC_LABELS = {"0": "not_equivalent", "1": "equivalent"}
_MRPC_READER = _tsv("#1 String", "#2 String", "Quality", mapping=_MRPC_LABELS)
