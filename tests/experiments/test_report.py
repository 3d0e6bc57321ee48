"""`ptuning report`: rendering from a results file, resuming, and a tiny protocol end to end."""

from __future__ import annotations

import json
import random
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from ptuning.cli import main
from ptuning.experiments.report import (
    PROTOCOLS,
    RESULTS,
    Protocol,
    TaskSetting,
    aggregate,
    cells,
    dry_run,
    final_settings,
    kept_levers,
    lever_cells,
    lever_settings,
    render,
    run_protocol,
)

PNGS = ("learning_curves.png", "metric_vs_params.png", "prompt_length.png")
PARAMS = {
    "fine-tune": 22_713_986,
    "prompt-tuning": 6_914,
    "prefix-tuning": 2_500_000,
    "p-tuning-v2": 74_498,
    "handcrafted": 0,
}


def _synthetic_rows(protocol: Protocol, skip: set[str] = frozenset()) -> list[dict]:
    rng = random.Random(0)
    rows = []
    for cell in cells(protocol):
        if cell.key in skip:
            continue
        base = {
            "fine-tune": 0.80,
            "prompt-tuning": 0.60,
            "prefix-tuning": 0.74,
            "p-tuning-v2": 0.79,
            "handcrafted": 0.65,
        }[cell.method]
        score = base + rng.uniform(-0.02, 0.02) + 0.001 * cell.prefix_len
        rows.append(
            {
                **asdict(cell),
                "key": cell.key,
                "protocol": protocol.name,
                "status": "ok",
                "metric": "f1" if cell.task in ("conll03", "squad") else "accuracy",
                "score": score,
                "trainable_params": PARAMS[cell.method] + 100 * cell.prefix_len,
                "total_params": PARAMS["fine-tune"],
                "train_seconds": 10.0,
                "curve": [
                    {"epoch": 1.0, "metric": score - 0.05, "train_loss": 0.7},
                    {"epoch": 2.0, "metric": score, "train_loss": 0.5},
                ],
                "wall_seconds": 12.0,
            }
        )
    return rows


def _write(folder, rows):
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / RESULTS).open("w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
        f.write('{"key": "cut short by a cra')  # a crash mid-line is skipped, not fatal


def test_render_from_synthetic_results(tmp_path):
    protocol = PROTOCOLS["cpu"]
    missing = cells(protocol)[-1].key
    _write(tmp_path, _synthetic_rows(protocol, skip={missing}))
    path = render(protocol, tmp_path, command="ptuning report --jobs 2")
    text = path.read_text()
    assert "ptuning report --jobs 2" in text
    assert "| task (metric) | fine-tune | prompt-tuning | prefix-tuning | p-tuning-v2 | PT-2 − FT |" in text
    assert "± " in text and "(n=2)" in text
    assert "78.3" in text and "RoBERTa-large" in text  # the paper's figures, labelled
    assert "different backbone" in text
    assert "## Does the claim hold here?" in text
    # handcrafted: zero-shot, one run, only on the classification tasks
    assert "| PT-2 − FT | handcrafted (zero-shot) |" in text
    assert [c.key for c in cells(protocol) if c.method == "handcrafted"] == [
        "main/sst2/handcrafted/P16/seed0",
        "main/rte/handcrafted/P16/seed0",
    ]
    assert raw_table_n(tmp_path, "sst2", "handcrafted") == 1
    assert f"not run: `{missing}`" in text
    for name in PNGS:
        assert (tmp_path / name).stat().st_size > 1000, name
    raw = json.loads((tmp_path / "results.json").read_text())
    assert raw["missing"] == [missing] and raw["command"] == "ptuning report --jobs 2"
    assert raw["table"]["sst2"]["p-tuning-v2"]["n"] >= 1
    assert [s["prefix_len"] for s in raw["sweep"]] == sorted({protocol.prefix_len, *protocol.sweep_lengths})


def raw_table_n(folder, task, method):
    return json.loads((folder / "results.json").read_text())["table"][task][method]["n"]


def test_aggregate_mean_and_spread():
    protocol = PROTOCOLS["cpu"]
    rows = _synthetic_rows(protocol)
    table = aggregate(rows, protocol.sweep_task)["table"]
    entry = table["rte"]["fine-tune"]
    assert entry["n"] == len(next(t for t in protocol.tasks if t.task == "rte").seeds)
    assert abs(entry["mean"] - sum(entry["scores"]) / entry["n"]) < 1e-9


def _tiny_protocol(backbone: str) -> Protocol:
    return Protocol(
        name="tiny",
        backbone=backbone,
        prefix_len=4,
        tasks=(TaskSetting("sst2", 24, 16, 24, 1, (0,), batch_size=8),),
        sweep_task="sst2",
        sweep_lengths=(2,),
        methods=("fine-tune", "p-tuning-v2"),
    )


def test_resume_skips_finished_cells(tmp_path):
    protocol = _tiny_protocol("/nonexistent-backbone")
    _write(tmp_path, _synthetic_rows(protocol))
    logs = []
    run_protocol(protocol, tmp_path, log=logs.append)  # would fail on the backbone if it trained
    assert logs[0].startswith("protocol tiny: 0 cells to run, 3 already done")


def test_tiny_protocol_end_to_end(tmp_path, tiny_bert_dir, shared_data):
    protocol = _tiny_protocol(str(tiny_bert_dir))
    rows = run_protocol(protocol, tmp_path, data_dir=str(shared_data), threads=1, log=lambda _: None)
    assert [r["status"] for r in rows] == ["ok"] * 3, [r.get("error") for r in rows]
    assert {r["key"] for r in rows} == {c.key for c in cells(protocol)}
    assert all(r["curve"] and 0 <= r["score"] <= 1 for r in rows)
    assert not (tmp_path / "_runs").exists()  # checkpoints are not kept
    render(replace(protocol), tmp_path)
    assert "| SST-2 (acc) |" in (tmp_path / "report.md").read_text()
    for name in PNGS:
        assert (tmp_path / name).is_file()


def test_report_cli_render_only(tmp_path, capsys):
    folder = tmp_path / "cpu"
    _write(folder, _synthetic_rows(PROTOCOLS["cpu"]))
    assert main(["report", "--render-only", "--reports-dir", str(tmp_path)]) == 0
    assert (folder / "report.md").is_file()
    assert "report:" in capsys.readouterr().out


def _good_row() -> dict:
    return _synthetic_rows(PROTOCOLS["cpu"])[0]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            lambda: json.dumps({**_good_row(), "score": "high"}).encode(),
            "'score' must be a finite number, got \"high\"",
        ),
        (lambda: json.dumps({**_good_row(), "score": float("nan")}).encode(), "NaN is not a JSON number"),
        (lambda: b'{"key": "a\xff"}', "not UTF-8 text (byte 10)"),
        (lambda: b"[1, 2, 3]", "expected a JSON object, got a JSON list"),
        (lambda: b"[" * 100_000 + b"]" * 100_000, "JSON nested too deeply"),
        (lambda: b'{"key": "x", "status": "ok"', "invalid JSON"),
        (lambda: json.dumps({**_good_row(), "seed": "zero"}).encode(), "'seed' must be an integer"),
        (
            lambda: json.dumps({k: v for k, v in _good_row().items() if k != "key"}).encode(),
            "'key' is missing",
        ),
    ],
)
def test_render_only_names_the_file_and_line_of_a_bad_row(line, expected, tmp_path, capsys):
    folder = tmp_path / "cpu"
    folder.mkdir()
    rows = _synthetic_rows(PROTOCOLS["cpu"])[:3]
    content = b"".join(json.dumps(row).encode() + b"\n" for row in rows[:2])
    (folder / RESULTS).write_bytes(content + line() + b"\n" + json.dumps(rows[2]).encode() + b"\n")
    assert main(["report", "--render-only", "--reports-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"ptuning report: error: {folder / RESULTS}:3: ") and expected in err, err
    assert sorted(p.name for p in folder.iterdir()) == [RESULTS]  # nothing rendered, nothing locked


@pytest.mark.parametrize("content", [None, b"", b"\n\n"])
def test_render_only_of_a_missing_or_empty_results_file_says_so(content, tmp_path, capsys):
    folder = tmp_path / "cpu"
    if content is not None:
        folder.mkdir()
        (folder / RESULTS).write_bytes(content)
    assert main(["report", "--render-only", "--reports-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    expected = "no such file" if content is None else "the file holds no results"
    assert err.startswith(f"ptuning report: error: {folder / RESULTS}: {expected}"), err
    assert not (folder / "report.md").exists()


def test_a_run_drops_the_line_a_crash_cut_short(tmp_path):
    from ptuning.experiments.report.run import drop_cut_line, read_results

    rows = _synthetic_rows(PROTOCOLS["cpu"])[:2]
    _write(tmp_path, rows)  # ends in a line cut mid-write
    drop_cut_line(tmp_path)
    assert (tmp_path / RESULTS).read_bytes().endswith(b"}\n")
    assert read_results(tmp_path, strict=True) == rows


def test_gpu_protocol_cells_and_dry_run():
    protocol = PROTOCOLS["gpu"]
    keys = [c.key for c in cells(protocol)]
    assert len(keys) == len(set(keys))
    first_seed = keys[: 5 * 3]  # every task's first seed, main methods, before any second seed
    assert all(k.endswith("seed0") and "/prefix-tuning/" not in k for k in first_seed), first_seed
    assert {k.split("/")[1] for k in first_seed} == {"sst2", "rte", "mrpc", "conll03", "squad"}
    assert not any(c.kind == "sweep" for c in cells(protocol))
    custom = replace(protocol, tasks=(replace(protocol.tasks[0], prefix_len=4),) + protocol.tasks[1:])
    assert {c.prefix_len for c in cells(custom) if c.task == "sst2"} == {4}
    assert {c.prefix_len for c in cells(custom) if c.task == "rte"} == {16}
    tiny = dry_run(protocol)
    assert tiny.name == "gpu-dry-run"
    assert all(t.max_train_samples == 32 and t.epochs == 1 and len(t.seeds) == 1 for t in tiny.tasks)
    assert len(cells(tiny)) == len(tiny.tasks) * len(tiny.methods)


def test_render_gpu_protocol_names_mrpc(tmp_path):
    protocol = PROTOCOLS["gpu"]
    _write(tmp_path, _synthetic_rows(protocol))
    text = render(protocol, tmp_path).read_text()
    assert "| MRPC (F1) |" in text
    assert "- MRPC: p-tuning-v2" in text


# --- the tuned protocol: tuned settings, levers ----------------------------------------------------


def _search(folder, task, method, params):
    study = folder / "tuning" / f"{task}-{method}"
    study.mkdir(parents=True)
    (study / "search.json").write_text(json.dumps({"finished": 4, "best_params": params}))


def test_tuned_settings_give_the_main_cells_their_prompt_length_and_rate(tmp_path):
    from ptuning.experiments.report.tuning_budget import tuned_settings

    protocol = PROTOCOLS["cpu-converged"]
    _search(tmp_path, "rte", "p-tuning-v2", {"lr": 0.02, "prefix_len": 32})
    _search(tmp_path, "rte", "fine-tune", {"lr": 5e-5})
    tuned = tuned_settings(protocol, tmp_path)
    assert tuned[("rte", "p-tuning-v2")] == {"learning_rate": 0.02, "prefix_len": 32}
    assert tuned[("rte", "fine-tune")] == {"learning_rate": 5e-5}
    rte = [c for c in cells(protocol, ["rte"], tuned) if c.seed == 0]
    lengths = {c.method: c.prefix_len for c in rte}
    assert lengths["p-tuning-v2"] == 32
    assert lengths["prompt-tuning"] == protocol.prefix_len  # not tuned yet: the protocol's P


def test_a_study_best_trial_through_the_mlp_trains_its_cells_at_the_mlp_rate(tmp_path):
    from ptuning.experiments.report.tuning_budget import tuned_settings

    protocol = PROTOCOLS["study"]
    _search(tmp_path, "mrpc", "p-tuning-v2", {"mlp_lr": 8e-4, "prefix_projection": True, "prefix_len": 64})
    tuned = tuned_settings(protocol, tmp_path)
    assert tuned[("mrpc", "p-tuning-v2")] == {
        "learning_rate": 8e-4,
        "prefix_projection": True,
        "prefix_len": 64,
    }


def _lever_rows(protocol, gains):
    rows = []
    for cell in lever_cells(protocol):
        name = cell.kind.removeprefix("lever-")
        score = 0.6 + gains.get(name, 0.0) + 0.01 * cell.seed
        rows.append({**asdict(cell), "key": cell.key, "status": "ok", "score": score})
    return rows


def test_a_lever_is_kept_only_where_it_beats_the_baseline_on_every_finished_pair():
    protocol = PROTOCOLS["cpu-converged"]
    assert {c.kind for c in lever_cells(protocol)} == {f"lever-{n}" for n in ("baseline", *protocol.levers)}
    rows = _lever_rows(protocol, {"vocab-init": 0.02, "per-example-dropout": -0.01})
    verdict = kept_levers(protocol, rows)
    assert verdict["vocab-init"]["kept"] and round(verdict["vocab-init"]["gain"], 6) == 2.0
    assert not verdict["per-example-dropout"]["kept"]
    assert final_settings(protocol, rows)["p-tuning-v2"] == {"prefix_init": "vocab"}
    # a comparison with a pair missing decides nothing yet
    partial = [r for r in rows if not (r["kind"] == "lever-vocab-init" and r["seed"] == 1)]
    assert not kept_levers(protocol, partial)["vocab-init"]["kept"]
    assert "p-tuning-v2" not in final_settings(protocol, partial)


def test_lever_cells_train_at_the_tuning_size():
    protocol = PROTOCOLS["cpu-converged"]
    cell = next(c for c in lever_cells(protocol) if c.kind == "lever-vocab-init" and c.task == "rte")
    settings = lever_settings(protocol, cell)
    rte = next(t for t in protocol.tasks if t.task == "rte")
    assert settings["max_train_samples"] == rte.tune_train_samples
    assert settings["epochs"] == rte.tune_epochs and settings["prefix_init"] == "vocab"


def test_gap_table_judges_gaps_by_the_seed_spread_and_states_the_targets():
    from ptuning.experiments.report.gaps import _gap_table

    def entry(*scores):
        mean = sum(scores) / len(scores)
        std = (sum((x - mean) ** 2 for x in scores) / (len(scores) - 1)) ** 0.5 if len(scores) > 1 else 0.0
        return {"mean": mean, "std": std, "n": len(scores), "scores": list(scores)}

    table = {
        "conll03": {
            "p-tuning-v2": entry(88.0, 88.4),
            "fine-tune": entry(88.5, 88.9),
            "prompt-tuning": entry(80.0, 81.0),
        },
        "rte": {"p-tuning-v2": entry(58.0, 66.0), "fine-tune": entry(66.0, 68.0)},
        "sst2": {"p-tuning-v2": entry(85.0), "fine-tune": entry(88.0)},
    }
    text = "\n".join(_gap_table(table, PROTOCOLS["cpu-converged"]))
    conll = next(line for line in text.splitlines() if line.startswith("| CoNLL-2003"))
    assert "-0.5 ± 0.4 (outside the spread)" in conll and "FT: met; PT: met" in conll
    rte = next(line for line in text.splitlines() if line.startswith("| RTE"))
    assert "-5.0 ± 5.8 (inside the spread)" in rte and "FT: missed" in rte
    sst2 = next(line for line in text.splitlines() if line.startswith("| SST-2"))
    assert "-3.0 (one seed)" in sst2
    assert "| MRPC | — | — |" in text and "not enough results" in text


# --- the convergence check: the claim method's main cell again, trained longer ---------------------


def test_longer_cells_run_after_the_first_seeds_main_cells_with_the_main_settings_and_more_epochs(
    tmp_path, monkeypatch
):
    import ptuning.experiments.report.schedule as schedule

    protocol = replace(PROTOCOLS["cpu-converged"], levers={})
    tuned = {("conll03", "p-tuning-v2"): {"learning_rate": 0.03, "prefix_len": 64}}
    monkeypatch.setattr(schedule, "tune_protocol", lambda *a, **k: tuned)
    seen = {}

    def fake_run_cell(cell, protocol, work, *, settings=None, **options):
        seen[cell.key] = settings
        return {
            **asdict(cell),
            "key": cell.key,
            "status": "ok",
            "metric": "f1",
            "score": 0.5,
            "wall_seconds": 0,
        }

    monkeypatch.setattr(schedule, "run_cell", fake_run_cell)
    run_protocol(protocol, tmp_path, tasks=["conll03", "rte"], log=lambda message: None)

    order = list(seen)
    longer = [k for k in order if k.startswith("longer/")]
    assert longer == ["longer/conll03/p-tuning-v2/P64/seed0", "longer/rte/p-tuning-v2/P16/seed0"]
    first_seed_main = [
        k for k in order if k.startswith("main/") and k.endswith("seed0") and "prompt-tuning" not in k
    ]
    assert max(order.index(k) for k in first_seed_main) < order.index(longer[0])
    assert order.index(longer[-1]) < order.index("main/conll03/prompt-tuning/P16/seed0")
    conll = next(t for t in protocol.tasks if t.task == "conll03")
    main, more = seen["main/conll03/p-tuning-v2/P64/seed0"], seen[longer[0]]
    assert more == {**main, "epochs": conll.epochs * protocol.longer_factor}
    assert more["learning_rate"] == 0.03 and "epochs" not in main


def test_render_states_the_convergence_check(tmp_path):
    protocol = PROTOCOLS["cpu-converged"]
    rows = _synthetic_rows(protocol)
    curve = [{"epoch": float(e), "metric": 0.70 + 0.01 * e, "train_loss": 0.3} for e in range(1, 16)]
    for row in rows:
        if row["kind"] == "main" and row["seed"] == 0 and row["task"] == "conll03":
            row["score"] = {"fine-tune": 0.91, "p-tuning-v2": 0.85}.get(row["method"], row["score"])
        if row["key"].startswith("longer/conll03/"):
            row.update(score=0.905, curve=curve)
    _write(tmp_path, [r for r in rows if not r["key"].startswith("longer/rte/")])
    render(protocol, tmp_path)
    text = (tmp_path / "report.md").read_text()
    section = text[text.index("## Is p-tuning-v2 trained to convergence here?") :]
    conll = next(line for line in section.splitlines() if line.startswith("| CoNLL-2003"))
    assert "15 epochs: 90.5 (best epoch 15 of 15, still rising; train loss 0.300)" in conll
    assert "| +5.5 | -0.5 |" in conll
    assert (
        "- CoNLL-2003: 3x the epochs gained +5.5 points; trained longer, p-tuning-v2 is within 1 point"
        in section
    )
    assert "- RTE: not enough results." in section
    assert "not run: `longer/rte/p-tuning-v2/P16/seed0`" in text
    checks = json.loads((tmp_path / "results.json").read_text())["convergence"]
    assert checks[0]["longer"] == {"key": "longer/conll03/p-tuning-v2/P16/seed0", "score": 90.5}


# --- the study protocols: selection on a split, equal budgets, MPNet with MiniLM's settings ---------


def test_study_protocols_select_on_a_split_with_equal_budgets_and_a_seeds_field():
    from ptuning.experiments.report.tuning_budget import fixed_settings, space_of, study_config

    study = PROTOCOLS["study"]
    assert study.folder_name == "study-minilm" and study.tune_trials >= 6
    assert {t.task for t in study.tasks} == {"sst2", "rte", "mrpc", "conll03"}
    assert all(t.seeds == study.seeds for t in study.tasks) and len(study.seeds) >= 2
    two = replace(study, seeds=(3, 4))  # `ptuning report --seeds 3 4`
    assert all(t.seeds == (3, 4) for t in two.tasks)
    rte = next(t for t in study.tasks if t.task == "rte")
    fixed = fixed_settings(study, rte, "p-tuning-v2", bf16=False, data_dir=None)
    assert fixed["validation_split"] == 0.1 and fixed["epochs"] == "auto"
    assert fixed["max_epochs"] == rte.tune_epochs and fixed["max_train_samples"] is None  # whole set
    space = space_of(study, rte, "p-tuning-v2")
    assert space["prefix_len"].values == (8, 16, 32, 64, 128)
    assert set(space) == {
        "lr",
        "mlp_lr",
        "prefix_len",
        "prefix_projection",
        "prompt_dropout",
        "backbone_dropout",
    }
    assert set(space_of(study, rte, "fine-tune")) == {"lr"}
    cfg = study_config(study, rte, "fine-tune", Path("r"), bf16=False, data_dir=None)
    assert cfg.pruner == "successive-halving" and cfg.by_epoch and cfg.trials == study.tune_trials
    assert "CPU-hours" in study.description and study.selection
    mpnet = PROTOCOLS["study-mpnet"]
    assert mpnet.backbone == "mpnet-base" and mpnet.settings_from == study.folder_name
    assert mpnet.methods == ("fine-tune", "p-tuning-v2") and not mpnet.tune_trials
    tiny = dry_run(mpnet)
    assert tiny.settings_from == "study-minilm-dry-run" and tiny.folder_name == "study-mpnet-dry-run"
    assert all(t.seeds == (0,) for t in tiny.tasks)


def test_study_dry_run_end_to_end_then_mpnet_with_its_settings(tmp_path, tiny_bert_dir, shared_data):
    from ptuning.core.precision import processor_name
    from ptuning.experiments.report.tuning_budget import StudySettingsError

    def tiny(name):
        protocol = dry_run(PROTOCOLS[name])
        rte = next(t for t in protocol.tasks if t.task == "rte")
        return replace(protocol, backbone=str(tiny_bert_dir), bf16=False, tasks=(rte,))

    study, mpnet = tiny("study"), tiny("study-mpnet")
    options = {"data_dir": str(shared_data), "threads": 1, "log": lambda _: None}
    with pytest.raises(
        StudySettingsError, match="study-minilm-dry-run.*ptuning report --protocol study --dry-run"
    ):
        run_protocol(mpnet, tmp_path / mpnet.folder_name, **options)

    rows = run_protocol(study, tmp_path / study.folder_name, **options)
    # fine-tune, prompt tuning, p-tuning-v2, and p-tuning-v2 and fine-tune with each text of a
    # pair read apart
    assert [r["status"] for r in rows] == ["ok"] * 5, [r.get("error") for r in rows]
    variant = next(r for r in rows if r["kind"] == "variant-separate-pairs" and r["method"] == "p-tuning-v2")
    main_ptv2 = next(r for r in rows if r["kind"] == "main" and r["method"] == "p-tuning-v2")
    assert variant["settings"] == {**main_ptv2["settings"], "pair_encoding": "separate"}
    # the pin of the protocol's first runs (joint) gave way: the head reads [u, v, |u-v|, u*v]
    assert variant["trainable_params"] > main_ptv2["trainable_params"]
    rows = [r for r in rows if r["kind"] == "main"]
    for row in rows:  # the dev set scored once is the score; the split's chose the checkpoint
        assert row["score"] == row["dev"][row["metric"]] and 0 <= row["selection_score"] <= 1
        # a report's rows may come from several machines: each says what trained it, and how
        assert row["precision"] == "fp32" and row["processor"] == processor_name() != ""
    search = json.loads((tmp_path / "study-minilm-dry-run/tuning/rte-p-tuning-v2/search.json").read_text())
    assert search["finished"] == 2 and "backbone_dropout" in search["best_params"]
    ptv2 = next(r for r in rows if r["method"] == "p-tuning-v2")
    assert ptv2["prefix_len"] == search["best_params"]["prefix_len"]
    render(study, tmp_path / study.folder_name)
    text = (tmp_path / study.folder_name / "report.md").read_text()
    assert "## Settings found" in text and "## Which settings mattered (p-tuning-v2)" in text
    assert "- RTE: within 1 point: " in text
    assert f"Trained on: {processor_name()}, fp32: 5 cells." in text
    raw = json.loads((tmp_path / study.folder_name / "results.json").read_text())
    assert raw["protocol"]["selection"] == study.selection

    rows = run_protocol(mpnet, tmp_path / mpnet.folder_name, **options)
    assert [r["status"] for r in rows] == ["ok"] * 2, [r.get("error") for r in rows]
    ptv2 = next(r for r in rows if r["method"] == "p-tuning-v2")
    assert ptv2["prefix_len"] == search["best_params"]["prefix_len"]
    best = search["best_params"]  # the rate it trained at: lr, or through the MLP mlp_lr
    assert ptv2["settings"]["learning_rate"] == best.get("mlp_lr", best.get("lr"))
    render(mpnet, tmp_path / mpnet.folder_name)
    assert (tmp_path / mpnet.folder_name / "scale.png").stat().st_size > 1000


def _study_rows(protocol, gaps):
    """Main rows of a study: fine-tune at 0.80 (seed spread 0.01), p-tuning-v2 `gaps[task]` points off."""
    rows = []
    for cell in cells(protocol):
        base = 0.80 if cell.method != "p-tuning-v2" else 0.80 + gaps.get(cell.task, 0.0) / 100
        score = base + 0.01 * cell.seed
        rows.append(
            {
                **asdict(cell),
                "key": cell.key,
                "status": "ok",
                "metric": "accuracy",
                "score": score,
                "selection_score": score + 0.02,
                "trainable_params": PARAMS[cell.method],
                "total_params": PARAMS["fine-tune"],
                "train_seconds": 10.0,
                "curve": [{"epoch": 1.0, "metric": score}],
            }
        )
    return rows


def test_render_study_verdicts_settings_importances_and_scale(tmp_path):
    minilm, mpnet = PROTOCOLS["study"], PROTOCOLS["study-mpnet"]
    _write(tmp_path / "study-minilm", _study_rows(minilm, {"rte": -4.0, "mrpc": -0.5}))
    _write(tmp_path / "study-mpnet", _study_rows(mpnet, {"rte": -1.5, "mrpc": 0.5}))
    study = tmp_path / "study-minilm" / "tuning" / "rte-p-tuning-v2"
    study.mkdir(parents=True)
    params = {
        "lr": 0.02,
        "prefix_len": 64,
        "prefix_projection": True,
        "prompt_dropout": 0.1,
        "backbone_dropout": False,
    }
    importances = {
        "lr": 0.7,
        "prefix_len": 0.2,
        "prefix_projection": 0.05,
        "prompt_dropout": 0.03,
        "backbone_dropout": 0.02,
    }
    (study / "search.json").write_text(
        json.dumps({"finished": 10, "best_params": params, "best_value": 0.61, "importances": importances})
    )
    few = tmp_path / "study-minilm" / "tuning" / "mrpc-p-tuning-v2"
    few.mkdir(parents=True)
    note = "no parameter importances: they need >= 2 complete trials, the study has 1"
    (few / "search.json").write_text(
        json.dumps({"finished": 10, "importances": None, "importances_note": note})
    )

    text = render(minilm, tmp_path / "study-minilm").read_text()
    assert "- RTE: within 1 point: missed by 3.0 (PT-2 − FT -4.0, 3 seed(s))." in text
    assert "- MRPC: within 1 point: met (PT-2 − FT -0.5, 3 seed(s))." in text
    assert "lr 0.02, P 64, reparameterized, prompt dropout 0.10, backbone dropout off (split 61.0)" in text
    assert "| RTE | 0.70 | 0.20 | 0.05 | 0.03 | 0.02 |" in text
    assert f"| MRPC | {note} |" in text and "| SST-2 | no study yet |" in text
    assert "| task | 22.7M | 110M |" in text
    # the seed spreads combined: 3 seeds 1 point apart (std 1.0) on MiniLM, 2 on MPNet (std 0.71)
    assert "| RTE | -4.0 ± 1.4 | -1.5 ± 1.0 |" in text and "| MRPC | -0.5 ± 1.4 | +0.5 ± 1.0 |" in text
    assert (tmp_path / "study-minilm" / "scale.png").stat().st_size > 1000

    # MPNet's report names the settings it took and draws the same scale plot
    text = render(mpnet, tmp_path / "study-mpnet").read_text()
    assert "## Settings found (from " in text and "lr 0.02, P 64" in text
    assert "- RTE: within 1 point: missed by 0.5" in text and "| task | 22.7M | 110M |" in text


def test_a_study_still_tuning_renders_how_far_it_got(tmp_path, capsys):
    import optuna

    from ptuning.tuning.search import STUDY_NAME

    folder = tmp_path / "study-minilm" / "tuning" / "rte-fine-tune"
    folder.mkdir(parents=True)
    study = optuna.create_study(
        study_name=STUDY_NAME, storage=f"sqlite:///{folder / 'study.db'}", direction="maximize"
    )
    lr = optuna.distributions.FloatDistribution(1e-5, 2e-4, log=True)
    for value, state in ((0.586, "COMPLETE"), (0.55, "COMPLETE"), (None, "PRUNED")):
        study.add_trial(
            optuna.trial.create_trial(
                params={"lr": 4.56e-5 if value == 0.586 else 1e-4},
                distributions={"lr": lr},
                value=value,
                state=getattr(optuna.trial.TrialState, state),
            )
        )
    # no results.jsonl yet: --render-only still renders the studies so far
    assert main(["report", "--protocol", "study", "--render-only", "--reports-dir", str(tmp_path)]) == 0
    text = (tmp_path / "study-minilm" / "report.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| RTE | all / all"))
    assert "in progress: 2 complete, 1 pruned; best so far lr 4.56e-05 (split 58.6)" in row
    assert "not tuned yet" in row  # the other methods' studies have not started


def test_protocol_runs_keep_the_settings_they_began_with():
    import argparse

    from ptuning.core.config import PromptConfig
    from ptuning.experiments.report.cells import PROTOCOL_PINS
    from ptuning.experiments.report.tuning_budget import _trial_config, fixed_settings

    protocol = PROTOCOLS["study"]
    setting = next(t for t in protocol.tasks if t.task == "rte")
    fixed = fixed_settings(protocol, setting, "p-tuning-v2", bf16=False, data_dir=None)
    assert "prompt_dropout_per_example" not in fixed  # a study's recorded fixed settings stay as they were
    trial = _trial_config(argparse.Namespace(**{**fixed, "lr": 1e-2}))
    assert PromptConfig().filled().prompt_dropout_per_example is True  # the library's default moved ...
    assert (
        trial.prompt.prompt_dropout_per_example is PROTOCOL_PINS["prompt_dropout_per_example"]
    )  # ... not theirs
    lever = _trial_config(argparse.Namespace(**fixed, lr=1e-2, prompt_dropout_per_example=True))
    assert lever.prompt.prompt_dropout_per_example is True  # a setting given still wins
    assert trial.prompt.pair_encoding == PROTOCOL_PINS["pair_encoding"] == "joint"  # text pairs: one sequence


def test_a_setting_found_through_the_mlp_shows_its_rate():
    from ptuning.experiments.report.study import describe_settings

    text = describe_settings({"mlp_lr": 8e-4, "prefix_projection": True, "prefix_len": 64})
    plain = describe_settings({"lr": 8e-4, "prefix_projection": True, "prefix_len": 64})
    assert text == plain and "8" in text.split(",")[0], text
