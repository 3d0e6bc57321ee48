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
    ("mrpc", "fine-tune"): {"learning_rate": 3.5e-5},
}


def test_variant_cells_come_after_every_main_cell_with_the_tuned_length_seed_by_seed():
    study = PROTOCOLS["study"]
    assert study.variants and set(study.variant_tasks) <= {t.task for t in study.tasks}
    every = cells(study, tuned=TUNED)
    variants = [c for c in every if c.kind.startswith(VARIANT)]
    assert variants == every[-len(variants) :]  # a run cut short loses them first
    # seed by seed, each task's p-tuning-v2 cell beside its fine-tune cell
    assert [(c.task, c.method, c.seed, c.prefix_len) for c in variants][:6] == [
        ("mrpc", "p-tuning-v2", 0, 8),
        ("mrpc", "fine-tune", 0, 16),
        ("rte", "p-tuning-v2", 0, 64),
        ("rte", "fine-tune", 0, 16),
        ("mrpc", "p-tuning-v2", 1, 8),
        ("mrpc", "fine-tune", 1, 16),
    ]
    only_prompts = replace(study, variant_methods=())  # the default: the lever method alone
    assert {c.method for c in variant_cells(only_prompts, tuned=TUNED)} == {study.lever_method}
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
    fine_tune = cell_settings(study, by_key["variant-separate-pairs/mrpc/fine-tune/P16/seed1"], TUNED, final)
    assert fine_tune == {"learning_rate": 3.5e-5, "pair_encoding": "separate"}


def _rows(protocol, main, variant, fine_tune_variant=None):
    """Rows of the lever method's main and variant cells: `main[task]` / `variant[task]` are the
    scores (x100) by seed; fine-tune's main cells at 80, its variants `fine_tune_variant[task]`."""
    rows = []
    for cell in cells(protocol, tuned=TUNED):
        if cell.kind == "main" and cell.method == protocol.lever_method:
            scores = main.get(cell.task, {})
        elif cell.kind.startswith(VARIANT):
            lever = variant if cell.method == protocol.lever_method else fine_tune_variant or {}
            scores = lever.get(cell.task, {})
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
    verdicts = {v["task"]: v for v in variant_verdicts(study, ok) if v["method"] == "p-tuning-v2"}
    mrpc = verdicts["mrpc"]  # +4.5 paired; spreads 2.12 and 1.41 combined: 2.55
    assert round(mrpc["gain"], 6) == 4.5 and round(mrpc["spread"], 2) == 2.55 and mrpc["kept"] is True
    assert verdicts["rte"]["kept"] is None and verdicts["rte"]["main"] == {0: 50.0}  # one seed: no verdict

    inside = _rows(study, main={"mrpc": {0: 84.0, 1: 78.0}}, variant={"mrpc": {0: 86.0, 1: 79.0}})
    mrpc = variant_verdicts(study, {r["key"]: r for r in inside})[0]
    assert mrpc["gain"] > 0 and mrpc["kept"] is False  # +1.5 inside a spread of 6.7

    text = "\n".join(variant_lines(study, variant_verdicts(study, ok)))
    assert "## Levers against the tuned methods" in text and '`{"pair_encoding": "separate"}`' in text
    assert "| separate-pairs | p-tuning-v2 | MRPC | 84.0, 81.0 | 88.0, 86.0 | +4.5 ± 2.5 | **kept** |" in text
    assert (
        "| separate-pairs | p-tuning-v2 | RTE | 50.0 | 53.0 | +3.0 (one seed) | one seed: not judged |"
        in text
    )
    assert "| separate-pairs | fine-tune | MRPC | — | — | — | not run yet |" in text
    assert "both with separate-pairs" not in text  # no fine-tune variant has run


def test_with_the_lever_on_both_sides_the_gap_between_the_methods_is_reported():
    study = PROTOCOLS["study"]
    rows = _rows(
        study,
        main={"mrpc": {0: 84.0, 1: 81.0}},
        variant={"mrpc": {0: 88.0, 1: 86.0}},
        fine_tune_variant={"mrpc": {0: 85.0, 1: 84.0}},
    )
    verdicts = variant_verdicts(study, {r["key"]: r for r in rows})
    fine_tune = next(v for v in verdicts if v["method"] == "fine-tune" and v["task"] == "mrpc")
    assert fine_tune["main"] == {0: 80.0, 1: 80.0} and round(fine_tune["gain"], 6) == 4.5
    text = "\n".join(variant_lines(study, verdicts))
    assert "- MRPC, both with separate-pairs: p-tuning-v2 87.0 vs fine-tune 84.5 (+2.5, 2 seed(s))." in text


def test_the_study_report_shows_the_levers_table_and_lists_the_variants_not_run(tmp_path):
    import json

    study = PROTOCOLS["study"]
    rows = _rows(study, main={"mrpc": {0: 84.0, 1: 81.0}}, variant={"mrpc": {0: 88.0}})
    folder = tmp_path / "study-minilm"
    folder.mkdir()
    (folder / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = render(study, folder).read_text()
    assert (
        "| separate-pairs | p-tuning-v2 | MRPC | 84.0 | 88.0 | +4.0 (one seed) | one seed: not judged |"
        in text
    )
    assert "| separate-pairs | p-tuning-v2 | RTE | — | — | — | not run yet |" in text
    assert "not run: `variant-separate-pairs/mrpc/p-tuning-v2/P16/seed1`" in text
    raw = json.loads((folder / "results.json").read_text())
    assert raw["variants"][0]["task"] == "mrpc" and round(raw["variants"][0]["gain"], 6) == 4.0
