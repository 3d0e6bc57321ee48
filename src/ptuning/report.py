"""The reproduction report: a documented protocol, run cell by cell, rendered to markdown and plots.

A *cell* is one training run (task, method, seed, prompt length). `run_protocol` trains every cell
of a protocol that is not yet in ``results.jsonl`` and appends one JSON line per finished cell, so a
crash loses at most the cell in flight and a rerun skips what is done. `render` reads the results
file (complete or partial) and writes ``report.md``, ``results.json`` (raw cells and aggregates) and
the PNG plots. Nothing in the report is typed in by hand except the paper's figures, which are
labelled as such.

Protocols (see `PROTOCOLS`):

* ``cpu`` (default): MiniLM (6 layers, 384 hidden, 22M parameters) with subsets, short sequences
  and a few epochs, sized to finish in under an hour on 2 CPU cores when they are not shared.
* ``full``: a GPU protocol, whole training sets, more epochs and seeds.
* ``gpu``: whole training sets on one GPU in bf16, sized for about 7 minutes of an H100 with
  `--jobs 4` (`scripts/gpu_report.sh` packs the data and weights and runs it there).

`dry_run(protocol)` shrinks any protocol to tiny slices (32 examples, one epoch, one seed), to check
a protocol end to end on the CPU before spending GPU time on it.
"""

from __future__ import annotations

import json
import math
import shutil
import statistics
import time
import traceback
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from .config import METHODS, default_learning_rate

RESULTS = "results.jsonl"
MAIN_METHODS = ("fine-tune", "prompt-tuning", "prefix-tuning", "p-tuning-v2")
TASK_TITLES = {"sst2": "SST-2", "rte": "RTE", "mrpc": "MRPC", "conll03": "CoNLL-2003", "squad": "SQuAD 1.1"}
METRIC_TITLES = {"sst2": "acc", "rte": "acc", "mrpc": "F1", "conll03": "entity F1", "squad": "F1"}
# Below these (x100), a task counts as not learnt: the dev majority class + 5 points for SST-2 (50.9%)
# and RTE (52.7%), the F1 of always answering "equivalent" + 5 for MRPC (81.2), 20 F1 for NER and
# QA. Gaps between methods that all stay below mean nothing.
LEARNT_ABOVE = {"sst2": 55.9, "rte": 57.7, "mrpc": 86.2, "conll03": 20.0, "squad": 20.0}
SENTENCE_TASKS = ("sst2", "rte", "mrpc")  # read through `pooling`; the others per token


@dataclass(frozen=True)
class TaskSetting:
    """How one task is run in a protocol."""

    task: str
    max_train_samples: int | None
    max_eval_samples: int | None
    max_seq_length: int
    epochs: float
    seeds: tuple[int, ...]
    batch_size: int = 16
    pooling: str = "cls"
    prefix_len: int | None = None  # None: the protocol's prefix_len
    # method -> learning rate, where it differs from ptuning.config.DEFAULT_LEARNING_RATES
    learning_rates: dict[str, float] = field(default_factory=dict, hash=False, compare=False)
    # the tuning studies of a protocol with tune_trials (ptuning.protocol_tuning): training subset,
    # dev subset, epochs of each trial, and the prompt lengths searched (none: the protocol's P)
    tune_train_samples: int | None = None
    tune_eval_samples: int | None = None
    tune_epochs: float | None = None
    tune_prefix_lens: tuple[int, ...] = ()


@dataclass(frozen=True)
class Protocol:
    name: str
    backbone: str
    prefix_len: int
    tasks: tuple[TaskSetting, ...]
    sweep_task: str
    sweep_lengths: tuple[int, ...]
    methods: tuple[str, ...] = MAIN_METHODS
    description: str = ""
    # after the first seed, these methods' cells run last (a run cut short loses them first)
    secondary_methods: tuple[str, ...] = ()
    # after the first seed, these tasks' cells run first (the ones the claims are about)
    priority_tasks: tuple[str, ...] = ()
    # methods run zero-shot (no training examples), once (first seed: they are deterministic), on the
    # tasks they apply to: "handcrafted" on the classification tasks with a default template
    zero_shot_methods: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    # bf16: None takes ptuning.precision's default (bf16 on a GPU or CPU that has it natively)
    bf16: bool | None = None
    # equal tuning budgets (ptuning.protocol_tuning): trials per (task, method), 0 = no tuning
    tune_trials: int = 0
    tune_lr_ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    # method -> TrainConfig fields the method's main cells take (not its tuning trials): levers that
    # were measured to help (see the protocol's description)
    final_settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    # levers measured before the main cells (a tuned protocol): name -> settings, tried with
    # `lever_method` on `lever_tasks` at the tuning size, seeds `lever_seeds`, against "baseline";
    # a lever whose mean over tasks and seeds beats the baseline's joins that method's main cells
    levers: dict[str, dict[str, Any]] = field(default_factory=dict)
    lever_method: str = "p-tuning-v2"
    lever_tasks: tuple[str, ...] = ()
    lever_seeds: tuple[int, ...] = (0, 1)


# fine-tuning's learning rate for the few-step CPU protocol (see its description)
CPU_LRS = {"fine-tune": 1e-4}

PROTOCOLS: dict[str, Protocol] = {
    "cpu": Protocol(
        name="cpu",
        backbone="minilm",
        prefix_len=16,
        tasks=(
            TaskSetting("sst2", 600, 300, 64, 3, (0, 1), pooling="mean", learning_rates=CPU_LRS),
            TaskSetting("rte", 300, None, 128, 2, (0, 1), pooling="mean", learning_rates=CPU_LRS),
            TaskSetting("conll03", 600, 300, 64, 3, (0, 1), learning_rates=CPU_LRS),
            TaskSetting("squad", 160, 100, 192, 2, (0, 1), learning_rates=CPU_LRS),
        ),
        sweep_task="sst2",
        sweep_lengths=(4, 16, 64),
        description=(
            "Reduced CPU protocol (fp32): MiniLM, training subsets of 160-600 examples, short sequences, "
            "2-3 epochs, 2 seeds, batch 16. Prompt methods use their default learning rates "
            "(ptuning.config.DEFAULT_LEARNING_RATES: prompt-tuning 3e-2, prefix-tuning 1e-3 (through its MLP), "
            "p-tuning-v2 1e-2); fine-tuning uses 1e-4 instead of its default 3e-5, because these runs "
            "take under 120 optimizer steps and at 3e-5 the freshly initialised head barely moves. "
            "Sentence-level tasks (SST-2, RTE) read the encoder by mean pooling, the pooling this "
            "sentence-embedding backbone was trained with (on 1,000 SST-2 examples, one epoch, "
            "p-tuning-v2 reached 78.3% with mean pooling against 62.0% with the first token). "
            "Sized for about 45 minutes on 2 CPU cores (`--jobs 2`, one torch thread per cell). "
            "It is a small-data reproduction: with so few examples and steps, absolute scores are far "
            "below converged ones, and RTE and SQuAD in particular are barely learnt by any method."
        ),
        secondary_methods=("prefix-tuning",),
        priority_tasks=("conll03", "squad"),
        zero_shot_methods=("handcrafted",),
        bf16=False,
    ),
    "full": Protocol(
        name="full",
        backbone="minilm",
        prefix_len=16,
        tasks=(
            TaskSetting("sst2", None, None, 128, 10, (0, 1, 2), batch_size=32, pooling="mean"),
            TaskSetting("rte", None, None, 256, 30, (0, 1, 2), batch_size=32, pooling="mean"),
            TaskSetting("conll03", None, None, 128, 15, (0, 1, 2), batch_size=32),
            TaskSetting("squad", None, None, 384, 5, (0, 1, 2), batch_size=32),
        ),
        sweep_task="rte",
        sweep_lengths=(1, 4, 16, 64, 128),
        description=(
            "Full GPU protocol: whole training sets (SQuAD: the offline dev file split by article), "
            "paper-like sequence lengths and epochs, 3 seeds, bf16 on CUDA."
        ),
    ),
    "gpu": Protocol(
        name="gpu",
        backbone="minilm",
        prefix_len=16,
        tasks=(
            TaskSetting("sst2", None, None, 64, 2, (0,), batch_size=32, pooling="mean"),
            TaskSetting("rte", None, None, 128, 15, (0, 1), pooling="mean"),
            TaskSetting("mrpc", None, None, 128, 10, (0, 1), pooling="mean"),
            TaskSetting("conll03", None, None, 128, 6, (0,)),
            TaskSetting("squad", None, None, 384, 3, (0,), batch_size=32),
        ),
        sweep_task="rte",
        sweep_lengths=(),
        description=(
            "One-GPU protocol: MiniLM on whole training sets (SQuAD: the offline dev file split by "
            "article), bf16 autocast on CUDA, every method at its default learning rate "
            "(ptuning.config.DEFAULT_LEARNING_RATES: fine-tune 3e-5, prompt-tuning 3e-2, prefix-tuning "
            "1e-3 through its MLP, p-tuning-v2 1e-2), P = 16, mean pooling for the sentence tasks. "
            "Sized for about 7 minutes of one H100 with four cells at a time (`--jobs 4`); cells run "
            "first seed first, prefix-tuning's later cells last, so a run cut short by its time limit "
            "loses the least useful cells. No per-method tuning: the learning rates are the defaults."
        ),
        secondary_methods=("prefix-tuning",),
        priority_tasks=("rte", "mrpc"),
    ),
    "cpu-converged": Protocol(
        name="cpu-converged",
        backbone="minilm",
        prefix_len=16,
        tasks=(
            TaskSetting(
                "sst2",
                None,
                None,
                64,
                2,
                (0, 1),
                batch_size=32,
                pooling="mean",
                tune_train_samples=2000,
                tune_epochs=1,
                tune_prefix_lens=(8, 16, 32),
            ),
            TaskSetting(
                "rte",
                None,
                None,
                128,
                10,
                (0, 1),
                pooling="mean",
                tune_train_samples=800,
                tune_epochs=3,
                tune_prefix_lens=(8, 16, 32),
            ),
            TaskSetting(
                "mrpc",
                None,
                None,
                128,
                6,
                (0, 1),
                pooling="mean",
                tune_train_samples=1000,
                tune_epochs=3,
                tune_prefix_lens=(8, 16, 32),
            ),
            TaskSetting(
                "conll03",
                None,
                None,
                128,
                5,
                (0, 1),
                tune_train_samples=1500,
                tune_eval_samples=1000,
                tune_epochs=2,
                tune_prefix_lens=(16, 32, 64),
            ),
        ),
        sweep_task="rte",
        sweep_lengths=(),
        methods=("fine-tune", "prompt-tuning", "p-tuning-v2"),
        description=(
            "Converged CPU protocol: MiniLM on whole training sets, bf16 on this CPU (avx512_bf16), "
            "batch 16 (SST-2: 32), mean pooling for the sentence tasks, 2 seeds. Every method is tuned "
            "with the same budget first (see Tuning), then its best setting trains on the whole "
            "training set; the best epoch's dev score is reported. Sized for about 3 hours of 2 CPU "
            "cores in all, resumable cell by cell; after the first seed the claim's cells (p-tuning-v2, "
            "fine-tune) run before prompt tuning's second seed."
        ),
        secondary_methods=("prompt-tuning",),
        priority_tasks=("conll03", "rte", "mrpc"),
        tune_trials=4,
        levers={
            "vocab-init": {"prefix_init": "vocab"},
            "per-example-dropout": {"prompt_dropout_per_example": True},
        },
        lever_tasks=("rte", "conll03"),
        tune_lr_ranges={
            "fine-tune": (1e-5, 2e-4),
            "prompt-tuning": (3e-3, 3e-1),
            "p-tuning-v2": (2e-3, 5e-2),
        },
    ),
}

DRY_RUN = {"max_train_samples": 32, "max_eval_samples": 32, "epochs": 1}


def dry_run(protocol: Protocol) -> Protocol:
    """The same protocol on tiny slices (32 examples, one epoch, the first seed, no sweep): a check
    that every cell runs end to end, not a result."""
    tasks = tuple(
        replace(
            t,
            **DRY_RUN,
            max_seq_length=min(t.max_seq_length, 128),
            seeds=t.seeds[:1],
            tune_train_samples=DRY_RUN["max_train_samples"],
            tune_eval_samples=DRY_RUN["max_eval_samples"],
            tune_epochs=1,
        )
        for t in protocol.tasks
    )
    return replace(
        protocol,
        name=f"{protocol.name}-dry-run",
        tasks=tasks,
        sweep_lengths=(),
        tune_trials=min(protocol.tune_trials, 2),
        lever_seeds=protocol.lever_seeds[:1],
    )


# P-Tuning v2 (Liu et al., ACL 2022), dev-set figures on BERT-large / RoBERTa-large, for context only:
# a different (335M, MLM-pretrained) backbone and the full training sets. FT: fine-tuning; PT: prompt
# tuning (Lester et al.); PT-2: P-Tuning v2. SST-2 and prefix-tuning are not in those tables.
PAPER_FIGURES: dict[str, dict[str, dict[str, float | None]]] = {
    "BERT-large": {
        "rte": {"fine-tune": 70.4, "prompt-tuning": 53.5, "p-tuning-v2": 78.3},
        "conll03": {"fine-tune": 92.8, "prompt-tuning": 81.9, "p-tuning-v2": 90.2},
        "squad": {"fine-tune": 91.1, "prompt-tuning": 8.5, "p-tuning-v2": 86.0},
    },
    "RoBERTa-large": {
        "rte": {"fine-tune": 86.6, "prompt-tuning": 58.8, "p-tuning-v2": 89.5},
        "conll03": {"fine-tune": 92.6, "prompt-tuning": 86.1, "p-tuning-v2": 92.8},
        "squad": {"fine-tune": 94.6, "prompt-tuning": 12.0, "p-tuning-v2": 94.4},
    },
}
PAPER_NOTE = (
    "Paper figures: P-Tuning v2 (Liu et al., ACL 2022), Tables 1-3, dev sets, RTE accuracy (SuperGLUE "
    "RTE), CoNLL-03 micro-F1, SQuAD 1.1 F1 - paper, different backbone (BERT-large / RoBERTa-large, "
    "335M parameters, MLM-pretrained, full training sets). They are transcribed for context, not "
    "comparable number for number."
)


@dataclass(frozen=True)
class Cell:
    task: str
    method: str
    seed: int
    prefix_len: int
    kind: str = "main"  # "main" or "sweep"

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.task}/{self.method}/P{self.prefix_len}/seed{self.seed}"


def cells(
    protocol: Protocol,
    tasks: Iterable[str] | None = None,
    tuned: Mapping[tuple[str, str], dict[str, Any]] | None = None,
) -> list[Cell]:
    """Every cell, ordered so that a partial run is most useful: the first seed of the main methods
    and the prompt-length sweep first, then the secondary methods' first seed, then the other seeds
    (priority tasks first), the secondary methods' later seeds last. `tuned` (task, method) ->
    settings of a tuned protocol gives each main cell its tuned prompt length."""
    tuned = tuned or {}

    def length_of(setting: TaskSetting, method: str) -> int:
        return tuned.get((setting.task, method), {}).get("prefix_len") or prompt_length(protocol, setting)

    wanted = set(tasks) if tasks else None
    settings = [t for t in protocol.tasks if wanted is None or t.task in wanted]
    out: list[Cell] = []
    secondary_first: list[Cell] = []
    later: list[Cell] = []
    max_seeds = max((len(t.seeds) for t in settings), default=0)
    for round_ in range(max_seeds):
        ordered = settings
        if round_ > 0:
            ordered = sorted(settings, key=lambda t: t.task not in protocol.priority_tasks)
        for setting in ordered:
            if round_ < len(setting.seeds):
                for method in protocol.methods:
                    cell = Cell(setting.task, method, setting.seeds[round_], length_of(setting, method))
                    if method not in protocol.secondary_methods:
                        out.append(cell)
                    else:
                        (later if round_ > 0 else secondary_first).append(cell)
        if round_ == 0:
            out += [
                Cell(setting.task, method, setting.seeds[0], prompt_length(protocol, setting))
                for setting in ordered
                for method in protocol.zero_shot_methods
                if zero_shot_applies(method, setting.task)
            ]
            if wanted is None or protocol.sweep_task in wanted:
                sweep = next(t for t in protocol.tasks if t.task == protocol.sweep_task)
                for length in protocol.sweep_lengths:
                    if length != protocol.prefix_len:
                        out.append(Cell(sweep.task, "p-tuning-v2", sweep.seeds[0], length, "sweep"))
            out += secondary_first
    return out + later


BASELINE = "baseline"


def lever_cells(
    protocol: Protocol,
    tasks: Iterable[str] | None = None,
    tuned: Mapping[tuple[str, str], dict[str, Any]] | None = None,
) -> list[Cell]:
    """The lever comparison: the baseline and each lever, on each lever task, seed by seed."""
    tuned = tuned or {}
    wanted = set(tasks) if tasks else None
    out = []
    for seed in protocol.lever_seeds:
        for task in protocol.lever_tasks:
            if wanted is not None and task not in wanted:
                continue
            setting = setting_of(protocol, task)
            length = tuned.get((task, protocol.lever_method), {}).get("prefix_len") or prompt_length(
                protocol, setting
            )
            for name in (BASELINE, *protocol.levers):
                out.append(Cell(task, protocol.lever_method, seed, length, f"lever-{name}"))
    return out


def lever_settings(protocol: Protocol, cell: Cell) -> dict[str, Any]:
    """A lever cell trains at its task's tuning size, with the lever's settings."""
    setting = setting_of(protocol, cell.task)
    name = cell.kind.removeprefix("lever-")
    return {
        "max_train_samples": setting.tune_train_samples,
        "max_eval_samples": setting.tune_eval_samples,
        "epochs": setting.tune_epochs or setting.epochs,
        **({} if name == BASELINE else protocol.levers[name]),
    }


def kept_levers(protocol: Protocol, rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """lever name -> {"gain": mean lever score - mean baseline score (x100), "n": pairs, "kept": bool},
    over the (task, seed) pairs where both finished. Kept only where the gain is positive and every
    pair of the comparison finished."""
    ok = latest_ok(rows)
    scores: dict[tuple[str, str, int], float] = {
        (r["kind"].removeprefix("lever-"), r["task"], r["seed"]): 100 * r["score"]
        for r in ok.values()
        if r["kind"].startswith("lever-")
    }
    expected = len(protocol.lever_tasks) * len(protocol.lever_seeds)
    out = {}
    for name in protocol.levers:
        pairs = [
            (score, scores[(BASELINE, task, seed)])
            for (lever, task, seed), score in scores.items()
            if lever == name and (BASELINE, task, seed) in scores
        ]
        gain = statistics.fmean(a - b for a, b in pairs) if pairs else math.nan
        out[name] = {"gain": gain, "n": len(pairs), "kept": len(pairs) == expected and gain > 0}
    return out


def prompt_length(protocol: Protocol, setting: TaskSetting) -> int:
    """The task's own prompt length where it sets one, else the protocol's."""
    return setting.prefix_len or protocol.prefix_len


def zero_shot_applies(method: str, task: str) -> bool:
    """Handcrafted prompts need a default template and verbalizer, which classification tasks have."""
    from .handcrafted.templates import DEFAULT_PROMPTS

    return method != "handcrafted" or task in DEFAULT_PROMPTS


def setting_of(protocol: Protocol, task: str) -> TaskSetting:
    return next(t for t in protocol.tasks if t.task == task)


# --- running ----------------------------------------------------------------------------------


def read_results(folder: Path) -> list[dict[str, Any]]:
    path = Path(folder) / RESULTS
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut short by a crash: that cell runs again
    return rows


def _append(folder: Path, row: dict[str, Any]) -> None:
    with (Path(folder) / RESULTS).open("a") as f:
        f.write(json.dumps(row, default=str) + "\n")
        f.flush()


def _learning_curve(run_dir: Path, metric: str) -> list[dict[str, float]]:
    """(epoch, dev metric, train loss) per evaluation, from the last checkpoint's trainer state."""
    from .trainer import CHECKPOINTS, complete_checkpoints

    found = complete_checkpoints(run_dir / CHECKPOINTS)
    if not found:
        return []
    history = json.loads((found[-1] / "trainer_state.json").read_text()).get("log_history", [])
    curve, last_loss = [], None
    for entry in history:
        if "loss" in entry:
            last_loss = entry["loss"]
        key = f"eval_{metric}"
        if key in entry:
            curve.append({"epoch": entry.get("epoch"), "metric": entry[key], "train_loss": last_loss})
    return curve


def run_cell(
    cell: Cell,
    protocol: Protocol,
    work: Path,
    *,
    bf16: bool | None = False,
    data_dir: str | None = None,
    threads: int | None = None,
    settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train one cell; `settings` (TrainConfig fields: tuned values, the method's final settings)
    override the protocol's."""
    import torch

    from .training import TrainConfig, train

    if threads:
        torch.set_num_threads(threads)

    setting = setting_of(protocol, cell.task)
    run_dir = work / cell.key.replace("/", "_")
    shutil.rmtree(run_dir, ignore_errors=True)
    cfg = TrainConfig.build(
        task=cell.task,
        backbone=protocol.backbone,
        method=cell.method,
        prefix_len=cell.prefix_len,
        epochs=setting.epochs,
        batch_size=setting.batch_size,
        eval_batch_size=64,
        max_seq_length=setting.max_seq_length,
        max_train_samples=0 if cell.method in protocol.zero_shot_methods else setting.max_train_samples,
        max_eval_samples=setting.max_eval_samples,
        seed=cell.seed,
        pooling=setting.pooling,
        learning_rate=setting.learning_rates.get(cell.method),
        data_dir=data_dir,
        output_dir=str(run_dir),
        bf16=bf16,
        logging_steps=10,
        progress=False,
    )
    if settings:
        cfg = cfg.updated(**settings)
    row: dict[str, Any] = {**asdict(cell), "key": cell.key, "protocol": protocol.name}
    if settings:
        row["settings"] = settings
    start = time.perf_counter()
    try:
        metrics = train(cfg)
        row.update(
            status="ok",
            metric=metrics["metric"],
            score=metrics["validation"][metrics["metric"]],
            validation=metrics["validation"],
            trainable_params=metrics["trainable_params"],
            total_params=metrics["total_params"],
            checkpoint_bytes=metrics.get("checkpoint_bytes"),
            train_seconds=metrics["train_seconds"],
            train_examples=metrics["train_examples"],
            eval_examples=metrics["eval_examples"],
            learning_rate=cfg.lr,
            curve=_learning_curve(run_dir, metrics["metric"]),
        )
    except Exception as exc:  # recorded as the cell's result; the protocol goes on
        row.update(status="error", error=f"{type(exc).__name__}: {exc}", trace=traceback.format_exc()[-2000:])
    row["wall_seconds"] = round(time.perf_counter() - start, 1)
    shutil.rmtree(run_dir, ignore_errors=True)  # checkpoints are not part of the report
    return row


def run_protocol(
    protocol: Protocol,
    folder: Path,
    *,
    tasks: Iterable[str] | None = None,
    bf16: bool | None = False,
    data_dir: str | None = None,
    jobs: int = 1,
    threads: int | None = None,
    log=print,
    tune_only: bool = False,
) -> list[dict[str, Any]]:
    """Train every cell not yet in results.jsonl; `jobs` > 1 runs that many cells at once, each in
    its own process (with `threads` torch threads each), and this process appends their rows.

    A protocol with tuning runs (or resumes) its studies first, in this process (`tune_only`: only
    them)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tuned: dict[tuple[str, str], dict[str, Any]] = {}
    if protocol.tune_trials:
        from .protocol_tuning import tune_protocol

        if threads:
            import torch

            torch.set_num_threads(threads)
        tuned = tune_protocol(protocol, folder, tasks=tasks, bf16=bf16, data_dir=data_dir, log=log)
        if tune_only:
            return read_results(folder)
    done = {row["key"] for row in read_results(folder) if row.get("status") == "ok"}
    levers = [c for c in lever_cells(protocol, tasks, tuned) if c.key not in done]
    if levers:  # before the main cells, which take the levers that helped
        log(f"protocol {protocol.name}: {len(levers)} lever cells to run")
        _run_cells(
            levers,
            protocol,
            folder,
            jobs,
            log,
            bf16=bf16,
            data_dir=data_dir,
            threads=threads,
            settings=lambda cell: {
                **tuned.get((cell.task, cell.method), {}),
                **lever_settings(protocol, cell),
            },
        )
        done = {row["key"] for row in read_results(folder) if row.get("status") == "ok"}
    final = final_settings(protocol, read_results(folder))
    todo = [c for c in cells(protocol, tasks, tuned) if c.key not in done]
    log(f"protocol {protocol.name}: {len(todo)} cells to run, {len(done)} already done ({folder / RESULTS})")

    def settings(cell: Cell) -> dict[str, Any]:
        if cell.kind != "main":
            return {}
        return {**tuned.get((cell.task, cell.method), {}), **final.get(cell.method, {})}

    _run_cells(
        todo, protocol, folder, jobs, log, bf16=bf16, data_dir=data_dir, threads=threads, settings=settings
    )
    return read_results(folder)


def final_settings(protocol: Protocol, rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each method's settings for its main cells: the protocol's, and for the lever method the levers
    that helped."""
    out = {method: dict(values) for method, values in protocol.final_settings.items()}
    for name, verdict in kept_levers(protocol, rows).items():
        if verdict["kept"]:
            out.setdefault(protocol.lever_method, {}).update(protocol.levers[name])
    return out


def _run_cells(todo, protocol, folder, jobs, log, *, bf16, data_dir, threads, settings) -> None:
    """Train `todo` (one at a time, or `jobs` processes) and append each row as it finishes."""
    work = folder / "_runs"
    options = {"bf16": bf16, "data_dir": data_dir, "threads": threads}

    def finished(index: int, cell: Cell, row: dict[str, Any]) -> None:
        _append(folder, row)
        if row["status"] == "ok":
            log(
                f"[{index}/{len(todo)}] {cell.key}: {row['metric']} {row['score']:.4f} in {row['wall_seconds']:.0f} s"
            )
        else:
            log(f"[{index}/{len(todo)}] {cell.key}: failed: {row['error']}")

    if jobs <= 1:
        for index, cell in enumerate(todo, 1):
            log(f"[{index}/{len(todo)}] {cell.key} ...")
            finished(index, cell, run_cell(cell, protocol, work, **options, settings=settings(cell)))
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=context, max_tasks_per_child=1) as pool:
            futures = {
                pool.submit(run_cell, cell, protocol, work, **options, settings=settings(cell)): cell
                for cell in todo
            }
            for index, future in enumerate(as_completed(futures), 1):
                cell = futures[future]
                try:
                    row = future.result()
                except Exception as exc:  # the worker process died: record it, go on
                    row = {**asdict(cell), "key": cell.key, "protocol": protocol.name, "status": "error"}
                    row["error"] = f"{type(exc).__name__}: {exc}"
                finished(index, cell, row)
    shutil.rmtree(work, ignore_errors=True)


# --- aggregation ------------------------------------------------------------------------------


def latest_ok(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The last successful row of each cell key (a rerun supersedes an older line)."""
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row.get("status") == "ok":
            out[row["key"]] = row
    return out


def _mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return mean, std


def aggregate(rows: list[dict[str, Any]], sweep_task: str | None = None) -> dict[str, Any]:
    """Mean and standard deviation over seeds (scores x100) per (task, method) of the main cells."""
    ok = latest_ok(rows)
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in ok.values():
        if row["kind"] == "main":
            groups[(row["task"], row["method"])].append(row)
    table: dict[str, dict[str, Any]] = defaultdict(dict)
    for (task, method), group in groups.items():
        scores = [100 * r["score"] for r in group]
        mean, std = _mean_std(scores)
        table[task][method] = {
            "mean": mean,
            "std": std,
            "n": len(scores),
            "seeds": sorted(r["seed"] for r in group),
            "scores": scores,
            "trainable_params": group[0]["trainable_params"],
            "total_params": group[0]["total_params"],
            "train_seconds": statistics.fmean(r["train_seconds"] for r in group),
            "metric": group[0]["metric"],
        }
    sweep = []
    if sweep_task is not None:
        first_seed = min((r["seed"] for r in ok.values() if r["task"] == sweep_task), default=None)
        sweep = sorted(
            (
                {
                    "prefix_len": r["prefix_len"],
                    "score": 100 * r["score"],
                    "trainable_params": r["trainable_params"],
                }
                for r in ok.values()
                if r["method"] == "p-tuning-v2" and r["task"] == sweep_task and r["seed"] == first_seed
            ),
            key=lambda d: d["prefix_len"],
        )
    failed = [r for r in rows if r.get("status") == "error" and r["key"] not in ok]
    return {"table": {k: dict(v) for k, v in table.items()}, "sweep_rows": sweep, "failed": failed}


# --- rendering --------------------------------------------------------------------------------


def _fmt(entry: dict[str, Any] | None) -> str:
    if not entry:
        return "—"
    if entry["n"] > 1:
        return f"{entry['mean']:.1f} ± {entry['std']:.1f} (n={entry['n']})"
    return f"{entry['mean']:.1f} (n=1)"


def _legend(axes) -> None:
    """One legend, on the first panel that has labelled lines (a task may have no results yet)."""
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
            return


def _pyplot():
    """matplotlib.pyplot on the file-only Agg backend (imported late: only rendering needs it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_learning_curves(ok: dict[str, dict[str, Any]], protocol: Protocol, path: Path) -> None:
    plt = _pyplot()
    tasks = [t.task for t in protocol.tasks]
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.4), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        for method in protocol.methods:
            curves = [
                r["curve"]
                for r in ok.values()
                if r["kind"] == "main" and r["task"] == task and r["method"] == method and r.get("curve")
            ]
            if not curves:
                continue
            length = min(len(c) for c in curves)
            epochs = [curves[0][i]["epoch"] for i in range(length)]
            means = [100 * statistics.fmean(c[i]["metric"] for c in curves) for i in range(length)]
            ax.plot(epochs, means, marker="o", label=method)
        ax.set_title(f"{TASK_TITLES.get(task, task)} (dev {METRIC_TITLES.get(task, '')})")
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("dev metric x100 (mean over seeds)")
    _legend(axes[0])
    _save(plt, fig, path)


def _plot_params(table: dict[str, Any], protocol: Protocol, path: Path) -> None:
    plt = _pyplot()
    tasks = [t.task for t in protocol.tasks]
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.4), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        for method in protocol.methods:
            entry = table.get(task, {}).get(method)
            if not entry:
                continue
            ax.errorbar(
                entry["trainable_params"],
                entry["mean"],
                yerr=entry["std"],
                marker="o",
                capsize=3,
                label=method,
            )
        ax.set_xscale("log")
        ax.set_title(TASK_TITLES.get(task, task))
        ax.set_xlabel("trainable parameters (log)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("dev metric x100")
    _legend(axes[0])
    _save(plt, fig, path)


def _plot_sweep(sweep: list[dict[str, Any]], fine_tune: dict[str, Any] | None, task: str, path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.8, 3.4))
    if sweep:
        ax.plot(
            [s["prefix_len"] for s in sweep], [s["score"] for s in sweep], marker="o", label="p-tuning-v2"
        )
    if fine_tune:
        ax.axhline(fine_tune["mean"], color="gray", linestyle="--", label="fine-tune (mean)")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("prompt length P")
    ax.set_ylabel(f"{TASK_TITLES.get(task, task)} dev metric x100")
    ax.set_title("prompt-length sweep (one seed)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(plt, fig, path)


def _learning_rate(ok: dict[str, dict[str, Any]], setting: TaskSetting, method: str) -> str:
    """The learning rate the runs used (from their rows), else what the protocol would use."""
    used = sorted(
        {
            r["learning_rate"]
            for r in ok.values()
            if r["task"] == setting.task and r["method"] == method and r.get("learning_rate")
        }
    )
    if used:
        return "/".join(f"{lr:g}" for lr in used)
    default = default_learning_rate(method) if method in METHODS else float("nan")
    return f"{setting.learning_rates.get(method, default):g}"


def _tuning_table(protocol: Protocol, tuned: Mapping[tuple[str, str], dict[str, Any]]) -> list[str]:
    """Per task: the subset the trials used, and each method's best learning rate and prompt length."""
    lines = [
        "| task | trial train / eval / epochs | prompt lengths searched | "
        + " | ".join(protocol.methods)
        + " |",
        "|---|---|---|" + "---|" * len(protocol.methods),
    ]
    for t in protocol.tasks:
        best = []
        for method in protocol.methods:
            values = tuned.get((t.task, method))
            if not values:
                best.append("not tuned yet")
                continue
            text = f"lr {values['learning_rate']:.3g}" if "learning_rate" in values else ""
            if method != "fine-tune" and "prefix_len" in values:
                text += f", P {values['prefix_len']}"
            best.append(text)
        lines.append(
            f"| {TASK_TITLES.get(t.task, t.task)} | {t.tune_train_samples or 'all'} / "
            f"{t.tune_eval_samples or 'all'} / {t.tune_epochs or t.epochs:g} | "
            f"{', '.join(map(str, t.tune_prefix_lens)) or '—'} | " + " | ".join(best) + " |"
        )
    return lines + [""]


def _lever_lines(
    protocol: Protocol, ok: dict[str, dict[str, Any]], levers: dict[str, dict[str, Any]]
) -> list[str]:
    """The lever comparison: per task, the mean over seeds of the baseline and of each lever."""
    names = (BASELINE, *protocol.levers)
    lines = [
        "## Levers",
        "",
        f"Each lever against the baseline, {protocol.lever_method} with its tuned setting, at the tuning "
        f"size of each task (training subset, epochs), seeds {', '.join(map(str, protocol.lever_seeds))}; "
        "a lever joins the main cells only where its mean over tasks and seeds beats the baseline's. "
        + "; ".join(f"{name}: `{json.dumps(settings)}`" for name, settings in protocol.levers.items()),
        "",
        "| task | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for task in protocol.lever_tasks:
        cells_ = []
        for name in names:
            scores = [
                100 * r["score"] for r in ok.values() if r["kind"] == f"lever-{name}" and r["task"] == task
            ]
            mean, std = _mean_std(scores)
            cells_.append(f"{mean:.1f} ± {std:.1f} (n={len(scores)})" if scores else "not run")
        lines.append(f"| {TASK_TITLES.get(task, task)} | " + " | ".join(cells_) + " |")
    lines.append("")
    for name, verdict in levers.items():
        state = "kept" if verdict["kept"] else "not kept"
        gain = (
            "no finished pair yet"
            if not verdict["n"]
            else f"{verdict['gain']:+.2f} points over {verdict['n']} pairs"
        )
        lines.append(f"- {name}: {gain}: **{state}**.")
    return lines + [""]


def render(protocol: Protocol, folder: Path, *, command: str = "", rendered_by: str = "") -> Path:
    """Write report.md, results.json and the PNGs from results.jsonl; returns report.md's path."""
    folder = Path(folder)
    rows = read_results(folder)
    ok = latest_ok(rows)
    sweep_task = protocol.sweep_task
    agg = aggregate(rows, sweep_task)
    table = agg["table"]
    sweep = agg["sweep_rows"]

    _plot_learning_curves(ok, protocol, folder / "learning_curves.png")
    _plot_params(table, protocol, folder / "metric_vs_params.png")
    if protocol.sweep_lengths:
        _plot_sweep(
            sweep, table.get(sweep_task, {}).get("fine-tune"), sweep_task, folder / "prompt_length.png"
        )

    from .protocol_tuning import describe as describe_tuning
    from .protocol_tuning import tuned_settings

    tuned = tuned_settings(protocol, folder)
    expected = lever_cells(protocol, tuned=tuned) + cells(protocol, tuned=tuned)
    levers = kept_levers(protocol, rows)
    missing = [c.key for c in expected if c.key not in ok]
    raw = {
        "protocol": asdict(protocol),
        "command": command,
        "cells": list(ok.values()),
        "failed": agg["failed"],
        "missing": missing,
        "table": table,
        "sweep": sweep,
        "paper": PAPER_FIGURES,
        "tuned": {f"{task}/{method}": values for (task, method), values in tuned.items()},
        "levers": levers,
        "final_settings": final_settings(protocol, rows),
    }
    (folder / "results.json").write_text(json.dumps(raw, indent=2, default=str) + "\n")

    lines = [f"# P-Tuning v2 reproduction report ({protocol.name} protocol)", ""]
    if command:
        lines += ["Made by:", "", "```", command, "```", ""]
    if rendered_by and rendered_by != command:
        lines += [f"(rendered again from `results.jsonl` by `{rendered_by}`)", ""]
    lines += [protocol.description, ""]
    if protocol.tune_trials:
        lines += ["## Tuning", "", describe_tuning(protocol), ""]
        lines += _tuning_table(protocol, tuned)
    if protocol.levers:
        lines += _lever_lines(protocol, ok, levers)
    lines += [
        f"Backbone: `{protocol.backbone}`"
        + (
            " — all-MiniLM-L6-v2, a 22M-parameter sentence-embedding model (6 layers, 384 hidden), "
            "not an MLM checkpoint. "
            if protocol.backbone == "minilm"
            else ". "
        )
        + f"Prompt length P = {protocol.prefix_len} for the prompt methods.",
        "",
        "| task | train | eval | max len | epochs | batch | pooling | learning rates | seeds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for t in protocol.tasks:
        lrs = ", ".join(f"{m} {_learning_rate(ok, t, m)}" for m in protocol.methods)
        pooling = t.pooling if t.task in SENTENCE_TASKS else "per token"
        lines.append(
            f"| {TASK_TITLES.get(t.task, t.task)} | {t.max_train_samples or 'all'} | {t.max_eval_samples or 'all'} "
            f"| {t.max_seq_length} | {t.epochs:g} | {t.batch_size} | {pooling} | {lrs} | "
            f"{', '.join(map(str, t.seeds))} |"
        )
    lines += [
        "",
        "Subsets are drawn with each run's seed (training and, where capped, evaluation subsets), so "
        "the spread over seeds includes the choice of examples. SQuAD: the offline copy has only the "
        "dev file, which the data module splits by article (every 5th article is validation). The "
        "best epoch's dev score is reported (the Trainer keeps the best checkpoint), as the paper does.",
        "",
        "## Results (dev, x100, mean ± standard deviation over seeds)",
        "",
        "| task (metric) | "
        + " | ".join(protocol.methods)
        + " | PT-2 − FT |"
        + "".join(f" {m} (zero-shot) |" for m in protocol.zero_shot_methods),
        "|---|" + "---|" * (len(protocol.methods) + 1 + len(protocol.zero_shot_methods)),
    ]
    for t in protocol.tasks:
        row = table.get(t.task, {})
        gap = "—"
        if "p-tuning-v2" in row and "fine-tune" in row:
            gap = f"{row['p-tuning-v2']['mean'] - row['fine-tune']['mean']:+.1f}"
        lines.append(
            f"| {TASK_TITLES.get(t.task, t.task)} ({METRIC_TITLES.get(t.task, '')}) | "
            + " | ".join(_fmt(row.get(m)) for m in protocol.methods)
            + f" | {gap} |"
            + "".join(f" {_fmt(row.get(m))} |" for m in protocol.zero_shot_methods)
        )
    if protocol.zero_shot_methods:
        lines += [
            "",
            "Zero-shot columns: a handcrafted template and verbalizer (the task's default, "
            "`ptuning.handcrafted.DEFAULT_PROMPTS`), no training example, no trainable parameter, on the "
            "same evaluation examples; one run (deterministic). On this backbone, which has no "
            "masked-LM head, label words are scored by embedding similarity (see README).",
        ]
    lines += ["", "Trainable parameters and mean training seconds per run (this machine):", ""]
    lines += ["| task | " + " | ".join(protocol.methods) + " |", "|---|" + "---|" * len(protocol.methods)]
    for t in protocol.tasks:
        row = table.get(t.task, {})
        lines.append(
            f"| {TASK_TITLES.get(t.task, t.task)} | "
            + " | ".join(
                f"{row[m]['trainable_params']:,} / {row[m]['train_seconds']:.0f} s" if m in row else "—"
                for m in protocol.methods
            )
            + " |"
        )
    lines += ["", "## The paper's figures, for context", "", PAPER_NOTE, ""]
    lines += [
        "| task | backbone | fine-tune | prompt-tuning | p-tuning-v2 | ours: FT / PT / PT-2 |",
        "|---|---|---|---|---|---|",
    ]
    for task in ("rte", "conll03", "squad"):
        ours = table.get(task, {})
        mine = " / ".join(
            f"{ours[m]['mean']:.1f}" if m in ours else "—"
            for m in ("fine-tune", "prompt-tuning", "p-tuning-v2")
        )
        for backbone, figures in PAPER_FIGURES.items():
            f = figures.get(task, {})
            lines.append(
                f"| {TASK_TITLES[task]} | {backbone} (paper, different backbone) | "
                + " | ".join(
                    f"{f.get(m):.1f}" if f.get(m) is not None else "—"
                    for m in ("fine-tune", "prompt-tuning", "p-tuning-v2")
                )
                + f" | {mine} |"
            )
    lines += ["", "## Does the claim hold here?", ""]
    lines += _gap_table(table, protocol)
    lines += _verdicts(table, protocol)
    lines += [
        "",
        "## Plots",
        "",
        "![learning curves](learning_curves.png)",
        "",
        "Dev metric after each epoch (mean over seeds).",
        "",
        "![metric against trainable parameters](metric_vs_params.png)",
        "",
        "Dev metric (mean ± std over seeds) against trainable parameters (head included).",
        "",
    ]
    if protocol.sweep_lengths:
        lines += [
            "![prompt-length sweep](prompt_length.png)",
            "",
            f"P-Tuning v2 on {TASK_TITLES.get(sweep_task, sweep_task)} with P in "
            f"{', '.join(map(str, protocol.sweep_lengths))} (first seed only), fine-tuning's mean as a line.",
            "",
        ]
    if sweep and protocol.sweep_lengths:
        lines += ["| P | trainable params | dev x100 |", "|---|---|---|"]
        lines += [f"| {s['prefix_len']} | {s['trainable_params']:,} | {s['score']:.1f} |" for s in sweep]
        lines.append("")
    if agg["failed"] or missing:
        lines += ["## Missing or failed cells", ""]
        lines += [f"- failed: `{r['key']}`: {r['error']}" for r in agg["failed"]]
        lines += [f"- not run: `{key}`" for key in missing if key not in {r["key"] for r in agg["failed"]}]
        lines.append("")
    lines += [
        "Raw per-run results (learning curves included): `results.jsonl`; aggregates: `results.json`.",
        "",
    ]
    path = folder / "report.md"
    path.write_text("\n".join(lines))
    return path


# The paper's claim on our backbone, as targets: p-tuning-v2 within 1 point of fine-tuning on every
# task, and at least 5 points above prompt tuning on CoNLL-2003.
WITHIN_FT = 1.0
ABOVE_PT = {"conll03": 5.0}


def _gap(a: dict[str, Any], b: dict[str, Any]) -> tuple[float, float | None]:
    """a's mean minus b's, and the spread to judge it by: the two seed spreads combined
    (sqrt(std_a^2 + std_b^2)), None with a single seed on either side."""
    spread = math.hypot(a["std"], b["std"]) if min(a["n"], b["n"]) > 1 else None
    return a["mean"] - b["mean"], spread


def _gap_cell(a: dict[str, Any] | None, b: dict[str, Any] | None) -> str:
    if not a or not b:
        return "—"
    gap, spread = _gap(a, b)
    if spread is None:
        return f"{gap:+.1f} (one seed)"
    inside = "inside" if abs(gap) <= spread else "outside"
    return f"{gap:+.1f} ± {spread:.1f} ({inside} the spread)"


def _gap_table(table: dict[str, Any], protocol: Protocol) -> list[str]:
    """Per task: PT-2 minus FT and minus PT with the combined seed spread, the seeds' scores, and
    whether the targets are met."""
    if "p-tuning-v2" not in protocol.methods:
        return []
    lines = [
        f"Targets: p-tuning-v2 within {WITHIN_FT:g} point of fine-tuning on every task"
        + "".join(
            f"; at least {v:g} points above prompt tuning on {TASK_TITLES.get(k, k)}"
            for k, v in ABOVE_PT.items()
        )
        + ". Spread: the two methods' seed standard deviations combined; a gap inside it is not "
        "told apart from seed noise.",
        "",
        "| task | PT-2 − FT | PT-2 − PT | PT-2 seeds | FT seeds | PT seeds | target |",
        "|---|---|---|---|---|---|---|",
    ]
    for t in protocol.tasks:
        row = table.get(t.task, {})
        ptv2, ft, pt = row.get("p-tuning-v2"), row.get("fine-tune"), row.get("prompt-tuning")
        seeds = [", ".join(f"{x:.1f}" for x in m["scores"]) if m else "—" for m in (ptv2, ft, pt)]
        verdict = "not enough results"
        if ptv2 and ft:
            met = _gap(ptv2, ft)[0] >= -WITHIN_FT
            verdict = f"FT: {'met' if met else 'missed'}"
            if t.task in ABOVE_PT:
                above = bool(pt) and _gap(ptv2, pt)[0] >= ABOVE_PT[t.task]
                verdict += f"; PT: {'met' if above else 'missed' if pt else 'no PT result'}"
        lines.append(
            f"| {TASK_TITLES.get(t.task, t.task)} | {_gap_cell(ptv2, ft)} | {_gap_cell(ptv2, pt)} | "
            + " | ".join(seeds)
            + f" | {verdict} |"
        )
    return lines + [""]


def _verdicts(table: dict[str, Any], protocol: Protocol) -> list[str]:
    out = []
    for t in protocol.tasks:
        row = table.get(t.task, {})
        name = TASK_TITLES.get(t.task, t.task)
        if "p-tuning-v2" not in row or "fine-tune" not in row:
            out.append(f"- {name}: not enough results.")
            continue
        ptv2, ft = row["p-tuning-v2"], row["fine-tune"]
        gap = ptv2["mean"] - ft["mean"]
        verdict = "within 1 point of fine-tuning" if gap >= -1.0 else f"{-gap:.1f} points below fine-tuning"
        if gap > 1.0:
            verdict = f"{gap:.1f} points above fine-tuning"
        text = f"- {name}: p-tuning-v2 {ptv2['mean']:.1f} vs fine-tune {ft['mean']:.1f}: {verdict}"
        if "prompt-tuning" in row:
            pt = row["prompt-tuning"]
            diff = ptv2["mean"] - pt["mean"]
            spread = max(ptv2["std"], pt["std"])
            if min(ptv2["n"], pt["n"]) < 2:  # one seed: no spread to judge the gap by
                clear = "above" if diff > 0 else "not above"
                text += (
                    f"; {clear} prompt-tuning ({pt['mean']:.1f}, {diff:+.1f}; one seed, no spread measured)"
                )
            else:
                clear = (
                    "clearly above"
                    if diff > 2 * spread and diff > 1
                    else ("above" if diff > 0 else "not above")
                )
                text += f"; {clear} prompt-tuning ({pt['mean']:.1f}, {diff:+.1f})"
        best = max(entry["mean"] for entry in row.values())
        if t.task in LEARNT_ABOVE and best < LEARNT_ABOVE[t.task]:
            text += (
                f". No method learnt this task here (best {best:.1f}, below {LEARNT_ABOVE[t.task]:g}), "
                "so these gaps are noise, not evidence either way"
            )
        out.append(text + ".")
    return out
