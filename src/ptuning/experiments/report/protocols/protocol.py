"""What a report protocol is: the tasks, methods, seeds and budgets of one (`Protocol`,
`TaskSetting`), the names and thresholds every report reads, and the dry run that shrinks any
protocol to a check that every cell runs."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from ....tuning.space import Space

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
    # method -> learning rate, where it differs from ptuning.core.config.DEFAULT_LEARNING_RATES
    learning_rates: dict[str, float] = field(default_factory=dict, hash=False, compare=False)
    # the tuning studies of a protocol with tune_trials (ptuning.experiments.report.tuning_budget): training subset,
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
    # bf16: None takes ptuning.core.precision's default (bf16 on a GPU or CPU that has it natively)
    bf16: bool | None = None
    # equal tuning budgets (ptuning.experiments.report.tuning_budget): trials per (task, method), 0 = no tuning
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
    # variants of the lever method's finished main cells (`report/variants.py`): name -> the settings
    # changed, run on `variant_tasks` with each main cell's tuned setting and seed and judged against
    # those cells; unlike `levers` they never change the main cells, so a study under way can add one
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    variant_tasks: tuple[str, ...] = ()
    # the methods the variants change (each against its own main cells); () = (lever_method,)
    variant_methods: tuple[str, ...] = ()
    # the convergence check: the lever method's main cell again, first seed, trained `longer_factor`
    # times the task's epochs, on `longer_tasks` (run after the first seed's main cells)
    longer_tasks: tuple[str, ...] = ()
    longer_factor: int = 3
    # every task's seeds, where set (replaces TaskSetting.seeds: `ptuning report --seeds`)
    seeds: tuple[int, ...] = ()
    # select on a held-out share of the training data (TrainConfig.validation_split): trials and
    # checkpoints are chosen on it, and the dev set is scored once at the end (the reported score)
    validation_split: float | None = None
    # epochs by early stopping (`--epochs auto`): TaskSetting.epochs is then the final cells' cap and
    # TaskSetting.tune_epochs the trials' cap, with this patience (evaluations without a gain)
    epochs_auto: bool = False
    patience: int = 3
    # method -> its whole search space (ptuning.tuning.space), where it is not the lr range of
    # `tune_lr_ranges` with the task's `tune_prefix_lens`
    tune_spaces: dict[str, Space] = field(default_factory=dict)
    tune_sampler: str = "qmc"  # ptuning.tuning.TuneConfig.sampler
    tune_pruner: str = "median"  # ptuning.tuning.TuneConfig.pruner, over epochs
    # the report folder (beside this one) whose tuning studies give this protocol's settings (no
    # search of its own)
    settings_from: str | None = None
    # the report folder's name, where it is not the protocol's name
    report_dir: str | None = None
    # how the epochs and settings of the reported cells were chosen (results.json: protocol.selection)
    selection: str = ""

    def __post_init__(self) -> None:
        if self.seeds:
            object.__setattr__(self, "tasks", tuple(replace(t, seeds=self.seeds) for t in self.tasks))

    @property
    def folder_name(self) -> str:
        return self.report_dir or self.name


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
        seeds=protocol.seeds[:1],
        sweep_lengths=(),
        tune_trials=min(protocol.tune_trials, 2),
        lever_seeds=protocol.lever_seeds[:1],
        report_dir=protocol.report_dir and f"{protocol.report_dir}-dry-run",
        settings_from=protocol.settings_from and f"{protocol.settings_from}-dry-run",
    )
