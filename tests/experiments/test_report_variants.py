"""Levers against the tuned method (`report/variants.py`): the variant cells, their settings, their
verdicts and the report's table. A variant run end to end is in test_report.py's study dry run."""

from __future__ import annotations

from dataclasses import asdict, replace

from ptuning.experiments.report import PROTOCOLS, cells, render
from ptuning.experiments.report.cells import VARIANT, variant_cells
from ptuning.experiments.report.schedule import cell_settings
from ptuning.experiments.report.variants import variant_lines, variant_verdicts

TUNED = {
    ("mrpc", "p-tuning-v2"): {"learning_rate": 0.038, "prefix_len": 8, "backbone_dropout": False},
    ("rte", "p-tuning-v2"): {"learning_rate": 0.011, "prefix_len": 64},
}


def test_variant_cells_come_after_every_main_cell_with_the_tuned_length_seed_by_seed():
    study = PROTOCOLS["study"]
    assert study.variants and set(study.variant_tasks) <= {t.task for t in study.tasks}
    every = cells(study, tuned=TUNED)
    variants = [c for c in every if c.kind.startswith(VARIANT)]
    assert variants == every[-len(variants) :]  # a run cut short loses them first
    assert [(c.task, c.seed, c.prefix_len) for c in variants][:4] == [
        ("mrpc", 0, 8),
        ("rte", 0, 64),
        ("mrpc", 1, 8),
        ("rte", 1, 64),
    ]
    assert {c.method for c in variants} == {study.lever_method}
    assert {c.task for c in variant_cells(study, ["rte", "sst2"], TUNED)} == {"rte"}
    # a variant that sets its own prompt length trains (and is named) with it
    longer_prompt = replace(study, variants={"P128": {"prefix_len": 128}})
    assert {c.prefix_len for c in variant_cells(longer_prompt, tuned=TUNED)} == {128}
    # MPNet's study has none: it repeats MiniLM's design with MiniLM's settings only
    assert not [c for c in cells(PROTOCOLS["study-mpnet"]) if c.kind.startswith(VARIANT)]


def test_a_variant_trains_with_its_main_cells_settings_and_its_changes():
    study = PROTOCOLS["study"]
    final = {"p-tuning-v2": {"prompt_dropout": 0.1}}
    by_key = {c.key: c for c in cells(study, tuned=TUNED)}
    main = cell_settings(study, by_key["main/mrpc/p-tuning-v2/P8/seed1"], TUNED, final)
    variant = cell_settings(study, by_key["variant-separate-pairs/mrpc/p-tuning-v2/P8/seed1"], TUNED, final)
    assert main == {**TUNED[("mrpc", "p-tuning-v2")], "prompt_dropout": 0.1}
    assert variant == {**main, "pair_encoding": "separate"}


def _rows(protocol, main, variant):
    """Rows of the lever method's main and variant cells: `main[task]` / `variant[task]` are the
    scores (x100) by seed; fine-tune's cells beside them at 80."""
    rows = []
    for cell in cells(protocol, tuned=TUNED):
        if cell.kind == "main" and cell.method == protocol.lever_method:
            scores = main.get(cell.task, {})
        elif cell.kind.startswith(VARIANT):
            scores = variant.get(cell.task, {})
        elif cell.kind == "main" and cell.method == "fine-tune":
            scores = {cell.seed: 80.0}
        else:
            continue
        if cell.seed in scores:
            score = scores[cell.seed] / 100
            rows.append(
                {
                    **asdict(cell),
                    "key": cell.key,
                    "status": "ok",
                    "metric": "f1",
                    "score": score,
                    "trainable_params": 40_000,
                    "total_params": 22_750_000,
                    "train_seconds": 60.0,
                }
            )
    return rows


def test_a_variant_is_kept_only_where_its_paired_gain_beats_the_seed_spread():
    study = PROTOCOLS["study"]
    rows = _rows(
        study,
        main={"mrpc": {0: 84.0, 1: 81.0}, "rte": {0: 50.0, 1: 54.0}},
        variant={"mrpc": {0: 88.0, 1: 86.0}, "rte": {0: 53.0}},
    )
    ok = {r["key"]: r for r in rows}
    verdicts = {v["task"]: v for v in variant_verdicts(study, ok)}
    mrpc = verdicts["mrpc"]  # +4.5 paired; spreads 2.12 and 1.41 combined: 2.55
    assert round(mrpc["gain"], 6) == 4.5 and round(mrpc["spread"], 2) == 2.55 and mrpc["kept"] is True
    assert verdicts["rte"]["kept"] is None and verdicts["rte"]["main"] == {0: 50.0}  # one seed: no verdict

    inside = _rows(study, main={"mrpc": {0: 84.0, 1: 78.0}}, variant={"mrpc": {0: 86.0, 1: 79.0}})
    mrpc = variant_verdicts(study, {r["key"]: r for r in inside})[0]
    assert mrpc["gain"] > 0 and mrpc["kept"] is False  # +1.5 inside a spread of 6.7

    text = "\n".join(variant_lines(study, variant_verdicts(study, ok)))
    assert "## Levers against the tuned p-tuning-v2" in text and '`{"pair_encoding": "separate"}`' in text
    assert "| separate-pairs | MRPC | 84.0, 81.0 | 88.0, 86.0 | +4.5 ± 2.5 | **kept** |" in text
    assert "| separate-pairs | RTE | 50.0 | 53.0 | +3.0 (one seed) | one seed: not judged |" in text


def test_the_study_report_shows_the_levers_table_and_lists_the_variants_not_run(tmp_path):
    import json

    study = PROTOCOLS["study"]
    rows = _rows(study, main={"mrpc": {0: 84.0, 1: 81.0}}, variant={"mrpc": {0: 88.0}})
    folder = tmp_path / "study-minilm"
    folder.mkdir()
    (folder / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = render(study, folder).read_text()
    assert "| separate-pairs | MRPC | 84.0 | 88.0 | +4.0 (one seed) | one seed: not judged |" in text
    assert "| separate-pairs | RTE | — | — | — | not run yet |" in text
    assert "not run: `variant-separate-pairs/mrpc/p-tuning-v2/P16/seed1`" in text
    raw = json.loads((folder / "results.json").read_text())
    assert raw["variants"][0]["task"] == "mrpc" and round(raw["variants"][0]["gain"], 6) == 4.0
