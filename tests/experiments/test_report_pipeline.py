"""A tuned protocol's studies and cells in one queue (`ptuning.experiments.report.pipeline`), and a
cell cut short resuming from its checkpoints."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, replace

import pytest

import ptuning.experiments.report.pipeline as pipeline
import ptuning.experiments.report.run as run_module
import ptuning.experiments.report.schedule as schedule
import ptuning.experiments.report.tuning_budget as tuning_budget
from ptuning.experiments.report import PROTOCOLS, RESULTS, Cell, dry_run, run_protocol


def _study(tasks=("rte", "mrpc"), seeds=(0, 1)):
    protocol = replace(PROTOCOLS["study"], seeds=seeds)
    return replace(protocol, tasks=tuple(t for t in protocol.tasks if t.task in tasks))


class FakeWork:
    """run_study writes the search.json of a finished study (P 32 for prompt methods), except for the
    studies named in `failing`; run_cell returns an ok row. Both record what ran, in order."""

    def __init__(self, failing=()):
        self.events: list[str] = []
        self.settings: dict[str, dict] = {}
        self.failing = set(failing)
        self.lock = threading.Lock()

    def run_study(self, cfg, threads=None):
        name = cfg.output_dir.name
        with self.lock:
            self.events.append(f"study {name}")
        if name in self.failing:
            raise RuntimeError("killed")
        params = {"lr": 0.02} if name.endswith("fine-tune") else {"lr": 0.02, "prefix_len": 32}
        cfg.output_dir.mkdir(parents=True, exist_ok=True)
        summary = {"finished": cfg.trials, "best_params": params, "best_value": 0.6}
        # atomically, as `ptuning tune` writes it: the queue reads it while other studies run
        partial = cfg.output_dir / "search.json.partial"
        partial.write_text(json.dumps(summary))
        partial.replace(cfg.output_dir / "search.json")

    def run_cell(self, cell, protocol, work, *, settings=None, **options):
        with self.lock:
            self.events.append(cell.key)
            self.settings[cell.key] = settings
        row = {**asdict(cell), "key": cell.key, "protocol": protocol.name, "status": "ok"}
        counts = {"trainable_params": 1, "total_params": 2, "train_seconds": 0.0, "wall_seconds": 0}
        return {**row, **counts, "metric": "accuracy", "score": 0.6}


@pytest.fixture
def fake(monkeypatch):
    work = FakeWork()
    monkeypatch.setattr(pipeline, "run_study", work.run_study)
    monkeypatch.setattr(pipeline, "run_cell", work.run_cell)
    # the older order (a protocol with levers): its studies through tune_protocol, its cells here
    monkeypatch.setattr(tuning_budget, "run_study", work.run_study)
    monkeypatch.setattr(schedule, "run_cell", work.run_cell)
    return work


def test_each_claim_cell_starts_once_its_study_has_finished_before_the_later_studies(tmp_path, fake):
    protocol = _study()
    rows = run_protocol(protocol, tmp_path, log=lambda _: None)
    events = fake.events
    # 2 tasks x 3 methods x 2 seeds, and the lever on each task's p-tuning-v2 and fine-tune cells
    assert len(rows) == 2 * 3 * 2 + 2 * 2 * 2 and {row["status"] for row in rows} == {"ok"}
    # the claim's studies task by task, each followed by its cells, the secondary method's last
    assert events[:3] == [
        "study rte-fine-tune",
        "main/rte/fine-tune/P16/seed0",
        "main/rte/fine-tune/P16/seed1",
    ]
    assert events[3:6] == [
        "study rte-p-tuning-v2",
        "main/rte/p-tuning-v2/P32/seed0",  # the study's prompt length
        "main/rte/p-tuning-v2/P32/seed1",
    ]
    assert events[6] == "study mrpc-fine-tune"
    # the secondary method's studies after the claim's, its cells after every study
    prompt = [e for e in events if "prompt-tuning" in e]
    assert prompt[:3] == [
        "study rte-prompt-tuning",
        "study mrpc-prompt-tuning",
        "main/rte/prompt-tuning/P32/seed0",
    ]
    assert events.index("main/mrpc/p-tuning-v2/P32/seed1") < events.index("study rte-prompt-tuning")
    # the levers after every claim study and cell, before the secondary method's studies
    variants = [e for e in events if e.startswith("variant-")]
    assert variants == [
        f"variant-separate-pairs/{task}/{method}/P{length}/seed{seed}"
        for seed in (0, 1)
        for task in ("mrpc", "rte")
        for method, length in (("p-tuning-v2", 32), ("fine-tune", 16))
    ]
    assert events.index("study mrpc-p-tuning-v2") < events.index(variants[0])
    assert events.index(variants[-1]) < events.index("study rte-prompt-tuning")
    assert fake.settings[variants[0]] == {
        **fake.settings["main/mrpc/p-tuning-v2/P32/seed0"],
        "pair_encoding": "separate",
    }
    assert fake.settings["main/rte/p-tuning-v2/P32/seed0"]["learning_rate"] == 0.02

    before = len(events)  # a rerun finds every study and cell done
    assert len(run_protocol(protocol, tmp_path, log=lambda _: None)) == len(rows)
    assert len(fake.events) == before


def test_a_failed_study_holds_back_only_its_own_cells(tmp_path, fake):
    fake.failing = {"rte-p-tuning-v2"}
    logs = []
    rows = run_protocol(_study(), tmp_path, log=logs.append)
    keys = {row["key"] for row in rows}
    assert not any("rte/p-tuning-v2" in key for key in keys)
    assert "main/mrpc/p-tuning-v2/P32/seed1" in keys and "main/rte/fine-tune/P16/seed0" in keys
    assert any("tuning rte-p-tuning-v2 failed: RuntimeError: killed" in line for line in logs)


def test_with_two_workers_a_study_and_another_studys_cells_run_side_by_side(tmp_path, fake, monkeypatch):
    monkeypatch.setattr(pipeline, "worker_pool", lambda jobs: ThreadPoolExecutor(max_workers=jobs))
    logs = []
    rows = run_protocol(_study(tasks=("rte",)), tmp_path, jobs=2, log=logs.append)
    assert len(rows) == 3 * 2 + 2 * 2  # and the lever on the p-tuning-v2 and fine-tune cells
    events = fake.events
    # both claim studies are started first (the order the workers begin in is the threads'); every
    # cell runs after its own study
    starts = [line for line in logs if line.startswith("starting ")]
    assert set(starts[:2]) == {
        "starting study rte-fine-tune (10 trials)",
        "starting study rte-p-tuning-v2 (10 trials)",
    }
    for row in rows:
        assert events.index(f"study rte-{row['method']}") < events.index(row["key"])
    assert json.loads((tmp_path / RESULTS).read_text().splitlines()[0])["status"] == "ok"


def test_protocols_with_levers_keep_every_study_before_the_cells(tmp_path, fake):
    protocol = replace(PROTOCOLS["cpu-converged"], seeds=(0,))
    run_protocol(protocol, tmp_path, tasks=["rte", "conll03"], log=lambda _: None)
    studies = [i for i, e in enumerate(fake.events) if e.startswith("study ")]
    assert len(studies) == 2 * len(protocol.methods) and max(studies) < min(
        i for i, e in enumerate(fake.events) if not e.startswith("study ")
    )


def test_a_cell_cut_short_resumes_from_its_checkpoints(tmp_path, tiny_bert_dir, shared_data, monkeypatch):
    import ptuning.training.run as training_run

    protocol = dry_run(PROTOCOLS["study"])
    rte = next(t for t in protocol.tasks if t.task == "rte")
    protocol = replace(protocol, backbone=str(tiny_bert_dir), bf16=False, tasks=(rte,))
    cell = Cell("rte", "p-tuning-v2", 0, 8)
    real_train, seen = training_run.train, []

    def killed_after_training(cfg, *args, **kwargs):
        seen.append(cfg.resume)
        metrics = real_train(cfg, *args, **kwargs)
        if len(seen) == 1:
            raise KeyboardInterrupt  # as a kill: the cell's folder is left behind with its checkpoints
        return metrics

    monkeypatch.setattr(training_run, "train", killed_after_training)
    options = {"data_dir": str(shared_data), "threads": 1, "settings": {"epochs": 1}}
    with pytest.raises(KeyboardInterrupt):
        run_module.run_cell(cell, protocol, tmp_path, **options)
    assert any((tmp_path / cell.key.replace("/", "_") / "checkpoints").glob("checkpoint-*"))
    row = run_module.run_cell(cell, protocol, tmp_path, **options)
    assert seen == [False, True]
    assert row["status"] == "ok", row.get("error")
    assert row["resumed"] is True
    assert not (tmp_path / cell.key.replace("/", "_")).exists()
