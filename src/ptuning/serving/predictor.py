"""Many tasks on one frozen backbone: `MultiTaskPredictor` (model + tokenizer -> answers, in mixed batches).

Every task is a prompt-only checkpoint (its prompt and its head) made for the same backbone. The
backbone is loaded once; each task keeps its folded prefix as a table of keys and values per layer.
A forward pass may mix rows of several tasks: each row's prefix is gathered by its task and passed
to `PromptModel.encode(prefix=...)` (prefixes shorter than the longest are padded with masked
columns; a layer that a task does not prompt gets a fully masked slot for that task's rows, which
is exactly the plain backbone for that layer). Each task's head then reads its own rows.

* p-tuning-v2 and prefix-tuning (deep prefixes) batch across tasks this way.
* prompt-tuning (an input prompt) changes the input sequence, so its rows run in sub-batches of
  their own task (still within the same micro-batch).
* fine-tune checkpoints carry their own backbone weights and are refused.

Each task's model does its own task-type work: `PromptModel.encode` reads the mixed batch, and the
task's head (`ptuning.heads`) gives its rows' values (`per_row`), a feature's value from its rows
(`merge_rows`, one row per choice for multiple choice) and the logits form of its answers (`join`).
The micro-batcher in front of it is `ptuning.serving.batcher.MicroBatcher`.
"""

from __future__ import annotations

import collections
import contextlib
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..core.backbones import backbone_limit, fingerprint, load_backbone
from ..core.injection import LayerPrefix, PrefixInjector
from ..core.precision import hold_frozen_in_bf16, resolve_precision
from ..data.features import make_collator
from ..decode import format_outputs
from ..errors import CheckpointError
from ..heads import ClassificationHead
from ..inference import Predictor
from ..model import PromptModel
from ..tasks import TaskSpec
from .errors import InvalidTaskNameError, TaskExistsError, UnknownTaskError
from .tasks import (
    DEFAULT_MAX_LENGTH,
    TASK_NAME,
    PreparedRequest,
    ServedTask,
    _checkpoint_label,
    check_servable,
    set_prefix_table,
)


@dataclass
class _Row:
    request: int
    feature: int
    choice: int
    task: ServedTask
    sequence: dict[str, list[int]]

    @property
    def length(self) -> int:
        return len(self.sequence["input_ids"])


class MultiTaskPredictor:
    """Serves several tasks' prompts and heads from one frozen backbone, batching rows across tasks.

    Build it with `from_checkpoints({"sst2": "outputs/sst2", ...})`, or from a loaded backbone and
    tokenizer and `add_task`. `predict(name, inputs)` answers one task; `predict_many([(name,
    inputs), ...])` runs several tasks' requests in mixed batches; `predict_tasks([name, ...],
    inputs)` answers every listed task for the same inputs in one batched pass. Answers are those of `ptuning
    predict` (`ptuning.inference.format_outputs`). Thread safety: `prepare` may be called from any
    thread (the shared tokenizer is locked); `compute` should run in one thread at a time (the
    `MicroBatcher` worker); `add_task`/`remove_task` may run while it computes.
    """

    def __init__(
        self,
        backbone,
        tokenizer,
        *,
        backbone_name: str = "",
        max_length: int | None = None,
        max_batch_size: int = 32,
        bf16: bool | None = None,
    ) -> None:
        if tokenizer is None:
            raise ValueError("a tokenizer is required")
        self.backbone = backbone.eval()
        self.backbone.requires_grad_(False)
        self.tokenizer = tokenizer
        self.backbone_name = backbone_name or getattr(backbone.config, "_name_or_path", "")
        self.backbone_fingerprint = fingerprint(backbone)
        # max_length None: each task reads at the length its checkpoint was trained with (256 where it
        # recorded none); self.max_length is then the backbone's limit, which caps every task
        self.max_length = min(max_length or backbone_limit(backbone.config), backbone_limit(backbone.config))
        self._fixed_length = max_length is not None
        self.max_batch_size = max_batch_size
        self.precision = resolve_precision(bf16, next(backbone.parameters()).device.type, answers=True)
        if self.precision.bf16:  # after the fingerprint above, which it keeps
            hold_frozen_in_bf16(self.backbone)
        # attach before serving, so that adding the first deep task never rewires a running model; an
        # architecture without deep prompts raises ValueError: only prompt-tuning checkpoints can be served
        with contextlib.suppress(ValueError):
            PrefixInjector.attach(backbone)
        self._collate = make_collator(TaskSpec("rows", ClassificationHead.task_type), tokenizer)  # plain rows
        self._tasks: dict[str, ServedTask] = {}
        self._registry_lock = threading.Lock()
        self._bank: _PrefixBank | None = None  # every deep task's table stacked; rebuilt on change
        self._tokenizer_lock = threading.Lock()  # fast tokenizers are not safe across threads
        self._origin: tuple[str, str] | None = None  # (checkpoint, task) the backbone came from

    # --- construction -----------------------------------------------------------------------

    @classmethod
    def from_checkpoints(
        cls,
        prompts: Mapping[str, str | Path] | Iterable[tuple[str, str | Path]],
        *,
        backbone=None,
        max_length: int | None = None,
        max_batch_size: int = 32,
        bf16: bool | None = None,
    ) -> MultiTaskPredictor:
        """Load the backbone once (the one the checkpoints name, or `backbone`: a name or a
        (model, tokenizer) pair) and every task. All checkpoints must be made for one backbone."""
        items = list(prompts.items()) if isinstance(prompts, Mapping) else list(prompts)
        if not items:
            raise CheckpointError("no checkpoints to serve")
        configs = [(name, str(path), check_servable(path).config) for name, path in items]
        first_name, first_path, first = configs[0]
        for name, path, config in configs[1:]:
            if config["backbone_fingerprint"] != first["backbone_fingerprint"]:
                raise CheckpointError(
                    f"checkpoints are for different backbones: {_checkpoint_label(first_path, first_name)} "
                    f"was trained on {first['backbone']!r} (fingerprint {first['backbone_fingerprint']}) but "
                    f"{_checkpoint_label(path, name)} on {config['backbone']!r} (fingerprint "
                    f"{config['backbone_fingerprint']}); one server serves one backbone"
                )
        if backbone is None or isinstance(backbone, str):
            backbone_name = backbone or first["backbone"]
            model, tokenizer = load_backbone(backbone_name)
        else:
            model, tokenizer = backbone
            backbone_name = first["backbone"]
        predictor = cls(
            model,
            tokenizer,
            backbone_name=backbone_name,
            max_length=max_length,
            max_batch_size=max_batch_size,
            bf16=bf16,
        )
        predictor._origin = (first_path, first_name)
        for name, path, _ in configs:
            predictor.add_task(name, path)
        return predictor

    # --- the registry -------------------------------------------------------------------------

    def add_task(self, name: str, path: str | Path) -> ServedTask:
        """Load a checkpoint onto the shared backbone and serve it as `name` (safe while serving)."""
        if not TASK_NAME.match(name or ""):
            raise InvalidTaskNameError(
                f"task name {name!r} must be 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit"
            )
        if name in self._tasks:
            raise TaskExistsError(f"task {name!r} is already served (from {self._tasks[name].path})")
        path = str(path)
        checkpoint = check_servable(path)  # read and checked once for everything below
        config = checkpoint.config
        if config["backbone_fingerprint"] != self.backbone_fingerprint:
            origin = f" (from {_checkpoint_label(*self._origin)})" if self._origin else ""
            raise CheckpointError(
                f"checkpoint {_checkpoint_label(path, name)} was trained on backbone {config['backbone']!r} "
                f"(fingerprint {config['backbone_fingerprint']}), but this server's backbone is "
                f"{self.backbone_name!r}{origin} (fingerprint {self.backbone_fingerprint})"
            )
        model = PromptModel.from_pretrained(checkpoint, backbone=self.backbone)
        model.to(next(self.backbone.parameters()).device)  # head and prompt where the backbone is
        model.fold_prefix()
        length = self.max_length
        if not self._fixed_length:
            length = min(checkpoint.max_seq_length or DEFAULT_MAX_LENGTH, self.max_length)
        task = ServedTask(
            name=name,
            path=path,
            model=model,
            predictor=Predictor(
                model,
                self.tokenizer,
                max_length=length,
                batch_size=self.max_batch_size,
                inputs=checkpoint.inputs,  # the trained column names, a required pair
                source=path,
            ),
        )
        if model.prefix_encoder is not None:
            set_prefix_table(task, model)
        with self._registry_lock:
            if name in self._tasks:
                raise TaskExistsError(f"task {name!r} is already served (from {self._tasks[name].path})")
            tasks = dict(self._tasks)
            tasks[name] = task
            self._tasks = tasks  # replaced, never mutated: readers need no lock
            self._bank = None
            if self._origin is None:
                self._origin = (path, name)
        return task

    def remove_task(self, name: str) -> ServedTask:
        """Stop serving `name`; requests already accepted for it still get their answers."""
        with self._registry_lock:
            if name not in self._tasks:
                raise UnknownTaskError(name, sorted(self._tasks))
            tasks = dict(self._tasks)
            task = tasks.pop(name)
            self._tasks = tasks
            self._bank = None
        return task

    def task(self, name: str) -> ServedTask:
        tasks = self._tasks
        if name not in tasks:
            raise UnknownTaskError(name, sorted(tasks))
        return tasks[name]

    def tasks(self) -> list[ServedTask]:
        return [task for _, task in sorted(self._tasks.items())]

    @property
    def task_names(self) -> list[str]:
        return sorted(self._tasks)

    # --- inference ----------------------------------------------------------------------------

    def prepare(self, task: str | ServedTask, inputs: Sequence[Any]) -> PreparedRequest:
        """Parse and tokenize raw inputs (raises DataError naming the bad input and field)."""
        served = self.task(task) if isinstance(task, str) else task
        with self._tokenizer_lock:
            examples, features, flags = served.predictor.prepare(inputs)
        return PreparedRequest(served, examples, features, flags)

    def format(self, request: PreparedRequest, logits) -> list[dict[str, Any]]:
        """The answers of `ptuning predict` for a request, from the logits `compute` gave for it."""
        return format_outputs(request.task.spec, request.examples, request.features, logits, request.flags)

    def predict(self, task: str, inputs: Sequence[Any]) -> list[dict[str, Any]]:
        request = self.prepare(task, inputs)
        return self.format(request, self.compute([request])[0])

    def predict_many(self, requests: Sequence[tuple[str, Sequence[Any]]]) -> list[list[dict[str, Any]]]:
        """Several tasks' requests at once, in mixed-task batches of up to `max_batch_size` rows."""
        prepared = [self.prepare(name, inputs) for name, inputs in requests]
        return [self.format(r, logits) for r, logits in zip(prepared, self.compute(prepared), strict=True)]

    def predict_tasks(self, tasks: Sequence[str], inputs: Sequence[Any]) -> dict[str, list[dict[str, Any]]]:
        """Every task in `tasks` for the same inputs, in one batched pass (each row its task's prefix,
        up to `max_batch_size` rows a pass): {task: answers}, in the order of `tasks`."""
        served = self.tasks_for(tasks)
        prepared = [self.prepare(task, inputs) for task in served]
        outputs = self.compute(prepared)
        return {r.task.name: self.format(r, logits) for r, logits in zip(prepared, outputs, strict=True)}

    def tasks_for(self, names: Sequence[str]) -> list[ServedTask]:
        """The served tasks of `names`: UnknownTaskError for the first unknown one, ValueError for
        an empty list or a name listed twice."""
        if isinstance(names, str) or not names:
            raise ValueError("expected a non-empty list of task names")
        seen: set[str] = set()  # a set: a client may send a long list, and this must stay linear
        for name in names:
            if name in seen:
                raise ValueError(f"task {name!r} is listed twice")
            seen.add(name)
        return [self.task(name) for name in names]

    def compute(self, requests: Sequence[PreparedRequest], *, max_batch_size: int | None = None) -> list:
        """Model outputs per request, aligned with its features (QA: (starts, ends)).

        Rows of deep-prompt tasks share forward passes whatever their task; prompt-tuning rows run
        in passes of their own task. Rows are sorted by length so that little is padded, and each
        pass takes at most `max_batch_size` rows.
        """
        parts = [(request, range(len(request.features))) for request in requests]
        values = self.compute_parts(parts, max_batch_size=max_batch_size)
        return [self.join(request, part) for request, part in zip(requests, values, strict=True)]

    @staticmethod
    def join(request: PreparedRequest, values: list) -> Any:
        """A request's outputs (the form `format` reads) from its features' values, in order."""
        return request.task.model.head.join(values)

    @torch.inference_mode()
    def compute_parts(
        self, parts: Sequence[tuple[PreparedRequest, Sequence[int]]], *, max_batch_size: int | None = None
    ) -> list[list]:
        """The values of the features listed for each (request, feature indices), one per index, in
        that order: what `compute` does for whole requests, for parts of them. The micro-batcher
        runs a large request part by part, so that other requests can go between them; `join`
        turns a request's values, every feature's in the features' order, into its outputs."""
        size = max_batch_size or self.max_batch_size
        deep: list[_Row] = []
        by_input_prompt: dict[int, list[_Row]] = collections.defaultdict(list)
        for r, (request, indices) in enumerate(parts):
            target = deep if request.task.deep else by_input_prompt[id(request.task)]
            head = request.task.model.head
            for f in indices:
                for c, sequence in enumerate(head.rows_of(request.features[f])):
                    target.append(_Row(r, f, c, request.task, sequence))
        outputs: dict[tuple[int, int, int], Any] = {}
        for group in (deep, *by_input_prompt.values()):
            group.sort(key=lambda row: row.length)
            for begin in range(0, len(group), size):
                with self.precision.autocast():
                    self._forward(group[begin : begin + size], outputs)
        return [_merge(r, request, indices, outputs) for r, (request, indices) in enumerate(parts)]

    def _forward(self, rows: list[_Row], outputs: dict) -> None:
        batch = self._collate([row.sequence for row in rows])
        device = next(self.backbone.parameters()).device
        batch = {k: v.to(device) for k, v in batch.items()}
        mask = batch["attention_mask"]
        tasks = [row.task for row in rows]
        first = tasks[0]
        prefix = self.gather_prefix(tasks) if first.deep else None
        hidden = first.model.encode(batch["input_ids"], mask, batch.get("token_type_ids"), prefix=prefix)
        groups: dict[int, list[int]] = collections.defaultdict(list)
        for i, task in enumerate(tasks):
            groups[id(task)].append(i)
        for indices in groups.values():
            task = tasks[indices[0]]
            if len(indices) == len(rows):
                h, m = hidden, mask
            else:
                h, m = take_rows(hidden, indices), take_rows(mask, indices)
            lengths = [rows[i].length for i in indices]
            for i, value in zip(indices, task.model.head.per_row(h, m, lengths), strict=True):
                row = rows[i]
                outputs[(row.request, row.feature, row.choice)] = value

    def gather_prefix(self, tasks: Sequence[ServedTask]) -> dict[int, LayerPrefix] | None:
        """The per-layer prefix of a batch whose row i belongs to `tasks[i]` (all deep)."""
        present: dict[int, ServedTask] = {}
        for task in tasks:
            present.setdefault(id(task), task)
        batch = len(tasks)
        if len(present) == 1:  # one task: its own table, expanded without a copy, as PromptModel does
            task = tasks[0]
            return {
                layer: LayerPrefix(
                    key=task.keys[layer].unsqueeze(0).expand(batch, -1, -1, -1),
                    value=task.values[layer].unsqueeze(0).expand(batch, -1, -1, -1),
                )
                for layer in task.layers
            }
        unique = list(present.values())
        bank = self._bank
        if bank is None or any(id(t) not in bank.index for t in unique):
            # tasks added since, or removed ones whose requests are still answered: rebuild
            listed = [t for t in self._tasks.values() if t.deep]
            known = {id(t) for t in listed}
            bank = _PrefixBank(listed + [t for t in unique if id(t) not in known])
            self._bank = bank
        length = max(t.keys.shape[2] for t in unique)
        index = [bank.index[id(t)] for t in tasks]

        def rows(table: torch.Tensor) -> torch.Tensor:
            return take_rows(table, index)

        prefix = {}
        for layer in sorted(set().union(*(t.layers for t in unique))):  # others: the plain backbone
            full = all(layer in t.layers and t.keys.shape[2] == length for t in unique)
            prefix[layer] = LayerPrefix(
                key=rows(bank.keys[layer, :, :, :length]),  # (B, heads, P, head_dim)
                value=rows(bank.values[layer, :, :, :length]),
                mask=None if full else rows(bank.visible[layer, :, :length]),  # (B, P)
            )
        return prefix


def take_rows(table: torch.Tensor, index: Sequence[int]) -> torch.Tensor:
    """`table[index]` along the first dimension, as a new tensor. On the CPU a torch.stack of views:
    on a busy CPU index_select's parallel kernel took 50 ms here where stack takes 0.1 ms (a plain
    copy). On an accelerator one index_select: a stack of B views launches B copies."""
    if table.device.type == "cpu":
        return torch.stack([table[i] for i in index])
    return table.index_select(0, torch.as_tensor(index, device=table.device))


class _PrefixBank:
    """The deep tasks' prefix tables stacked once, per layer: keys and values (layers, tasks,
    heads, P_max, head_dim) padded to the longest prompt, and which columns are real (layers,
    tasks, P_max). A mixed batch then gathers its rows' tables with one copy per layer and tensor."""

    def __init__(self, tasks: Sequence[ServedTask]) -> None:
        self.index = {id(t): i for i, t in enumerate(tasks)}
        self.tasks = list(tasks)  # keeps the ids above valid
        length = max(t.keys.shape[2] for t in tasks)
        pad = [(0, 0, 0, length - t.keys.shape[2]) for t in tasks]
        self.keys = torch.stack([F.pad(t.keys, p) for t, p in zip(tasks, pad, strict=True)], dim=1)
        self.values = torch.stack([F.pad(t.values, p) for t, p in zip(tasks, pad, strict=True)], dim=1)
        self.visible = torch.zeros(self.keys.shape[0], len(tasks), length, dtype=torch.bool)
        for i, t in enumerate(tasks):
            self.visible[list(t.layers), i, : t.keys.shape[2]] = True
        self.visible = self.visible.to(self.keys.device)


def _merge(r: int, request: PreparedRequest, indices: Sequence[int], outputs: dict) -> list:
    """The values of a request's features `indices` from their rows' values (`outputs`)."""
    head = request.task.model.head
    return [
        head.merge_rows([outputs[(r, f, c)] for c in range(head.num_rows(request.features[f]))])
        for f in indices
    ]
