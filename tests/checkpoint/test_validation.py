"""The checkpoint validator: every corrupted checkpoint is one line naming the file (exit 2 / HTTP 422)."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import struct
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import torch
from safetensors.torch import load_file, save_file

from ptuning.checkpoint import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    expected_tensors,
    read_header,
    save_checkpoint,
    validate_config,
)
from ptuning.cli import main
from ptuning.core.config import PromptConfig
from ptuning.model import PromptModel
from ptuning.tasks import TaskSpec
from ptuning.testing import tiny_backbone

# --- the expected tensors are exactly those a model saves ----------------------------------------

SPECS = [
    TaskSpec("c", "classification", labels=("a", "b", "c")),
    TaskSpec("r", "regression"),
    TaskSpec("m", "multiple_choice", labels=("0", "1"), num_choices=2),
    TaskSpec("t", "token_classification", labels=("O", "B-X", "I-X")),
    TaskSpec("q", "question_answering"),
]
CONFIGS = [
    PromptConfig(method="p-tuning-v2", prefix_len=5),
    PromptConfig(method="p-tuning-v2", prefix_len=3, prompt_layers=2),
    PromptConfig(method="p-tuning-v2", prefix_len=3, prefix_projection=True, projection_hidden=7),
    PromptConfig(method="prefix-tuning", prefix_len=2, projection_hidden=6),
    PromptConfig(method="prompt-tuning", prefix_len=4),
    PromptConfig(method="fine-tune"),
]


@pytest.mark.parametrize("model_type", ["bert", "electra"])
@pytest.mark.parametrize("fold", [True, False])
def test_expected_tensors_are_what_a_model_saves(tmp_path, model_type, fold):
    backbone = tiny_backbone(model_type)
    for i, config in enumerate(CONFIGS):
        spec = SPECS[i % len(SPECS)]
        model = PromptModel(backbone, spec, config)
        folder = tmp_path / f"{i}"
        save_checkpoint(model, folder, fold=fold)
        saved = validate_config(folder)
        header = read_header(folder)
        assert {k: shape for k, (_, shape) in header.items()} == expected_tensors(saved, backbone), config


# --- the corrupted-checkpoint matrix --------------------------------------------------------------


def _config(folder: Path) -> dict:
    return json.loads((folder / CONFIG_NAME).read_text())


def _edit_config(change: Callable[[dict], object]) -> Callable[[Path], None]:
    def apply(folder: Path) -> None:
        config = _config(folder)
        change(config)  # in place
        (folder / CONFIG_NAME).write_text(json.dumps(config))

    return apply


def _truncate(size: int | None) -> Callable[[Path], None]:
    def apply(folder: Path) -> None:
        path = folder / WEIGHTS_NAME
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2 if size is None else size])

    return apply


def _huge_header_length(folder: Path) -> None:
    path = folder / WEIGHTS_NAME
    data = path.read_bytes()
    path.write_bytes(struct.pack("<Q", 2**60) + data[8:])


def _huge_shape(folder: Path) -> None:
    path = folder / WEIGHTS_NAME
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    name = next(k for k in header if k != "__metadata__")
    header[name]["shape"] = [10**12, 10**6]
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + length :])


def _tensor(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def apply(folder: Path) -> None:
        state = load_file(str(folder / WEIGHTS_NAME))
        change(state)
        save_file(state, str(folder / WEIGHTS_NAME))

    return apply


def _set(key, value):
    def change(config):
        config["prompt_config" if key in PromptConfig.__dataclass_fields__ else "task"][key] = value

    return change


def _poison(value: float):
    def change(state):
        state["head.classifier.weight"][0, 0] = value

    return change


def _write(name: str, data: bytes) -> Callable[[Path], None]:
    return lambda folder: (folder / name).write_bytes(data)


def _scale(factor: float):
    def change(state):
        for tensor in state.values():
            tensor.mul_(factor)

    return change


def _raw_config(replace: Callable[[str], str]) -> Callable[[Path], None]:
    """Edit the config's JSON text (for what `json.dumps` cannot write, such as a lone surrogate)."""

    def apply(folder: Path) -> None:
        path = folder / CONFIG_NAME
        path.write_text(replace(json.dumps(_config(path.parent))))

    return apply


def _fifo(name: str) -> Callable[[Path], None]:
    def apply(folder: Path) -> None:
        (folder / name).unlink()
        os.mkfifo(folder / name)

    return apply


def _link(name: str, target: str) -> Callable[[Path], None]:
    def apply(folder: Path) -> None:
        (folder / name).unlink()
        (folder / name).symlink_to(target)

    return apply


_SURROGATE_LABEL = lambda text: text.replace('"positive"', '"pos\\ud800"')  # noqa: E731


W, C = WEIGHTS_NAME, CONFIG_NAME
CORRUPTIONS: list[tuple[str, Callable[[Path], None], tuple[str, ...]]] = [
    # (case, corruption, strings the one-line error must contain besides the checkpoint folder)
    ("weights truncated to half", _truncate(None), (W, "safetensors")),
    ("weights truncated to 7 bytes", _truncate(7), (W, "safetensors")),
    ("weights empty", _truncate(0), (W, "empty")),
    ("weights missing", lambda f: (f / W).unlink(), (W,)),
    ("huge header length", _huge_header_length, (W, "safetensors")),
    ("huge shape claim", _huge_shape, (W, "safetensors")),
    ("prefix_len not the tensor's", _edit_config(_set("prefix_len", 8)), (W, "[8, 192]", "[4, 192]")),
    ("labels not the head's", _edit_config(_set("labels", ["a", "b", "c"])), (W, "head.classifier")),
    ("missing task_type", _edit_config(lambda c: c["task"].pop("task_type")), (C, "'task.task_type'")),
    ("bogus method", _edit_config(_set("method", "lora")), (C, "'prompt_config.method'", "p-tuning-v2")),
    ("bogus task type", _edit_config(_set("task_type", "poetry")), (C, "'task.task_type'", "regression")),
    ("prefix_len a string", _edit_config(_set("prefix_len", "16")), (C, "'prompt_config.prefix_len'")),
    ("prefix_len 10^9", _edit_config(_set("prefix_len", 10**9)), (C, "an integer from 1 to 4096")),
    ("prompt_config a string", _edit_config(lambda c: c.update(prompt_config="p")), (C, "JSON object")),
    ("config not UTF-8", _write(C, b'{"backbone": "\xff\xfe"}'), (C, "UTF-8")),
    ("config a JSON list", _write(C, b"[1, 2]"), (C, "JSON object")),
    ("config {}", _write(C, b"{}"), (C, "'backbone'")),
    ("config invalid JSON", _write(C, b'{"backbone": '), (C, "invalid JSON")),
    ("config missing", lambda f: (f / C).unlink(), (C,)),
    ("missing task", _edit_config(lambda c: c.pop("task")), (C, "'task'")),
    ("missing backbone", _edit_config(lambda c: c.pop("backbone")), (C, "'backbone'")),
    ("missing fingerprint", _edit_config(lambda c: c.pop("backbone_fingerprint")), (C, "'backbone_fingerprint'")),
    ("NaN in the weights", _tensor(_poison(math.nan)), (W, "NaN")),
    ("Inf in the weights", _tensor(_poison(math.inf)), (W, "infinite")),
    ("an extra tensor", _tensor(lambda s: s.update(extra=torch.zeros(2))), (W, "'extra'")),
    ("a missing tensor", _tensor(lambda s: s.pop("head.classifier.bias")), (W, "head.classifier.bias")),
    ("an integer tensor", _tensor(lambda s: s.update({"head.classifier.bias": torch.zeros(2, dtype=torch.int64)})), (W, "dtype I64")),
    ("weights x1e30", _tensor(_scale(1e30)), (W, "values up to", "overflow")),
    ("a label with a lone surrogate", _raw_config(_SURROGATE_LABEL), (C, "'task.labels[1]'", "U+D800")),
    ("null_threshold a string", _edit_config(_set("null_threshold", "0.5")), (C, "'task.null_threshold'")),
    ("null_answers a string", _edit_config(_set("null_answers", "yes")), (C, "'task.null_answers'")),
    ("prefix_init bogus", _edit_config(_set("prefix_init", "zeros")), (C, "'prompt_config.prefix_init'")),
    ("inputs a string", _edit_config(lambda c: c.update(inputs="csv")), (C, "'inputs'")),
    ("text_column a number", _edit_config(lambda c: c.update(inputs={"text_column": 3})), (C, "'inputs.text_column'")),
    ("config a FIFO", _fifo(C), (C, "FIFO")),
    ("config a link to /dev/zero", _link(C, "/dev/zero"), (C, "character device")),
    ("weights a FIFO", _fifo(W), (W, "FIFO")),
    ("weights a link to /dev/zero", _link(W, "/dev/zero"), (W, "character device")),
]  # fmt: skip
IDS = [case[0] for case in CORRUPTIONS]


@pytest.fixture(scope="module")
def corrupted(demo_checkpoints, tmp_path_factory) -> dict[str, Path]:
    """Every corruption applied to its own copy of one tiny saved checkpoint."""
    root = tmp_path_factory.mktemp("corrupted")
    folders = {}
    for name, corrupt, _ in CORRUPTIONS:
        folder = root / name.replace(" ", "-").replace("^", "")
        shutil.copytree(demo_checkpoints["sentiment"], folder)
        corrupt(folder)
        folders[name] = folder
    return folders


def _assert_one_line(code: int, err: str, folder: Path, needles: tuple[str, ...]) -> None:
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert str(folder) in err, err
    for needle in needles:
        assert needle in err, (needle, err)


def test_the_uncorrupted_checkpoint_loads(demo_checkpoints, capsys):
    assert main(["predict", "--checkpoint", str(demo_checkpoints["sentiment"]), "fine"]) == 0
    assert '"label"' in capsys.readouterr().out


@pytest.mark.parametrize("case", IDS)
def test_predict_refuses_a_corrupted_checkpoint(corrupted, case, capsys):
    folder = corrupted[case]
    code = main(["predict", "--checkpoint", str(folder), "a fine film"])
    captured = capsys.readouterr()
    assert captured.out == ""
    _assert_one_line(code, captured.err.strip(), folder, CORRUPTIONS[IDS.index(case)][2])


@pytest.mark.parametrize("case", IDS)
def test_eval_refuses_a_corrupted_checkpoint(corrupted, case, capsys, tmp_path):
    folder = corrupted[case]
    data = tmp_path / "dev.csv"
    data.write_text("text,label\nfine,positive\n")
    code = main(["eval", "--checkpoint", str(folder), "--validation-file", str(data)])
    captured = capsys.readouterr()
    assert not list(folder.glob("eval_*.json"))
    _assert_one_line(code, captured.err.strip(), folder, CORRUPTIONS[IDS.index(case)][2])


@pytest.mark.parametrize("case", IDS)
def test_serve_refuses_a_corrupted_checkpoint(corrupted, case, capsys):
    folder = corrupted[case]
    code = main(["serve", "--prompt", f"bad={folder}", "--port", "0"])
    _assert_one_line(code, capsys.readouterr().err.strip(), folder, CORRUPTIONS[IDS.index(case)][2])


def test_unknown_config_keys_are_tolerated(demo_checkpoints, tmp_path, capsys):
    """Newer writers may record more (input columns, max_seq_length): loaders ignore what they do not know."""
    folder = tmp_path / "newer"
    shutil.copytree(demo_checkpoints["sentiment"], folder)
    _edit_config(
        lambda c: (
            c.update(max_seq_length=64, input_columns={"text": "review"}),
            c["task"].update(text_column="review"),
            c["prompt_config"].update(future_option=True),
        )
    )(folder)
    assert main(["predict", "--checkpoint", str(folder), "fine"]) == 0
    assert '"label"' in capsys.readouterr().out


def test_hot_add_refuses_every_corrupted_checkpoint(corrupted, demo_checkpoints):
    """POST /v1/tasks/{name} with each corrupted folder: 422 naming what was wrong, never a 500."""
    from ptuning.serving import MultiTaskPredictor
    from ptuning.serving.app import create_app
    from ptuning.serving.settings import ServeSettings
    from tests.serving.helpers import ServerThread

    predictor = MultiTaskPredictor.from_checkpoints({"ner": demo_checkpoints["ner"]})
    settings = ServeSettings(admin_token="s3cret-token")
    auth = {"authorization": "Bearer s3cret-token"}
    with ServerThread(create_app(predictor, settings)) as server, httpx.Client(base_url=server.url) as c:
        for i, (case, _, needles) in enumerate(CORRUPTIONS):
            folder = corrupted[case]
            response = c.post(f"/v1/tasks/bad{i}", json={"path": str(folder)}, headers=auth)
            assert response.status_code == 422, (case, response.text)
            message = response.json()["detail"][0]["msg"]
            assert len(message.splitlines()) == 1, (case, message)
            # a folder without a (regular) config gets the neutral answer
            if case != "config missing" and not (case in NOT_REGULAR and C in needles):
                for needle in needles:
                    assert needle in message, (case, needle, message)
            assert c.get("/health").json()["status"] == "ok"
        assert [t["name"] for t in c.get("/v1/tasks").json()["tasks"]] == ["ner"]
        good = c.post("/v1/tasks/ok", json={"path": str(demo_checkpoints["sentiment"])}, headers=auth)
        assert good.status_code == 201, good.text


# --- files that are not regular files, every field's type, magnitudes, reading the config once -----

NOT_REGULAR = [case for case in IDS if "FIFO" in case or "/dev/zero" in case]


@contextlib.contextmanager
def _deadline(seconds: float):
    """Fail (instead of hanging the suite) when the block takes longer than `seconds`."""

    def expire(signum, frame):
        raise TimeoutError(f"still running after {seconds} s: the file was read as if it were regular")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("case", NOT_REGULAR)
def test_a_fifo_or_dev_zero_is_refused_at_once(corrupted, case, capsys, tmp_path):
    """A FIFO would block the open forever, /dev/zero would be read until memory runs out."""
    folder = corrupted[case]
    data = tmp_path / "dev.csv"
    data.write_text("text,label\nfine,positive\n")
    needles = CORRUPTIONS[IDS.index(case)][2]
    for args in (
        ["predict", "--checkpoint", str(folder), "fine"],
        ["eval", "--checkpoint", str(folder), "--validation-file", str(data)],
        ["serve", "--prompt", f"bad={folder}", "--port", "0"],
    ):
        with _deadline(60):
            code = main(args)
        _assert_one_line(code, capsys.readouterr().err.strip(), folder, needles)


def test_checkpoint_files_are_read_with_a_size_cap(demo_checkpoints, tmp_path):
    from ptuning.checkpoint import MAX_CONFIG_BYTES, read_checkpoint_file
    from ptuning.errors import CheckpointError

    small = tmp_path / "small.json"
    small.write_bytes(b" " * 2048)
    with pytest.raises(CheckpointError, match="2048 bytes, larger than the 1024"):
        read_checkpoint_file(small, limit=1024)
    assert read_checkpoint_file(small, limit=2048) == b" " * 2048
    folder = tmp_path / "huge-config"
    shutil.copytree(demo_checkpoints["sentiment"], folder)
    with open(folder / CONFIG_NAME, "r+b") as handle:  # sparse: no disk used
        handle.truncate(MAX_CONFIG_BYTES + 1)
    with pytest.raises(CheckpointError, match="larger than"), _deadline(30):
        validate_config(folder)


def _wrong_type(value):
    """A JSON value of a type no config field has where `value` is (an object is never a leaf)."""
    return "x" if isinstance(value, dict) else {"bad": 1}


def test_every_config_field_is_type_checked(demo_checkpoints, tmp_path):
    """Each key the writer records (and every field of the prompt config, the task and the input
    format) given a value of the wrong type: a CheckpointError naming that key, never a later
    TypeError."""
    from dataclasses import fields

    from ptuning.checkpoint import Checkpoint
    from ptuning.data.inputs import InputFormat
    from ptuning.errors import CheckpointError

    config = _config(demo_checkpoints["sentiment"])
    config.update(inputs=InputFormat("jsonl", "s1", "s2").to_dict(), max_seq_length=64)
    keys = [(key,) for key in config]
    keys += [("prompt_config", f.name) for f in fields(PromptConfig)]
    keys += [("task", f.name) for f in fields(TaskSpec)]
    keys += [("inputs", f.name) for f in fields(InputFormat)]
    folder = tmp_path / "ckpt"
    folder.mkdir()
    for key in keys:
        broken = json.loads(json.dumps(config))
        parent = broken if len(key) == 1 else broken[key[0]]
        parent[key[-1]] = _wrong_type(parent.get(key[-1]))
        (folder / CONFIG_NAME).write_text(json.dumps(broken))
        with pytest.raises(CheckpointError) as info:
            Checkpoint.read(folder)
        assert f"'{'.'.join(key)}" in str(info.value), (key, str(info.value))


def test_weights_of_a_sane_magnitude_pass_and_huge_ones_are_refused(demo_checkpoints, tmp_path, capsys):
    from ptuning.checkpoint import MAX_ABS_WEIGHT

    for factor, code in ((MAX_ABS_WEIGHT / 10, 0), (MAX_ABS_WEIGHT * 10, 2)):
        folder = tmp_path / f"x{factor:g}"
        shutil.copytree(demo_checkpoints["sentiment"], folder)
        # every tensor scaled so that its largest value is `factor`
        _tensor(lambda s: [t.mul_(factor / float(t.abs().max())) for t in s.values() if t.any()])(folder)  # noqa: B023
        assert main(["predict", "--checkpoint", str(folder), "fine"]) == code
        captured = capsys.readouterr()
        if code == 0:
            json.loads(captured.out)  # valid JSON: no NaN
        else:
            assert "values up to" in captured.err and captured.out == ""


def test_predict_never_prints_nan(demo_checkpoints, monkeypatch, capsys):
    """Weights the validator lets through may still overflow on some input: an error, not NaN."""
    import numpy as np

    from ptuning.inference import Predictor

    def overflowing(self, features):
        return [np.full(len(self.spec.labels), np.nan, dtype=np.float32) for _ in features]

    monkeypatch.setattr(Predictor, "logits", overflowing)
    folder = demo_checkpoints["sentiment"]
    code = main(["predict", "--checkpoint", str(folder), "fine"])
    captured = capsys.readouterr()
    assert captured.out == ""
    _assert_one_line(code, captured.err.strip(), folder, ("NaN",))


def test_a_predictor_reads_its_checkpoint_config_once(demo_checkpoints, monkeypatch):
    from ptuning.checkpoint import schema as validation
    from ptuning.inference import Predictor

    reads: list[str] = []
    original = validation.read_checkpoint_file

    def counting(path, **kwargs):
        reads.append(Path(path).name)
        return original(path, **kwargs)

    monkeypatch.setattr(validation, "read_checkpoint_file", counting)
    predictor = Predictor.from_checkpoint(demo_checkpoints["sentiment"])
    assert reads.count(CONFIG_NAME) == 1, reads
    assert predictor.predict(["fine"])[0]["label"] in ("negative", "positive")
