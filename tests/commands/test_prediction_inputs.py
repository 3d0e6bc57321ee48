"""`predict --input` in the training files' formats, with errors naming the file and the 1-based line;
what a checkpoint records about its inputs, and what older checkpoints fall back to."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import stat
import sys
from pathlib import Path

import pytest

from ptuning.cli import main
from ptuning.data.inputs import InputFormat, parse_input, read_prediction_inputs
from ptuning.errors import DataError
from ptuning.tasks import TaskSpec

REPO = Path(__file__).resolve().parents[2]
PAIRS = TaskSpec("pairs", "classification", ("neg", "pos"))
NER = TaskSpec("ner", "token_classification", ("O", "B-PER", "I-PER"), "f1")
QA = TaskSpec("qa", "question_answering", (), "f1")
PAIR_FORMAT = InputFormat("csv", text_column="s1", text_pair_column="s2", label_column="gold")


def _error(path, spec=PAIRS, fmt=PAIR_FORMAT, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        read_prediction_inputs(path, spec, fmt, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_csv_and_tsv_read_the_trained_columns_and_copy_ids(tmp_path):
    csv_file = tmp_path / "test.csv"
    csv_file.write_text('id,s1,s2,gold\n7,"a, b",c,pos\n8,d,e,neg\n')
    read = read_prediction_inputs(csv_file, PAIRS, PAIR_FORMAT)
    assert read.items == [{"text": "a, b", "text_pair": "c"}, {"text": "d", "text_pair": "e"}]
    assert read.ids == ["7", "8"] and read.has_ids
    tsv_file = tmp_path / "test.tsv"
    tsv_file.write_text("key\ts1\ts2\nk1\tx\ty\n")
    read = read_prediction_inputs(tsv_file, PAIRS, PAIR_FORMAT, id_column="key")
    assert read.items == [{"text": "x", "text_pair": "y"}] and read.ids == ["k1"]
    assert "missing column 's2'" in _error(_write(tmp_path / "no_pair.csv", "s1\nx\n"))


def _write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def test_jsonl_takes_trained_keys_generic_keys_and_strings(tmp_path):
    path = _write(
        tmp_path / "in.jsonl",
        '{"id": 1, "s1": "a", "s2": "b"}\n\n{"text": "c", "text_pair": "d"}\n',
    )
    read = read_prediction_inputs(path, PAIRS, PAIR_FORMAT)
    assert read.items == [{"text": "a", "text_pair": "b"}, {"text": "c", "text_pair": "d"}]
    assert read.ids == [1, None]
    single = read_prediction_inputs(_write(tmp_path / "s.jsonl", '"just text"\n'), PAIRS, InputFormat())
    assert single.items == ["just text"] and not single.has_ids


def test_jsonl_errors_name_the_file_and_the_1_based_line(tmp_path):
    message = _error(_write(tmp_path / "in.jsonl", '{"s1": "a", "s2": "b"}\n\n{"sentence": "x"}\n'))
    assert message.startswith(f"{tmp_path / 'in.jsonl'}, line 3: ") and "'s1'" in message
    assert "sentence" in message  # the keys it found
    message = _error(_write(tmp_path / "nopair.jsonl", '{"s1": "a"}\n'))
    assert "line 1" in message and "'s2'" in message and "pairs" in message
    message = _error(_write(tmp_path / "type.jsonl", '{"s1": 3, "s2": "b"}\n'), fmt=PAIR_FORMAT)
    assert "line 1" in message and "'text'" in message
    message = _error(_write(tmp_path / "ids.jsonl", '{"s1": "a", "s2": "b"}\n'), id_column="uid")
    assert "line 1" in message and "'uid'" in message


def test_non_utf8_and_deeply_nested_json_are_one_line_errors(tmp_path):
    message = _error(_write(tmp_path / "latin.jsonl", b'{"s1": "a", "s2": "b"}\n' + b'"caf\xe9"\n'))
    assert "latin.jsonl, line 2" in message and "UTF-8" in message
    message = _error(_write(tmp_path / "deep.jsonl", '"fine"\n' + "[" * 100_000 + "]" * 100_000 + "\n"))
    assert "deep.jsonl, line 2" in message and "nested too deeply" in message
    message = _error(
        _write(tmp_path / "deep.json", "[" * 100_000 + "]" * 100_000), spec=QA, fmt=InputFormat()
    )
    assert "deep.json" in message and "nested too deeply" in message


def test_conll_and_squad_inputs(tmp_path):
    conll = _write(tmp_path / "test.conll", "-DOCSTART- O\n\nJohn B-PER\nlives O\n\n\nParis O\n")
    read = read_prediction_inputs(conll, NER, InputFormat("conll"))
    assert read.items == [{"tokens": ["John", "lives"]}, {"tokens": ["Paris"]}] and not read.has_ids
    squad = {
        "data": [
            {"paragraphs": [{"context": "John lives in Paris.", "qas": [{"id": "q1", "question": "Where?"}]}]}
        ]
    }
    path = _write(tmp_path / "dev.json", json.dumps(squad))
    read = read_prediction_inputs(path, QA, InputFormat("squad"))
    assert read.items == [{"question": "Where?", "context": "John lives in Paris."}]  # the id apart
    assert read.ids == ["q1"]
    del squad["data"][0]["paragraphs"][0]["qas"][0]["question"]
    message = _error(_write(tmp_path / "bad.json", json.dumps(squad)), spec=QA, fmt=InputFormat("squad"))
    assert "bad.json, question id q1" in message and "'question'" in message
    assert "token_classification" in _error(_write(tmp_path / "x.csv", "text\nhi\n"), spec=NER)


def test_recorded_inputs_and_the_fallback_of_older_checkpoints(tmp_path):
    from ptuning.checkpoint import CONFIG_NAME, recorded_inputs
    from ptuning.errors import CheckpointError

    folder = tmp_path / "ckpt"
    folder.mkdir()
    from dataclasses import asdict

    from ptuning.core.config import PromptConfig

    config = {  # a complete config, as the checkpoint validator wants one
        "backbone": "tiny",
        "backbone_fingerprint": "0123456789abcdef",
        "prefix_folded": True,
        "prompt_config": PromptConfig(prefix_len=16).filled().to_dict(),
        "task": asdict(TaskSpec("x", "classification", ("a", "b"))),
        "inputs": PAIR_FORMAT.to_dict(),
    }
    (folder / CONFIG_NAME).write_text(json.dumps({**config, "max_seq_length": 48}))
    assert recorded_inputs(folder) == (PAIR_FORMAT, 48)
    del config["inputs"]
    (folder / CONFIG_NAME).write_text(json.dumps(config))  # written before inputs were recorded
    assert recorded_inputs(folder) == (InputFormat(), None)
    (folder / "train_config.json").write_text(
        json.dumps({"text_column": "s1", "text_pair_column": None, "max_seq_length": 64, "task": "x"})
    )
    assert recorded_inputs(folder) == (InputFormat(text_column="s1"), 64)
    (folder / CONFIG_NAME).write_text(json.dumps({**config, "max_seq_length": "64"}))
    with pytest.raises(CheckpointError, match="max_seq_length"):
        recorded_inputs(folder)


def test_atomic_writes_respect_the_umask(tmp_path):
    from ptuning.checkpoint import atomic_write_text

    previous = os.umask(0o027)
    try:
        atomic_write_text(tmp_path / "a.json", "{}")
        os.umask(0o022)
        atomic_write_text(tmp_path / "b.json", "{}")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "b.json").stat().st_mode) == 0o644


def test_predict_cli_bad_input_files_exit_2(tmp_path, demo_checkpoints, capsys):
    checkpoint = (
        demo_checkpoints["sst2"] if "sst2" in demo_checkpoints else next(iter(demo_checkpoints.values()))
    )
    cases = {
        "latin.jsonl": b'"caf\xe9"\n',
        "deep.jsonl": ("[" * 100_000 + "]" * 100_000 + "\n").encode(),
    }
    for name, content in cases.items():
        path = _write(tmp_path / name, content)
        code = main(["predict", "--checkpoint", str(checkpoint), "--input", str(path)])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
        assert f"{name}, line 1" in err


PATH_IN_DOCS = re.compile(r"outputs/([A-Za-z0-9_.+-]*)")
METHOD_SUFFIX = re.compile(r"-(p-tuning-v2|prefix-tuning|prompt-tuning|fine-tune)$")


def test_help_texts_and_serving_docs_use_the_real_default_folders(capsys):
    """`ptuning train` writes outputs/<task>-<method>: examples must not name folders it never makes."""
    from ptuning.cli import available_commands

    texts = [(REPO / "docs" / "serving.md").read_text()]
    for name in ["", *available_commands()]:
        with pytest.raises(SystemExit):
            main([name, "--help"] if name else ["--help"])
        texts.append(capsys.readouterr().out)
    for text in texts:
        for folder in PATH_IN_DOCS.findall(text):
            # "tune-": ptuning tune's outputs/tune-<task>-<method>
            assert folder in ("", "tune-", "<task>-<method>") or METHOD_SUFFIX.search(folder), folder


# --- one input rule for predict, eval and serve: trained columns, pairs, visible text ---------------

NLI_FORMAT = InputFormat("jsonl", text_column="premise", text_pair_column="hypothesis", label_column="gold")


def _parse_error(item, spec=PAIRS, fmt=NLI_FORMAT) -> str:
    with pytest.raises(DataError) as info:
        parse_input(spec, item, 0, fmt)
    return str(info.value)


def test_parse_input_takes_the_trained_columns_and_requires_the_pair():
    both = {"text": "a", "text_pair": "b"}
    assert parse_input(PAIRS, {"premise": "a", "hypothesis": "b"}, 0, NLI_FORMAT) == both
    assert parse_input(PAIRS, {"premise": "a", "hypothesis": "b", "gold": "pos"}, 0, NLI_FORMAT) == both
    assert parse_input(PAIRS, both, 0, NLI_FORMAT) == both  # the generic keys as well
    assert parse_input(PAIRS, {"premise": "a", "text_pair": "b"}, 0, NLI_FORMAT) == both
    message = _parse_error({"premise": "a"})
    assert "'hypothesis' (or 'text_pair') is missing" in message and "text pairs" in message
    assert "trained on text pairs" in _parse_error("a premise alone")
    assert "'hypothesis' (or 'text_pair') is missing" in _parse_error({"premise": "a", "hypothesis": None})
    assert "both give the text" in _parse_error({"premise": "a", "text": "b", "hypothesis": "c"})
    message = _parse_error({"premise": "a", "hypothesis": "b", "sentence": "c"})
    assert "'sentence'" in message and "'premise' (or 'text')" in message
    # a single-text checkpoint: its column, or text; a plain string; the pair stays optional
    ticket = InputFormat("csv", text_column="ticket", label_column="queue")
    assert parse_input(PAIRS, {"ticket": "awful"}, 0, ticket) == {"text": "awful", "text_pair": None}
    assert parse_input(PAIRS, "awful", 0, ticket) == {"text": "awful", "text_pair": None}
    assert "'ticket' (or 'text') must be a string; it is missing" in _parse_error({"queue": "x"}, fmt=ticket)
    # without a recorded format (or for other task types) the generic keys only, as before
    assert "'premise'" in _parse_error({"premise": "a", "hypothesis": "b"}, fmt=None)
    assert parse_input(QA, {"question": "q", "context": "c"}, 0, NLI_FORMAT)["question"] == "q"


@pytest.mark.parametrize("text", ["\u200b", "\x00", "\ufeff", " \u200b\t\u00a0", "\u2028", "\u200d\u200c"])
def test_text_with_no_visible_character_is_empty(text):
    assert "is empty" in _parse_error(text, fmt=None)
    assert "is empty" in _parse_error({"text": "fine", "text_pair": text}, fmt=None)
    assert "is empty" in _parse_error({"tokens": ["John", text]}, spec=NER, fmt=None)


@pytest.mark.parametrize("text", ["é", "😀", "a\u200b", "\u00a0x", "日本"])
def test_text_with_a_visible_character_is_text(text):
    assert parse_input(PAIRS, text, 0)["text"] == text


def test_txt_files_and_stdin(tmp_path):
    txt = _write(tmp_path / "reviews.txt", "a fine film\n\n   \ndull and overlong\r\n")
    read = read_prediction_inputs(txt, PAIRS, InputFormat())
    assert read.items == ["a fine film", "dull and overlong"] and not read.has_ids
    assert read_prediction_inputs(txt, NER, InputFormat("conll")).items == [
        "a fine film",
        "dull and overlong",
    ]
    message = _error(txt, fmt=NLI_FORMAT)  # one text a line cannot be a pair
    assert "reviews.txt, line 1" in message and "text pairs" in message
    stdin = io.BytesIO(b'{"id": 3, "premise": "a", "hypothesis": "b"}\n\n"c"\n')
    with pytest.raises(DataError, match=r"<stdin>, line 3: .*text pairs"):
        read_prediction_inputs("-", PAIRS, NLI_FORMAT, stdin=stdin)
    stdin = io.BytesIO(b'{"id": 3, "premise": "a", "hypothesis": "b"}\n\n{"text": "c", "text_pair": "d"}\n')
    read = read_prediction_inputs("-", PAIRS, NLI_FORMAT, stdin=stdin)
    assert read.items == [{"text": "a", "text_pair": "b"}, {"text": "c", "text_pair": "d"}]
    assert read.ids == [3, None]
    read = read_prediction_inputs("-", PAIRS, InputFormat(), stdin=io.BytesIO(b"great {fun}\n\nbad\n"))
    assert read.items == ["great {fun}", "bad"]
    with pytest.raises(DataError, match=r"<stdin>, line 2: expected UTF-8"):
        read_prediction_inputs("-", PAIRS, InputFormat(), stdin=io.BytesIO(b"fine\ncaf\xe9\n"))
    with pytest.raises(DataError, match=r"<stdin>: no inputs found"):
        read_prediction_inputs("-", PAIRS, InputFormat(), stdin=io.BytesIO(b"\n \n"))


@pytest.fixture(scope="module")
def nli_checkpoint(demo_checkpoints, tmp_path_factory) -> Path:
    """The demo sentiment checkpoint, as if trained on JSONL files with --text-pair-column hypothesis."""
    from ptuning.checkpoint import CONFIG_NAME

    folder = tmp_path_factory.mktemp("nli") / "nli"
    shutil.copytree(demo_checkpoints["sentiment"], folder)
    config = json.loads((folder / CONFIG_NAME).read_text())
    config["inputs"] = NLI_FORMAT.to_dict()
    (folder / CONFIG_NAME).write_text(json.dumps(config))
    return folder


def _one_line(code: int, err: str, *needles: str) -> None:
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, (needle, err)


def test_a_pair_trained_checkpoint_requires_the_pair(nli_checkpoint, tmp_path, capsys):
    from ptuning.inference import Predictor

    code = main(["predict", "--checkpoint", str(nli_checkpoint), "a premise alone"])
    captured = capsys.readouterr()
    assert captured.out == ""
    _one_line(code, captured.err.strip(), "input 0", "text pairs", "'hypothesis'")
    premises = _write(tmp_path / "premises.jsonl", '{"premise": "a", "hypothesis": "b"}\n{"premise": "c"}\n')
    code = main(["predict", "--checkpoint", str(nli_checkpoint), "--input", str(premises)])
    _one_line(code, capsys.readouterr().err.strip(), "premises.jsonl, line 2", "'hypothesis'")
    pairs = _write(tmp_path / "pairs.jsonl", '{"premise": "a", "hypothesis": "b", "gold": "pos"}\n')
    assert main(["predict", "--checkpoint", str(nli_checkpoint), "--input", str(pairs)]) == 0
    assert json.loads(capsys.readouterr().out)["label"] in ("negative", "positive")
    # the predictor the server builds per task parses the same way (the rule is in parse_input)
    predictor = Predictor.from_checkpoint(nli_checkpoint)
    with pytest.raises(DataError, match="'hypothesis' \\(or 'text_pair'\\) is missing"):
        predictor.prepare([{"premise": "a"}])
    with pytest.raises(DataError, match="text pairs"):
        predictor.prepare(["a premise alone"])
    assert len(predictor.predict([{"premise": "a", "hypothesis": "b"}])) == 1
    # and the server's task, loaded by add_task, takes the checkpoint's recorded inputs
    from ptuning.serving import MultiTaskPredictor

    served = MultiTaskPredictor.from_checkpoints({"nli": nli_checkpoint})
    with pytest.raises(DataError, match="text pairs"):
        served.predict("nli", ["a premise alone"])
    answer = served.predict("nli", [{"premise": "a", "hypothesis": "b"}])
    assert answer[0]["label"] == predictor.predict([{"premise": "a", "hypothesis": "b"}])[0]["label"]
    # eval reads the validation file's trained pair column too
    dev = _write(tmp_path / "dev.jsonl", '{"premise": "a", "gold": "positive"}\n')
    code = main(["eval", "--checkpoint", str(nli_checkpoint), "--validation-file", str(dev)])
    _one_line(code, capsys.readouterr().err.strip(), "dev.jsonl, line 1", "'hypothesis'")


def test_predict_refuses_to_overwrite_its_input(demo_checkpoints, tmp_path, capsys, monkeypatch):
    checkpoint = str(demo_checkpoints["sentiment"])
    inputs = _write(tmp_path / "in.jsonl", '"a fine film"\n')
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.jsonl").symlink_to(inputs)
    os.link(inputs, tmp_path / "hard.jsonl")
    monkeypatch.chdir(tmp_path)
    for output in (str(inputs), "in.jsonl", "./sub/../in.jsonl", str(tmp_path / "link.jsonl"), "hard.jsonl"):
        code = main(["predict", "--checkpoint", checkpoint, "--input", "in.jsonl", "--output", output])
        _one_line(code, capsys.readouterr().err.strip(), "--output", "--input", "in.jsonl")
        assert inputs.read_text() == '"a fine film"\n'
    code = main(["predict", "--checkpoint", checkpoint, "--input", "link.jsonl", "--output", "in.jsonl"])
    _one_line(code, capsys.readouterr().err.strip(), "--output")
    assert main(["predict", "--checkpoint", checkpoint, "--input", "in.jsonl", "--output", "out.jsonl"]) == 0
    assert json.loads((tmp_path / "out.jsonl").read_text())["label"] in ("negative", "positive")


class _Stdin:
    def __init__(self, data: bytes) -> None:
        self.buffer = io.BytesIO(data)


def test_predict_reads_txt_and_stdin_and_shows_progress_only_on_a_terminal(
    demo_checkpoints, tmp_path, capsys, monkeypatch
):
    checkpoint = str(demo_checkpoints["sentiment"])
    txt = _write(tmp_path / "reviews.txt", "a fine film\n\ndull and overlong\nfunny\n")
    assert main(["predict", "--checkpoint", checkpoint, "--input", str(txt), "--batch-size", "2"]) == 0
    captured = capsys.readouterr()
    from_file = [json.loads(line) for line in captured.out.splitlines()]
    assert len(from_file) == 3 and captured.err == ""  # stderr is no terminal here: no bar
    monkeypatch.setattr(sys, "stdin", _Stdin(b"a fine film\ndull and overlong\n\nfunny\n"))
    assert main(["predict", "--checkpoint", checkpoint, "--input", "-"]) == 0
    assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == from_file
    monkeypatch.setattr(sys, "stdin", _Stdin(b'{"text": "a fine film", "id": "x"}\n'))
    assert main(["predict", "--checkpoint", checkpoint, "--input", "-"]) == 0
    assert json.loads(capsys.readouterr().out) == {"id": "x", **from_file[0]}
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main(["predict", "--checkpoint", checkpoint, "--input", str(txt), "--batch-size", "2"]) == 0
    captured = capsys.readouterr()
    assert [json.loads(line) for line in captured.out.splitlines()] == from_file  # the bar is on stderr
    assert "3/3" in captured.err and "100%" in captured.err
    assert main(["predict", "--checkpoint", checkpoint, "a fine film"]) == 0  # texts: no bar
    assert "100%" not in capsys.readouterr().err
