"""The benchmark protocols: every method on fixed budgets (quick, CPU, GPU) and the equal-budget
tuned protocols of reports/cpu-converged, each a `Protocol` by name."""

from __future__ import annotations

from .protocol import Protocol, TaskSetting

# fine-tuning's learning rate for the few-step CPU protocol (see its description)
CPU_LRS = {"fine-tune": 1e-4}

BENCHMARKS: dict[str, Protocol] = {
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
