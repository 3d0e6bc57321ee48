"""The orders batches are drawn in: single-task training (`GlobalLengthGroupedSampler`), evaluation
(`LengthSortedSampler`), and which task each training batch comes from in multi-task training
(`TaskBatchSampler`; batches are single-task).

Every task's examples are ordered as single-task training orders them (`GlobalLengthGroupedSampler`:
length-grouped, drawn afresh from (seed, epoch)) and cut into batches. An epoch has as many batches
as all tasks' batches together, N = sum_t ceil(n_t / batch); the rule says how many of them each task
gets and the batches of the tasks are interleaved in a random order (seeded by seed + epoch):

- ``proportional``: task t gets its own ceil(n_t / batch) batches, so every training example is seen
  once per epoch (a task with 10x the examples gets 10x the batches);
- ``temperature``: task t gets a share p_t of the N batches with p_t proportional to n_t ** (1 / T)
  (T = 1 is proportional, larger T moves towards uniform, as in multilingual and MT-DNN training);
  a task that gets more batches than it has goes on into its next order, one that gets fewer stops early.

With a single task, proportional sampling yields exactly the batches of single-task training.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from transformers.trainer_pt_utils import LengthGroupedSampler

SAMPLING_RULES = ("proportional", "temperature")
_VIRTUAL_EPOCH = 100_003  # a task's k-th extra order in epoch e is drawn as epoch e + k * this


class GlobalLengthGroupedSampler(LengthGroupedSampler):
    """Length-grouped order over the *global* batch, drawn afresh from (seed, epoch) each epoch.

    Every rank draws the same order, and Accelerate hands rank r every world_size-th per-device
    batch of it, so one optimizer step covers the same examples as one step of a single process
    with the same global batch; a resumed run replays the order of the epoch it stopped in.
    """

    def __init__(self, global_batch: int, dataset, seed: int) -> None:
        super().__init__(global_batch, dataset=dataset, generator=torch.Generator())
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self):
        self.generator.manual_seed(self.seed + self.epoch)
        return super().__iter__()


class LengthSortedSampler(torch.utils.data.Sampler):
    """Evaluation order: longest inputs first (ties in dataset order), the same on every rank."""

    def __init__(self, dataset) -> None:
        lengths = [token_count(dataset[i]["input_ids"]) for i in range(len(dataset))]
        self.order = sorted(range(len(lengths)), key=lambda i: -lengths[i])

    def __iter__(self):
        return iter(self.order)

    def __len__(self) -> int:
        return len(self.order)


def token_count(ids) -> int:
    """The tokens of one example whose ids are a list, a tensor, or one list per choice (of
    different lengths): what a batch pads to."""
    if torch.is_tensor(ids) or isinstance(ids, np.ndarray):
        return int(ids.numel() if torch.is_tensor(ids) else ids.size)
    return sum(token_count(part) for part in ids) if ids and isinstance(ids[0], (list, tuple)) else len(ids)


def task_shares(sizes: Sequence[int], rule: str, temperature: float = 1.0) -> list[float]:
    """The probability of each task's batches: n_t ** (1/T) normalised (T = 1 for proportional)."""
    if rule not in SAMPLING_RULES:
        raise ValueError(f"unknown task sampling rule {rule!r}; known: {', '.join(SAMPLING_RULES)}")
    if rule == "temperature" and temperature <= 0:
        raise ValueError(f"the sampling temperature must be > 0, got {temperature}")
    power = 1.0 if rule == "proportional" else 1.0 / temperature
    weights = [n**power for n in sizes]
    total = sum(weights)
    return [w / total for w in weights]


def batch_counts(sizes: Sequence[int], batch_size: int, rule: str, temperature: float = 1.0) -> list[int]:
    """Batches per task in one epoch (see the module docstring); every task gets at least one."""
    own = [math.ceil(n / batch_size) for n in sizes]
    if rule == "proportional":
        task_shares(sizes, rule)  # validates the rule
        return own
    total = sum(own)
    exact = [total * p for p in task_shares(sizes, rule, temperature)]
    counts = [max(1, math.floor(x)) for x in exact]
    by_remainder = sorted(range(len(sizes)), key=lambda t: exact[t] - math.floor(exact[t]), reverse=True)
    for t in by_remainder[: max(0, total - sum(counts))]:  # largest remainders round up
        counts[t] += 1
    return counts


class TaskBatchSampler:
    """Batches of global indices into the concatenation of the tasks' feature lists, one task per batch.

    `datasets` are the tasks' feature lists (in the order they are concatenated); `group_size` is the
    global batch the length grouping works on (batch x grad-accum x processes, as in single-task training).
    """

    def __init__(
        self,
        datasets: Sequence[Sequence[dict[str, Any]]],
        batch_size: int,
        group_size: int,
        seed: int,
        rule: str = "proportional",
        temperature: float = 1.0,
    ) -> None:
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0
        sizes = [len(d) for d in datasets]
        if not all(sizes):
            raise ValueError("every task needs at least one training example")
        self.counts = batch_counts(sizes, batch_size, rule, temperature)
        self.offsets = [sum(sizes[:t]) for t in range(len(sizes))]
        self.samplers = [GlobalLengthGroupedSampler(group_size, d, seed) for d in datasets]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return sum(self.counts)

    def _batches(self, task: int) -> Iterator[list[int]]:
        """The task's batches in this epoch's order, then in further orders for as long as asked."""
        sampler, offset, extra = self.samplers[task], self.offsets[task], 0
        while True:
            sampler.set_epoch(self.epoch + extra * _VIRTUAL_EPOCH)
            order = [offset + i for i in sampler]
            for start in range(0, len(order), self.batch_size):
                yield order[start : start + self.batch_size]
            extra += 1

    def plan(self) -> list[int]:
        """The task of each batch of this epoch, in order."""
        tasks = [t for t, count in enumerate(self.counts) for _ in range(count)]
        if len(self.counts) == 1:
            return tasks
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return [tasks[i] for i in torch.randperm(len(tasks), generator=generator).tolist()]

    def __iter__(self) -> Iterator[list[int]]:
        streams = [self._batches(t) for t in range(len(self.counts))]
        for task in self.plan():
            yield next(streams[task])
