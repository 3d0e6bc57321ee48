"""The report's protocols: the tasks, methods, seeds and budgets of each (`PROTOCOLS`), the dry
run that shrinks any of them, and the paper's figures."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

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
    # the convergence check: the lever method's main cell again, first seed, trained `longer_factor`
    # times the task's epochs, on `longer_tasks` (run after the first seed's main cells)
    longer_tasks: tuple[str, ...] = ()
    longer_factor: int = 3


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
            "(ptuning.core.config.DEFAULT_LEARNING_RATES: prompt-tuning 3e-2, prefix-tuning 1e-3 (through its MLP), "
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
            "(ptuning.core.config.DEFAULT_LEARNING_RATES: fine-tune 3e-5, prompt-tuning 3e-2, prefix-tuning "
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
            "fine-tune) run before prompt tuning's second seed. SST-2, whose 67k training sentences cost "
            "the most, runs last. Convergence check: after the first seed's main cells, p-tuning-v2's "
            "cell trains again with three times the epochs on CoNLL-2003, RTE and MRPC (first seed), "
            "before prompt tuning's cells."
        ),
        secondary_methods=("prompt-tuning",),
        priority_tasks=("conll03", "rte", "mrpc"),
        tune_trials=4,
        levers={
            "vocab-init": {"prefix_init": "vocab"},
            "per-example-dropout": {"prompt_dropout_per_example": True},
        },
        lever_tasks=("rte", "conll03"),
        longer_tasks=("conll03", "rte", "mrpc"),
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
