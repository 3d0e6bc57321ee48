"""`ptuning tune` (Optuna search) and `ptuning train --config FILE`."""

from __future__ import annotations

import csv
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ptuning.cli import build_parser, main
from ptuning.commands import train as train_command
from ptuning.tuning.space import Choice, Range, SpaceError, parse_space, space_for
from tests.helpers import kill_when

FIXED = [
    "--task", "sst2", "--max-train-samples", "24", "--max-eval-samples", "12", "--max-steps", "3",
    "--batch-size", "8", "--max-seq-length", "32", "--seed", "3",
]  # fmt: skip
# the default space minus the MLP, so every trial of the tiny model takes a second or two
SPACE = ["--space", "lr=1e-3:1e-1,prefix_len=2,4,prefix_projection=false"]


def _tune(backbone: Path, out: Path, *extra: str) -> list[str]:
    return ["tune", "--backbone", str(backbone), "--output-dir", str(out), *FIXED, *SPACE, *extra]


def _rows(out: Path) -> list[dict]:
    with open(out / "trials.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def search(tiny_bert_dir, tmp_path_factory) -> Path:
    """One trial, then --resume with --trials 2: the study gains exactly one more."""
    if not Path(os.environ.get("PTUNING_DATA", "")).is_dir():
        pytest.skip("benchmark data folder ../shared/data is not present")
    out = tmp_path_factory.mktemp("search")
    assert main(_tune(tiny_bert_dir, out, "--trials", "1")) == 0
    first = _rows(out)
    assert [row["state"] for row in first] == ["COMPLETE"]
    assert main(_tune(tiny_bert_dir, out, "--trials", "2", "--resume")) == 0
    rows = _rows(out)
    assert [row["number"] for row in rows] == ["0", "1"]
    assert rows[0] == first[0]  # the first trial was not run again
    return out


def test_two_trial_search_writes_table_config_and_plots(search, capsys):
    rows = _rows(search)
    assert all(row["state"] == "COMPLETE" for row in rows)
    assert all(1e-3 <= float(row["lr"]) <= 1e-1 and row["prefix_len"] in ("2", "4") for row in rows)
    summary = json.loads((search / "search.json").read_text())
    best = max(rows, key=lambda row: float(row["value"]))
    assert summary["best_value"] == pytest.approx(float(best["value"]))
    assert summary["metric"] == "accuracy" and summary["finished"] == 2
    config = json.loads((search / "best_config.json").read_text())
    trial = summary["best_params"]
    assert (config["lr"], config["prefix_len"], config["prefix_projection"]) == (
        trial["lr"],
        trial["prefix_len"],
        trial["prefix_projection"],
    )
    assert (config["max_steps"], config["seed"], config["max_train_samples"]) == (3, 3, 24)  # fixed ones
    assert not {"output_dir", "resume", "overwrite", "config", "quiet"} & set(config)
    for png in ("optimization_history.png", "param_importances.png"):
        assert (search / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = json.loads((Path(summary["best_output_dir"]) / "metrics.json").read_text())
    assert metrics["validation"]["accuracy"] == summary["best_value"]


def test_search_is_not_replaced_without_resume(search, tiny_bert_dir, capsys):
    assert main(_tune(tiny_bert_dir, search, "--trials", "2")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--resume" in err and "already holds a search" in err


def test_resume_with_other_fixed_settings_is_refused(search, tiny_bert_dir, capsys):
    args = _tune(tiny_bert_dir, search, "--trials", "3", "--resume")
    args[args.index("--seed") + 1] = "4"
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "seed" in err and "other fixed settings" in err
    assert len(_rows(search)) == 2


def test_train_config_reproduces_the_best_trial(search, tmp_path):
    summary = json.loads((search / "search.json").read_text())
    out = tmp_path / "again"
    args = ["train", "--config", str(search / "best_config.json"), "--output-dir", str(out), "--quiet"]
    assert main(args) == 0
    trial_dir = Path(summary["best_output_dir"])
    ignore = ("output_dir", "progress", "overwrite", "resume", "run_id")
    mine, theirs = (
        {k: v for k, v in json.loads((d / "train_config.json").read_text()).items() if k not in ignore}
        for d in (out, trial_dir)
    )
    assert mine == theirs
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["validation"]["accuracy"] == summary["best_value"]  # same seed, same settings
    assert (
        metrics["validation"]["loss"]
        == json.loads((trial_dir / "metrics.json").read_text())["validation"]["loss"]
    )


def _args_with_config(path: Path, *flags: str):
    argv = ["train", "--config", str(path), *flags]
    args = build_parser().parse_args(argv)
    args._argv = argv[1:]
    return train_command.config_from_args(train_command.with_config_file(args))


def test_command_line_options_override_the_config_file(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"prefix_len": 8, "lr": 0.05, "task": "rte", "prefix_projection": True}))
    cfg = _args_with_config(path)
    assert (cfg.prompt.prefix_len, cfg.learning_rate, cfg.task, cfg.prompt.prefix_projection) == (
        8,
        0.05,
        "rte",
        True,
    )
    # an explicit flag wins even where it equals the option's default (16)
    cfg = _args_with_config(path, "--prefix-len", "16", "--task", "sst2")
    assert (cfg.prompt.prefix_len, cfg.learning_rate, cfg.task) == (16, 0.05, "sst2")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{\n  "prefix_len": 8,\n  "learning_rate": 0.1\n}', ":3: unknown setting 'learning_rate'"),
        (
            '{\n  "prefix_len": "eight"\n}',
            ':2: prefix_len (--prefix-len) expects a whole number, got "eight"',
        ),
        ('{\n  "method": "lora"\n}', ":2: method (--method) expects one of"),
        (
            '{\n  "prefix_projection": 1\n}',
            ":2: prefix_projection (--prefix-projection) expects true or false",
        ),
        ('{\n  "seed": null\n}', ":2: seed (--seed) expects a value, got null"),
        ('{\n  "config": "other.json"\n}', ":2: unknown setting 'config'"),
        ('{\n  "prefix_len": 8,\n}', ":3: not valid JSON"),
        ("[1, 2]", ":1: expected a JSON object of settings"),
    ],
)
def test_bad_config_file_is_one_line(content, expected, tmp_path, capsys):
    path = tmp_path / "bad.json"
    path.write_text(content)
    assert main(["train", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith(f"ptuning train: error: {path}{expected}"), err


def test_config_file_not_utf8_or_too_deep_is_one_line(tmp_path, capsys):
    latin = tmp_path / "latin.json"
    latin.write_bytes(b'{"task": "caf\xe9"}')
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    for path, expected in ((latin, "not UTF-8 text"), (deep, "nested too deeply")):
        assert main(["train", "--config", str(path)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and str(path) in err and expected in err, err


def test_space_syntax():
    space = parse_space("lr=1e-3:1e-1,prefix_len=4,8,16,32,64,prompt_dropout=0:0.2,epochs=2")
    assert space == {
        "lr": Range(1e-3, 1e-1, log=True),
        "prefix_len": Choice((4, 8, 16, 32, 64)),
        "prompt_dropout": Range(0.0, 0.2, log=False),
        "epochs": Choice((2.0,)),
    }
    assert parse_space("prefix_projection=false,true") == {"prefix_projection": Choice((False, True))}
    space, notes = space_for("prompt-tuning", "prefix_len=4:64", max_steps=10)
    assert space["prefix_len"] == Range(4, 64) and "epochs" not in space and notes
    assert "prefix_projection" in space_for("p-tuning-v2", None)[0]
    assert set(space_for("fine-tune", None)[0]) == {"lr", "epochs"}
    with pytest.raises(SpaceError):
        space_for("fine-tune", "prefix_len=4,8")


@pytest.mark.parametrize(
    ("space", "expected"),
    [
        ("lr=abc", "lr expects a number, got 'abc'"),
        ("lr=1e-1:1e-3", "needs low < high"),
        ("lr=0:1e-1", "lr must be a number > 0 and <= 1, got 0"),
        ("lr=1e-3:inf", "lr expects a finite number, got 'inf'"),
        ("lr=1e-3:1e308", "lr must be a number > 0 and <= 1, got 1e+308"),
        ("lr=nan:1e-1", "lr expects a finite number"),
        ("prefix_len=100000", "prefix_len must be a whole number from 1 to 4096, got 100000"),
        ("prefix_len=inf", "prefix_len expects a finite number"),
        ("prompt_layers=1:100000", "prompt_layers must be a whole number from 1 to 10000"),
        ("epochs=1:1e9", "epochs must be a number > 0 and <= 10000"),
        ("batch_size=8,1e9", "batch_size must be a whole number from 1 to 65536"),
        ("foo=1", "unknown parameter 'foo'"),
        ("4,8", "expected name=values"),
        ("prefix_len=4:8:16", "expects a range low:high"),
        ("prefix_len=4.5,8", "prefix_len expects a whole number"),
        ("prefix_len=", "prefix_len has an empty value"),
        ("prefix_len=4,,8", "prefix_len has an empty value"),
        ("prefix_len=0,8", "prefix_len must be a whole number from 1 to 4096, got 0"),
        ("prefix_projection=0:1", "not a range"),
        ("prefix_projection=maybe", "expects true or false"),
        ("prompt_dropout=0:1.5", "prompt_dropout must be a number from 0 to 1, got 1.5"),
        ("prompt_dropout=0:1", "prompt_dropout must be a number from 0 to below 1"),
        ("lr=1e-3:1e-2,lr=1e-2", "lr is given twice"),
        ("prefix_len=4,8:16", "mixes a range and a list"),
    ],
)
def test_bad_space_is_one_line_exit_2(space, expected, capsys):
    assert main(["tune", "--task", "sst2", "--space", space]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith(f"ptuning tune: error: --space {space!r}: ") and expected in err, err


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--method", "fine-tune", "--space", "prefix_len=4,8"], "fine-tune has no prompt"),
        (["--method", "prompt-tuning", "--space", "prefix_projection=true"], "p-tuning-v2 only"),
        (["--max-steps", "5", "--space", "epochs=1,2"], "epochs cannot be searched with --max-steps"),
        (["--method", "handcrafted"], "no hyperparameters to search"),
        (["--trials", "0"], "--trials must be >= 1"),
        (["--timeout", "0"], "--timeout must be > 0 seconds"),
        (["--task", "conll03,conll04"], "one task at a time"),
    ],
)
def test_searches_that_cannot_run_are_one_line(args, expected, capsys):
    assert main(["tune", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err, err


@pytest.mark.slow
def test_search_killed_mid_trial_resumes(tiny_bert_dir, shared_data, tmp_path):
    out = tmp_path / "killed"
    args = _tune(tiny_bert_dir, out, "--trials", "1", "--max-train-samples", "400", "--max-steps", "50")
    # once the first trial trains (a run records its settings beside its training checkpoints)
    kill_when(args, (out / "trials" / "0" / "checkpoints" / "train_config.json").is_file)
    assert not (out / "trials" / "0" / "metrics.json").exists()  # killed mid-trial
    assert main([*args, "--resume"]) == 0
    rows = _rows(out)
    # the killed trial stays RUNNING until its heartbeat is stale (then Optuna retries it); one more finished
    assert [row["state"] for row in rows] == ["RUNNING", "COMPLETE"]
    assert json.loads((out / "best_config.json").read_text())["max_steps"] == 50


def test_a_stale_trial_is_retried_from_its_checkpoints(
    tiny_bert_dir, shared_data, tmp_path, monkeypatch, capsys
):
    """A trial killed after a checkpoint goes stale; its retry (same parameters) resumes that run in
    the killed trial's folder, keeping the evaluations reported before the kill."""
    import optuna

    from ptuning.tuning import search

    out = tmp_path / "stale"
    args = _tune(
        tiny_bert_dir,
        out,
        "--trials",
        "1",
        "--max-train-samples",
        "400",
        "--max-steps",
        "50",
        "--save-steps",
        "10",
    )
    checkpoints = out / "trials" / "0" / "checkpoints"
    kill_when(args, lambda: any(checkpoints.glob("checkpoint-*/trainer_state.json")))
    monkeypatch.setattr(search, "HEARTBEAT_S", 1)
    monkeypatch.setattr(search, "GRACE_S", 1)  # the killed trial's heartbeat is stale at once
    time.sleep(1.5)
    assert main([*args, "--resume"]) == 0
    printed = capsys.readouterr().out
    assert "trial 1 retries trial 0" in printed and "resuming from" in printed
    assert [row["state"] for row in _rows(out)] == ["FAIL", "COMPLETE"]
    study = optuna.load_study(study_name=search.STUDY_NAME, storage=f"sqlite:///{out / 'study.db'}")
    killed, retry = study.trials
    assert retry.params == killed.params and retry.user_attrs["output_dir"] == str(out / "trials" / "0")
    assert set(killed.intermediate_values) < set(retry.intermediate_values)  # kept, then continued
    assert (out / "trials" / "0" / "metrics.json").is_file() and not (out / "trials" / "1").exists()


def test_a_trial_is_pruned_from_its_dev_metric(tiny_bert_dir, shared_data, tmp_path):
    """PruneCallback reports every evaluation to the trial and stops training once Optuna prunes it."""
    import optuna

    from ptuning.training.config import TrainConfig
    from ptuning.training.run import train
    from ptuning.tuning.search import PruneCallback

    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=2.0))
    trial = study.ask()  # an accuracy is always below 2: pruned at the first evaluation
    cfg = TrainConfig.build(
        task="sst2", backbone=str(tiny_bert_dir), max_train_samples=32, max_eval_samples=8, batch_size=8,
        max_seq_length=32, prefix_len=2, epochs=3, output_dir=str(tmp_path / "pruned"), progress=False,
    )  # fmt: skip
    with pytest.raises(optuna.TrialPruned, match="eval_accuracy .* at step 4"):
        train(cfg, callbacks=[PruneCallback(trial)])
    assert list(study.trials[0].intermediate_values) == [4]  # one epoch of 4 steps, then stopped
    assert not (tmp_path / "pruned" / "metrics.json").exists()


def test_a_trial_whose_prefix_outgrew_the_backbone_is_pruned(tiny_bert_dir, shared_data, tmp_path):
    """Whatever the pruner says: the prefix at 10x the backbone's keys or values does not recover."""
    import optuna

    from ptuning.training.config import TrainConfig
    from ptuning.training.run import train
    from ptuning.tuning.search import PruneCallback

    def trial_at(lr: float, name: str):
        study = optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner())
        cfg = TrainConfig.build(
            task="sst2", backbone=str(tiny_bert_dir), max_train_samples=32, max_eval_samples=8, batch_size=8,
            max_seq_length=32, prefix_len=2, prefix_projection=True, lr=lr, warmup_ratio=0.0, epochs=2,
            output_dir=str(tmp_path / name), progress=False,
        )  # fmt: skip
        return study, cfg

    study, cfg = trial_at(1.0, "outgrown")
    trial = study.ask()
    with pytest.raises(
        optuna.TrialPruned, match=r"at step 4: the prefix's (keys|values) in layer \d are \d+x"
    ):
        train(cfg, callbacks=[PruneCallback(trial)])
    assert list(trial.study.trials[0].intermediate_values) == [4]
    assert "x the size of the backbone's own" in study.trials[0].user_attrs["pruned_because"]

    study, cfg = trial_at(1e-4, "small")  # the same trial at a small rate trains to its end
    trial = study.ask()
    train(cfg, callbacks=[PruneCallback(trial)])
    assert list(study.trials[0].intermediate_values) == [4, 8]
    assert "pruned_because" not in study.trials[0].user_attrs


def test_a_search_that_failed_on_its_data_is_one_line_and_starts_again(
    tiny_bert_dir, shared_data, tmp_path, capsys
):
    out = tmp_path / "nodata"
    assert main(_tune(tiny_bert_dir, out, "--trials", "1", "--data-dir", str(tmp_path / "missing"))) == 2
    captured = capsys.readouterr()
    assert len(captured.err.strip().splitlines()) == 1 and "ptuning tune: error:" in captured.err
    # nothing trained: the same folder takes the corrected search without --resume or --overwrite
    assert main(_tune(tiny_bert_dir, out, "--trials", "1")) == 0
    assert [row["state"] for row in _rows(out)] == ["FAIL", "COMPLETE"]
    notes = json.loads((out / "search.json").read_text())["notes"]
    assert any("no parameter importances: they need >= 2 complete trials" in note for note in notes)
    assert (out / "optimization_history.png").is_file() and not (out / "param_importances.png").exists()


def test_tune_reads_fixed_settings_from_a_config_file(tmp_path, capsys):
    path = tmp_path / "fixed.json"
    path.write_text('{\n  "task": "sst2",\n  "trials": "many"\n}')
    assert main(["tune", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f'ptuning tune: error: {path}:3: trials (--trials) expects a whole number, got "many"'
    path.write_text('{"method": "fine-tune", "space": "prefix_len=4,8"}')  # the file's method meets the space
    assert main(["tune", "--config", str(path)]) == 2
    assert "fine-tune has no prompt" in capsys.readouterr().err


@pytest.mark.slow
def test_two_processes_share_one_study(tiny_bert_dir, shared_data, tmp_path):
    out = tmp_path / "shared"
    args = [sys.executable, "-m", "ptuning", *_tune(tiny_bert_dir, out, "--trials", "2", "--resume")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(2)
    ]
    outputs = [proc.communicate(timeout=300)[0] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], outputs
    numbers = [int(row["number"]) for row in _rows(out) if row["state"] == "COMPLETE"]
    # each process stops once the study holds 2 finished trials; the other may be mid-trial then (a 3rd)
    assert 2 <= len(numbers) <= 3 and numbers == list(range(len(numbers)))
    ran = [{int(n) for n in re.findall(r"^trial (\d+) complete", text, re.M)} for text in outputs]
    assert not ran[0] & ran[1] and ran[0] | ran[1] == set(numbers)  # never the same trial twice


def test_a_seeded_qmc_search_proposes_the_same_spread_trials(tiny_bert_dir, shared_data, tmp_path):
    space = ["--space", "lr=1e-3:1e-1,prefix_len=2,prefix_projection=false"]
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        args = ["tune", "--backbone", str(tiny_bert_dir), "--output-dir", str(out), *FIXED, *space]
        assert main([*args, "--trials", "3", "--sampler", "qmc", "--sampler-seed", "7"]) == 0
        runs.append([float(row["lr"]) for row in _rows(out)])
    assert runs[0] == runs[1]  # the same seed proposes the same trials
    logs = sorted(math.log10(lr) for lr in runs[0])
    assert len(set(logs)) == 3 and logs[-1] - logs[0] > 0.5  # spread over the log range, not clumped
    assert "sampler" not in json.loads((tmp_path / "a" / "best_config.json").read_text())


def test_fixed_lr_and_prefix_len_are_bounded_before_anything_loads(capsys):
    assert main(["tune", "--task", "sst2", "--lr", "1e308"]) == 2
    assert "lr must be a number > 0 and <= 1, got 1e+308" in capsys.readouterr().err
    assert main(["train", "--task", "sst2", "--prefix-len", "5000"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "ptuning train: error: prefix_len must be a whole number from 1 to 4096, got 5000"


def test_the_bounds_are_the_checkpoint_validators():
    """train refuses exactly the prompt lengths the checkpoint validator refuses (one shared limit)."""
    from ptuning.core.limits import MAX_PREFIX_LEN
    from ptuning.core.limits import MAX_PREFIX_LEN as VALIDATOR_MAX
    from ptuning.training.config import TrainConfig

    assert VALIDATOR_MAX == MAX_PREFIX_LEN
    assert TrainConfig.build(prefix_len=MAX_PREFIX_LEN).prompt.prefix_len == MAX_PREFIX_LEN
    with pytest.raises(ValueError, match="prefix_len must be"):
        TrainConfig.build(prefix_len=MAX_PREFIX_LEN + 1)
    assert parse_space(f"prefix_len={MAX_PREFIX_LEN}") == {"prefix_len": Choice((MAX_PREFIX_LEN,))}


def test_space_replaces_the_parameters_it_names_and_space_only_drops_the_rest():
    default = space_for("p-tuning-v2", None)[0]
    space, _ = space_for("p-tuning-v2", "lr=1e-3:1e-2,prefix_len=4,16")
    assert space["lr"] == Range(1e-3, 1e-2, log=True) and space["prefix_len"] == Choice((4, 16))
    assert set(space) == set(default)  # the others keep their default distributions
    assert space["epochs"] == default["epochs"]
    only, _ = space_for("p-tuning-v2", "lr=1e-3:1e-2,prefix_len=4,16", only=True)
    assert set(only) == {"lr", "prefix_len"}
    with pytest.raises(SpaceError, match="--space-only needs --space"):
        space_for("p-tuning-v2", None, only=True)


def test_dry_run_prints_the_space_and_budget_without_torch(tmp_path):
    out = tmp_path / "plan"
    code = (
        "import sys; from ptuning.cli import main; rc = main(sys.argv[1:]); "
        "print('torch loaded' if 'torch' in sys.modules else 'no torch'); sys.exit(rc)"
    )
    args = ["tune", "--task", "rte", "--output-dir", str(out), "--trials", "7", "--dry-run"]
    args += ["--space", "lr=1e-3:1e-2,prefix_len=4,16", "--space-only", "--max-steps", "30"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    done = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert "search space of p-tuning-v2 (2 parameters):" in text
    assert "lr (--lr): 0.001:0.01 (log)" in text and "prefix_len (--prefix-len): 4,16" in text
    assert "epochs" not in text.split("budget:")[0]
    assert "budget: 7 finished trials in all; each trains --max-steps 30" in text
    assert text.strip().endswith("no torch")
    assert not out.exists()  # nothing written


def test_best_config_holds_absolute_paths(tmp_path, monkeypatch):
    """Relative file and folder settings are fixed as absolute paths (best_config.json is read from
    anywhere)."""
    from ptuning.commands import tune as tune_command

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    seen = {}

    def fake_search(cfg, build):
        seen["fixed"] = cfg.fixed
        raise SystemExit(0)

    monkeypatch.setattr("ptuning.tuning.search.run_search", fake_search)
    args = build_parser().parse_args(
        ["tune", "--train-file", "data/train.csv", "--validation-file", "data/dev.csv",
         "--data-dir", "data", "--output-dir", "out"]
    )  # fmt: skip
    args._argv = []
    with pytest.raises(SystemExit):
        tune_command.run(args)
    fixed = seen["fixed"]
    assert fixed["train_file"] == str(tmp_path / "data" / "train.csv")
    assert fixed["validation_file"] == str(tmp_path / "data" / "dev.csv")
    assert fixed["data_dir"] == str(tmp_path / "data")


def _ask_and_tell(study, space, n):
    from ptuning.tuning.search import suggest

    for _ in range(n):
        trial = study.ask()
        params = suggest(trial, space)
        study.tell(trial, params["lr"])


@pytest.mark.parametrize("sampler", ["tpe", "qmc"])
def test_a_resumed_seeded_search_never_repeats_a_finished_trial(sampler, tmp_path):
    """Two trials, then the study opened again with --resume: the next trials are new points (a seeded
    TPE sampler started over from its seed used to propose trials 0 and 1 again)."""
    from ptuning.tuning.search import TuneConfig, open_study

    space = parse_space("lr=1e-4:1e-1,prefix_len=2,4,8,16,32")
    cfg = TuneConfig(fixed={}, space=space, output_dir=tmp_path, seed=5, sampler=sampler)
    _ask_and_tell(open_study(cfg), space, 2)
    cfg.resume = True
    study = open_study(cfg)
    _ask_and_tell(study, space, 2)
    params = [tuple(sorted(t.params.items())) for t in study.trials]
    assert len(params) == 4 and len(set(params)) == 4, params
    # still repeatable: the same seed and history propose the same resumed trials
    again = tmp_path / "again"
    cfg2 = TuneConfig(fixed={}, space=space, output_dir=again, seed=5, sampler=sampler)
    _ask_and_tell(open_study(cfg2), space, 2)
    cfg2.resume = True
    study2 = open_study(cfg2)
    _ask_and_tell(study2, space, 2)
    assert [t.params for t in study2.trials] == [t.params for t in study.trials]


def test_a_fresh_search_is_refused_on_a_folder_in_use(tmp_path, capsys):
    """Another process (here: a lock held by this test) writing the folder: tune exits 2 naming it;
    --resume joins a search shared the same way."""
    from ptuning.training.output_dir import OutputLock

    out = tmp_path / "busy"
    out.mkdir()
    with OutputLock(out, command="ptuning tune --task rte"):
        assert main(["tune", "--task", "sst2", "--output-dir", str(out), "--trials", "1"]) == 2
        err = capsys.readouterr().err
        assert "is in use by another ptuning process" in err and "`ptuning tune --task rte`" in err
    with OutputLock(out, shared=True, command="ptuning tune --resume"):
        assert main(["tune", "--task", "sst2", "--output-dir", str(out), "--trials", "1"]) == 2
        assert "is in use" in capsys.readouterr().err  # a fresh search does not join a shared one


def test_successive_halving_over_epochs_prunes_a_trial_behind_the_best_third(tmp_path):
    import optuna

    from ptuning.tuning.search import PruneCallback, TuneConfig, TuneError, _pruner

    cfg = TuneConfig(fixed={}, space={}, output_dir=tmp_path, pruner="successive-halving", by_epoch=True)
    study = optuna.create_study(direction="maximize", pruner=_pruner(cfg))
    for value in (0.9, 0.8, 0.85):  # three trials reach epoch 1; the next is worse than all of them
        trial = study.ask()
        trial.report(value, step=1)
        trial.should_prune()  # the pruner records each trial's value at the rung it checks
        study.tell(trial, value)

    class Args:
        metric_for_best_model = "eval_accuracy"

    class State:
        epoch, global_step = 1.0, 140  # the first epoch's evaluation, after 140 optimizer steps

    trial = study.ask()
    callback = PruneCallback(trial, by_epoch=True)
    with pytest.raises(optuna.TrialPruned, match="at epoch 1"):
        callback.on_evaluate(Args, State, None, metrics={"eval_accuracy": 0.5})
    assert trial.storage.get_trial(trial._trial_id).intermediate_values == {1: 0.5}  # reported at epoch 1
    with pytest.raises(TuneError, match="unknown pruner 'nope'"):
        _pruner(TuneConfig(fixed={}, space={}, output_dir=tmp_path, pruner="nope"))


def test_param_importances_need_two_complete_trials():
    import optuna

    from ptuning.tuning.results import param_importances

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: t.suggest_float("lr", 1e-3, 1e-1, log=True), n_trials=1)
    found, note = param_importances(study)
    assert found is None and "need >= 2 complete trials, the study has 1" in note
    study.optimize(
        lambda t: t.suggest_float("lr", 1e-3, 1e-1, log=True) + 0 * t.suggest_int("p", 1, 8), n_trials=6
    )
    found, note = param_importances(study)
    assert note is None and set(found) == {"lr", "p"} and abs(sum(found.values()) - 1) < 1e-6


def test_importances_weigh_a_split_learning_rate_as_one_parameter():
    """Trials that drew lr or mlp_lr by their prefix_projection: the importances see the rate each
    trained at as one `lr`, and here only the rate decides the value."""
    import math

    import optuna

    from ptuning.tuning.results import param_importances
    from ptuning.tuning.search import suggest

    space = parse_space("lr=3e-3:1e-1,prefix_projection=false,true,mlp_lr=3e-4:1e-2,prefix_len=8,16")

    def objective(trial):
        params = suggest(trial, space)
        return -abs(math.log10(params.get("mlp_lr", params.get("lr"))) + 2)

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(objective, n_trials=24)
    found, note = param_importances(study)
    assert note is None and set(found) == {"lr", "prefix_projection", "prefix_len"}
    assert max(found, key=found.get) == "lr"


def test_importances_are_the_same_each_time_and_in_the_plot(tmp_path, monkeypatch):
    """search.json's importances repeat, and param_importances.png draws those numbers, for the
    same one-rate view (`lr`, not `lr` and `mlp_lr` apart)."""
    import math

    import matplotlib.pyplot as plt
    import optuna

    from ptuning.tuning.results import IMPORTANCES_PNG, _importance_view, _plots, param_importances
    from ptuning.tuning.search import suggest

    space = parse_space("lr=3e-3:1e-1,prefix_projection=false,true,mlp_lr=3e-4:1e-2,prompt_dropout=0:0.3")

    def objective(trial):
        params = suggest(trial, space)
        return -abs(math.log10(params.get("mlp_lr", params.get("lr"))) + 2) + 0.3 * params["prompt_dropout"]

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=1))
    study.optimize(objective, n_trials=16)
    first, _ = param_importances(study)
    assert param_importances(study)[0] == first
    figures = []
    monkeypatch.setattr(plt, "close", figures.append)
    written, notes = _plots(study, _importance_view(study), tmp_path, "accuracy")
    assert IMPORTANCES_PNG in written and (tmp_path / IMPORTANCES_PNG).is_file() and not notes
    axes = figures[-1].axes[0]
    drawn = {
        label.get_text(): bar.get_width()
        for label, bar in zip(axes.get_yticklabels(), axes.patches, strict=True)
    }
    assert set(drawn) == set(first) == {"lr", "prefix_projection", "prompt_dropout"}
    for name, value in first.items():
        assert drawn[name] == pytest.approx(value, abs=1e-9)


def test_a_pruned_trial_before_any_complete_one_is_reported_not_raised(capsys):
    """Successive halving may prune the first trial a process finishes (a resumed study's rungs come
    from trials run before): the per-trial line then names no best trial instead of raising
    (study.best_trial raises while no trial has completed)."""
    import optuna

    from ptuning.tuning.search import _print_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    pruned = optuna.trial.create_trial(
        state=optuna.trial.TrialState.PRUNED,
        value=0.61,
        params={},
        distributions={},
        user_attrs={"metric": "f1"},
    )
    study.add_trial(pruned)
    _print_trial(study, study.trials[-1])
    assert capsys.readouterr().out == "trial 0 pruned f1 0.6100\n"
    study.add_trial(optuna.trial.create_trial(value=0.7, params={}, distributions={}))
    study.add_trial(pruned)
    _print_trial(study, study.trials[-1])
    assert capsys.readouterr().out == "trial 2 pruned f1 0.6100 (best so far: trial 1)\n"


@pytest.mark.parametrize("sampler", ["tpe", "qmc"])
def test_mlp_lr_is_the_rate_of_the_reparameterized_prefix_and_lr_of_the_plain_one(sampler, tmp_path):
    """A space with mlp_lr draws one learning rate per trial, from the range of the trial's
    prefix_projection, and both train as --lr (the MLP's prefix trains best about 10x lower)."""
    from ptuning.tuning.search import TuneConfig, open_study, settings_of, suggest

    space = parse_space("lr=3e-3:1e-1,prefix_projection=false,true,mlp_lr=3e-4:1e-2")
    study = open_study(TuneConfig(fixed={}, space=space, output_dir=tmp_path, seed=0, sampler=sampler))
    seen = set()
    for _ in range(12):
        trial = study.ask()
        params = suggest(trial, space)
        projection = params["prefix_projection"]
        seen.add(projection)
        rate = params["mlp_lr" if projection else "lr"]
        assert ("lr" in params) != projection and ("mlp_lr" in params) == projection, params
        assert (3e-4 <= rate <= 1e-2) if projection else (3e-3 <= rate <= 1e-1), params
        assert settings_of({"task": "rte"}, params)["lr"] == rate
        study.tell(trial, rate)
    assert seen == {False, True}


def test_a_space_without_mlp_lr_draws_one_rate_for_both_prefixes(tmp_path):
    from ptuning.tuning.search import TuneConfig, open_study, suggest

    space = parse_space("lr=1e-3:1e-1,prefix_projection=false,true")
    study = open_study(TuneConfig(fixed={}, space=space, output_dir=tmp_path, seed=0))
    for _ in range(6):
        trial = study.ask()
        params = suggest(trial, space)
        assert set(params) == {"lr", "prefix_projection"}
        study.tell(trial, params["lr"])


def test_mlp_lr_needs_prefix_projection_searched(capsys):
    with pytest.raises(SpaceError, match="prefix_projection=false,true"):
        space_for("prompt-tuning", "mlp_lr=1e-4:1e-2")
    with pytest.raises(SpaceError, match="no prompt"):
        space_for("fine-tune", "mlp_lr=1e-4:1e-2")
    space, _ = space_for("p-tuning-v2", "mlp_lr=1e-5:1e-3")
    assert space["mlp_lr"] == Range(1e-5, 1e-3, log=True) and "prefix_projection" in space
