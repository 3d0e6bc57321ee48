"""Speed and memory of each method, side by side: what `ptuning bench` measures.

Every method runs in a fresh Python process (`python -m ptuning.experiments.bench.worker --worker JSON`), so its
peak memory is its own and no method warms a cache for another. A worker builds the model on a
fixed random batch (batch size x sequence length, every token real) and measures:

* ``step_ms``: median wall time of a training step (forward, backward, AdamW step, zero_grad)
  after `warmup` steps, over `steps` steps;
* ``peak_mb``: peak memory while training. CPU: the process's resident set size (RSS), sampled
  every 2 ms by a thread during the warm-up and measured steps (``base_mb`` is the RSS just before
  the first step, after the imports and the model; ``train_mb`` = peak - base is what training
  adds). CUDA: ``torch.cuda.max_memory_allocated`` (``base_mb``: allocated before the first step);
* ``trainable_params`` and ``checkpoint_bytes`` (what `save_pretrained` writes: prompt + head, or
  every weight for fine-tuning; PEFT: its adapter files);
* ``infer_ms``: median eval-mode forward latency of the same batch with the method's prompt, and
  ``infer_plain_ms``: the same model with no prompt at all (the frozen backbone + head).

The step and inference run under bf16 autocast where `ptuning.core.precision` says so (a GPU, a CPU with
native bf16; `bf16` True/False forces the choice). Rows of PEFT methods that fail record the
exception text as their result. `run_bench` runs all methods `repeats` times round-robin (so slow
drifts of a shared machine hit every method alike) and reports the median over repeats, and the
ratio of each method to fine-tuning measured in the same run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# name -> (kind, options). kind "ours" builds a PromptModel; "peft" wraps a HF sequence classifier;
# "handcrafted" is a template + verbalizer (nothing trains: inference and checkpoint size only).
METHOD_SPECS: dict[str, tuple[str, dict[str, Any]]] = {
    "fine-tune": ("ours", {"method": "fine-tune"}),
    "p-tuning-v2": ("ours", {"method": "p-tuning-v2"}),
    "p-tuning-v2+reparam": ("ours", {"method": "p-tuning-v2", "prefix_projection": True}),
    # the layers' activations recomputed in the backward pass (TrainConfig.activation_checkpointing)
    "p-tuning-v2+checkpointing": ("ours", {"method": "p-tuning-v2", "activation_checkpointing": True}),
    # one prompt-dropout mask for the whole batch (the plain deep prefix draws one per example by default)
    "p-tuning-v2+batch-dropout": ("ours", {"method": "p-tuning-v2", "prompt_dropout_per_example": False}),
    "prefix-tuning": ("ours", {"method": "prefix-tuning"}),
    "prompt-tuning": ("ours", {"method": "prompt-tuning"}),
    "peft-prefix-tuning": ("peft", {"peft_type": "prefix"}),
    "peft-prompt-tuning": ("peft", {"peft_type": "prompt"}),
    "handcrafted": ("handcrafted", {}),
}
ALL_METHODS = tuple(METHOD_SPECS)

# Targets, as ratios against fine-tuning (inference: against the plain backbone) in the same run. A frozen
# backbone skips the weight gradients, about a third of fine-tuning's products, and the optimizer over
# its weights: about 2/3 of fine-tuning's step is the limit, nearer in bf16 where the frozen weights are
# held in bf16 and no longer cast at every step.
TARGETS = {
    "step_time": ("p-tuning-v2", 0.70),
    "peak_memory": ("p-tuning-v2", 0.60),
    "inference_prefix_overhead": ("p-tuning-v2", 1.03),
}
PRECISION_TARGETS = {"bf16 autocast": {"step_time": ("p-tuning-v2", 0.65)}}
# Where a backbone has targets of its own: the memory advantage grows with the frozen model.
BACKBONE_TARGETS = {"mpnet-base": {"peak_memory": ("p-tuning-v2", 0.45)}}


@dataclass
class BenchConfig:
    backbone: str = "minilm"
    batch_size: int = 16
    seq_len: int = 128
    prefix_len: int = 20
    warmup: int = 3
    steps: int = 10
    infer_reps: int = 10
    repeats: int = 1
    methods: tuple[str, ...] = ALL_METHODS
    device: str = "auto"  # auto, cpu, cuda
    threads: int | None = None  # torch CPU threads (None: torch's default)
    bf16: bool | None = None  # bf16 autocast: True, False, None (ptuning.core.precision's default)
    num_labels: int = 2
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def resolved_device(self) -> str:
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"


QUICK = {"batch_size": 4, "seq_len": 32, "warmup": 1, "steps": 2, "infer_reps": 2, "repeats": 1}
