"""PromptModel: a frozen encoder + a prompt method + a task head, trainable by transformers.Trainer."""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils import ModelOutput

from .checkpoint import (
    check_backbone,
    check_tensors,
    checkpoint_method,
    expected_tensors,
    load_finite,
    load_state,
    read_header,
    save_checkpoint,
    spec_from_config,
    validate_config,
)
from .core.backbones import Geometry, backbone_limit, fingerprint, geometry, load_backbone
from .core.checkpointing import is_checkpointed, set_activation_checkpointing
from .core.config import PromptConfig
from .core.injection import LayerPrefix, PrefixInjector
from .core.prompts import InputPrompt, PrefixEncoder, vocabulary_prefix
from .errors import CheckpointError, DataError
from .heads import Head, build_head
from .interop.hf_config import task_config
from .tasks import TaskSpec


@dataclass
class ParameterCount:
    trainable: int
    total: int
    backbone: int

    @property
    def share(self) -> float:
        return self.trainable / self.total if self.total else 0.0

    def describe(self) -> str:
        return f"trainable {self.trainable:,} / total {self.total:,} ({100 * self.share:.3f}%)"


def _tokenizer_beside(directory) -> PreTrainedTokenizerBase | None:
    """The tokenizer saved in a checkpoint folder (`save_pretrained` writes it there), or None."""
    if not (Path(directory) / "tokenizer_config.json").is_file():
        return None
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(directory))


def without_dropout(module: nn.Module) -> None:
    """Set every dropout module under `module` to p=0. Hugging Face attention reads its dropout rate
    from the module (`self.dropout.p`), so this also stills the attention-probability dropout."""
    for sub in module.modules():
        if isinstance(sub, nn.modules.dropout._DropoutNd):
            sub.p = 0.0


class PromptModel(nn.Module):
    """Frozen (or, for fine-tune, trainable) encoder with a prompt and a linear head.

    `forward` takes the tokenizer's outputs plus labels (`labels`, or `start_positions` and
    `end_positions` for QA; multiple choice takes (batch, choices, length) inputs) and returns
    the same output classes as Hugging Face task models, so `transformers.Trainer` trains it. A model
    whose text pairs are encoded separately (`PromptConfig.pair_encoding` "separate") also takes the
    second texts' `pair_input_ids` and `pair_attention_mask` (the features of `ptuning.data.encode`).
    Like a Hugging Face model it carries `config` (the backbone's, with the task's labels),
    `device`, `dtype` and, once loaded, its `tokenizer`; so `transformers.pipeline` runs it:

        >>> from transformers import pipeline
        >>> model = PromptModel.from_pretrained("outputs/sst2-p-tuning-v2")
        >>> pipeline("text-classification", model=model, tokenizer=model.tokenizer)("a gripping film")
    """

    main_input_name = "input_ids"

    def __init__(
        self,
        backbone: PreTrainedModel,
        spec: TaskSpec,
        config: PromptConfig,
        *,
        backbone_name: str = "",
        backbone_fingerprint: str | None = None,
    ) -> None:
        super().__init__()
        config = config.filled()  # what a config built by hand leaves unset: the standalone values
        self.backbone = backbone
        if not config.backbone_dropout:
            without_dropout(backbone)  # before any prompt module joins the backbone's tree
        self.spec = spec
        self.prompt_config = config
        self.backbone_name = backbone_name
        self.backbone_fingerprint = backbone_fingerprint or fingerprint(backbone)
        self.geometry: Geometry = geometry(backbone.config)
        self.config: PretrainedConfig = task_config(backbone.config, spec)
        # the tokenizer the checkpoint or backbone came with (None for a model built in memory)
        self.tokenizer: PreTrainedTokenizerBase | None = None
        self._accepts_token_type_ids = "token_type_ids" in inspect.signature(backbone.forward).parameters

        self.prefix_encoder: PrefixEncoder | None = None
        self.input_prompt: InputPrompt | None = None
        if config.deep:
            self.injector = PrefixInjector.attach(backbone)
            top = config.prompt_layers or self.injector.num_layers
            layers = list(
                range(self.injector.num_layers - min(top, self.injector.num_layers), self.injector.num_layers)
            )
            g = self.geometry
            self.prefix_encoder = PrefixEncoder(
                config.prefix_len,
                layers,
                g.num_heads,
                g.head_dim,
                g.hidden_size,
                projection=config.prefix_projection,
                projection_hidden=config.projection_hidden,
                dropout=config.prompt_dropout,
                init_std=config.init_std,
                dropout_per_example=config.prompt_dropout_per_example,
            )
            if config.prefix_init == "vocab":
                table = vocabulary_prefix(backbone, self.injector, layers, config.prefix_len)
                with torch.no_grad():
                    self.prefix_encoder.embedding.weight.copy_(table)
        elif config.input_prompt:
            self.input_prompt = InputPrompt(
                config.prefix_len,
                backbone.get_input_embeddings(),
                dropout=config.prompt_dropout,
                dropout_per_example=config.prompt_dropout_per_example,
            )
        self.head: Head = build_head(
            spec.task_type,
            self.geometry.hidden_size,
            spec.num_labels,
            pooling=config.pooling,
            dropout=config.head_dropout,
            pair_encoding=config.pair_encoding,
        )
        self.backbone.requires_grad_(not config.freezes_backbone)

    # --- construction ---------------------------------------------------------------------

    @classmethod
    def from_backbone(
        cls, backbone_name: str, spec: TaskSpec, config: PromptConfig
    ) -> tuple[PromptModel, PreTrainedTokenizerBase]:
        backbone, tokenizer = load_backbone(backbone_name)
        model = cls(backbone, spec, config, backbone_name=backbone_name)
        model.tokenizer = tokenizer
        return model, tokenizer

    # --- what Hugging Face code (pipelines, Trainer) asks of a model ---------------------------

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    @property
    def name_or_path(self) -> str:
        return self.backbone_name

    @staticmethod
    def can_generate() -> bool:
        return False  # an encoder with a task head: nothing to generate

    # --- bookkeeping ----------------------------------------------------------------------

    def prompt_modules(self) -> dict[str, nn.Module]:
        """The task-specific modules: what a prompt-only checkpoint holds."""
        modules: dict[str, nn.Module] = {"head": self.head}
        if self.prefix_encoder is not None:
            modules["prefix_encoder"] = self.prefix_encoder
        if self.input_prompt is not None:
            modules["input_prompt"] = self.input_prompt
        return modules

    def count_parameters(self) -> ParameterCount:
        backbone = sum(p.numel() for p in self.backbone.parameters())
        own = sum(p.numel() for m in self.prompt_modules().values() for p in m.parameters())
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return ParameterCount(trainable=trainable, total=backbone + own, backbone=backbone)

    @property
    def max_text_length(self) -> int:
        """The most tokens of text one sequence can hold: the backbone's positions, less the P input
        vectors that prompt tuning puts before the text (deep prompts take no positions)."""
        taken = self.input_prompt.prefix_len if self.input_prompt is not None else 0
        return backbone_limit(self.backbone.config) - taken

    def _too_long(self, length: int) -> str:
        limit = self.max_text_length
        if self.input_prompt is None:
            return (
                f"input of {length} tokens is longer than the backbone's {limit} positions; "
                f"truncate it to {limit} tokens (tokenizer(..., truncation=True, max_length={limit}))"
            )
        return (
            f"input of {length} tokens is longer than this prompt-tuning model reads: {limit} tokens "
            f"(the backbone's {limit + self.input_prompt.prefix_len} positions less the "
            f"{self.input_prompt.prefix_len} prompt vectors); truncate it to {limit} tokens "
            f"(tokenizer(..., truncation=True, max_length={limit}))"
        )

    def fold_prefix(self) -> None:
        """Replace a reparameterized prefix encoder by its plain table (same outputs, no MLP)."""
        if self.prefix_encoder is not None and self.prefix_encoder.projection:
            self.prefix_encoder = self.prefix_encoder.fold()

    def save_pretrained(self, directory, *, fold: bool = True) -> dict[str, int]:
        """Write the prompt-only checkpoint (see `ptuning.checkpoint.files`), with the model's tokenizer
        where it has one, so `AutoTokenizer.from_pretrained(directory)` works; returns its byte counts."""
        return save_checkpoint(self, directory, fold=fold)

    def push_to_hub(self, repo_id: str, **kwargs) -> str:
        """Upload the prompt-only checkpoint (and tokenizer) to the Hugging Face hub; the commit's URL.
        See `ptuning.interop.hub.push_to_hub` for the options."""
        from .interop.hub import push_to_hub

        return push_to_hub(self, repo_id, **kwargs)

    @classmethod
    def from_pretrained(
        cls, directory, *, backbone=None, revision: str | None = None, cache_dir=None
    ) -> PromptModel:
        """Load a checkpoint onto its backbone: the model, in eval mode, with `model.tokenizer` set.

        `directory`: a checkpoint folder, or a hub repo id ("user/name", at `revision`) fetched
        through huggingface_hub into `cache_dir` (its default cache; read from the cache alone
        when HF_HUB_OFFLINE=1). `backbone`: None (load by
        the saved name), a name, or a loaded model. The tokenizer is the one saved in the folder,
        else the backbone's (None when a loaded backbone is passed and the folder holds none).
        The checkpoint passes `ptuning.checkpoint`'s validator (config schema, safetensors header,
        names/dtypes/shapes, finite values) before its tensors are loaded; the header is read
        before the backbone is.
        """
        from .interop.hub import resolve_checkpoint

        directory = resolve_checkpoint(directory, revision=revision, cache_dir=cache_dir)
        method = checkpoint_method(directory)
        if method is not None and not method.prompt_model:
            raise CheckpointError(
                f"{directory} is a {method.name}-prompt checkpoint (no prompt weights); load it with "
                f"{method.loader}"
            )
        config = validate_config(directory)
        header = read_header(directory)
        tokenizer = None
        if backbone is None or isinstance(backbone, str | os.PathLike):
            name = str(backbone) if backbone is not None else config["backbone"]
            backbone, tokenizer = load_backbone(name)
            label = name
        else:
            label = getattr(backbone.config, "_name_or_path", "") or backbone.config.model_type
        backbone_print = fingerprint(backbone)
        check_backbone(config, backbone_print, label, directory)
        check_tensors(directory, header, expected_tensors(config, backbone))
        state = load_finite(directory)
        model = cls(
            backbone,
            spec_from_config(config),
            PromptConfig.from_dict(config["prompt_config"]),
            backbone_name=config["backbone"],
            backbone_fingerprint=backbone_print,
        )
        if config.get("prefix_folded"):
            model.fold_prefix()
        load_state(model, directory, state)
        model.tokenizer = _tokenizer_beside(directory) or tokenizer
        return model.eval()  # ready for inference, as Hugging Face's from_pretrained

    # --- activation checkpointing (what transformers.Trainer calls) --------------------------

    def activation_checkpointing_enable(
        self,
        activation_checkpointing_kwargs: dict | None = None,
        every_n_layers: int = 1,
        offload: bool = False,
    ) -> None:
        """Recompute the backbone's layers in the backward pass, the prefix included
        (`ptuning.core.checkpointing`). `TrainingArguments(activation_checkpointing=True)` calls it
        (`gradient_checkpointing=True` before transformers 5.24, through the alias below)."""
        kwargs = dict(activation_checkpointing_kwargs or {})
        if offload or kwargs.pop("use_reentrant", False) or kwargs:
            raise ValueError(
                "ptuning's activation checkpointing is non-reentrant and keeps activations in memory: "
                f"offload and checkpoint options are not supported (got offload={offload}, "
                f"{activation_checkpointing_kwargs})"
            )
        set_activation_checkpointing(self.backbone, every_n_layers=every_n_layers)

    def gradient_checkpointing_enable(
        self,
        gradient_checkpointing_kwargs: dict | None = None,
        every_n_layers: int = 1,
        offload: bool = False,
    ) -> None:
        self.activation_checkpointing_enable(gradient_checkpointing_kwargs, every_n_layers, offload)

    def activation_checkpointing_disable(self) -> None:
        set_activation_checkpointing(self.backbone, False)

    gradient_checkpointing_disable = activation_checkpointing_disable

    @property
    def is_gradient_checkpointing(self) -> bool:
        return is_checkpointed(self.backbone)

    # --- forward --------------------------------------------------------------------------

    def encode(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        prefix_mask: torch.Tensor | None = None,
        prefix: dict[int, LayerPrefix] | None = None,
    ) -> torch.Tensor:
        """Last hidden states (batch, length, hidden) for the real tokens, whatever the method.

        `prefix_mask` (batch, P) hides prefix positions (False = hidden) for deep prompts;
        `prefix` overrides the prefix entirely (used to serve several tasks in one batch).
        """
        kwargs: dict[str, torch.Tensor] = {}
        if attention_mask is not None:
            kwargs["attention_mask"] = attention_mask
        if token_type_ids is not None and self._accepts_token_type_ids:
            kwargs["token_type_ids"] = token_type_ids
        if input_ids is not None and input_ids.shape[-1] > self.max_text_length:
            raise DataError(self._too_long(input_ids.shape[-1]))

        if self.input_prompt is not None:
            embeds = self.backbone.get_input_embeddings()(input_ids)
            embeds = self.input_prompt(embeds)
            extra = self.input_prompt.prefix_len
            batch = input_ids.shape[0]
            if attention_mask is not None:
                ones = attention_mask.new_ones(batch, extra)
                kwargs["attention_mask"] = torch.cat([ones, attention_mask], dim=1)
            if "token_type_ids" in kwargs:
                kwargs["token_type_ids"] = torch.cat(
                    [token_type_ids.new_zeros(batch, extra), token_type_ids], dim=1
                )
            hidden = self.backbone(inputs_embeds=embeds, **kwargs).last_hidden_state
            return hidden[:, extra:]

        if prefix is None and self.prefix_encoder is not None:
            prefix = self.prefix_encoder(input_ids.shape[0], prefix_mask)
        if prefix is None:
            return self.backbone(input_ids=input_ids, **kwargs).last_hidden_state
        with PrefixInjector.attach(self.backbone).active(prefix):
            return self.backbone(input_ids=input_ids, **kwargs).last_hidden_state

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        start_positions: torch.Tensor | None = None,
        end_positions: torch.Tensor | None = None,
        prefix_mask: torch.Tensor | None = None,
        pair_input_ids: torch.Tensor | None = None,
        pair_attention_mask: torch.Tensor | None = None,
        pair_token_type_ids: torch.Tensor | None = None,
        **_: object,
    ) -> ModelOutput:
        if self.prompt_config.pair_encoding == "separate":
            if pair_input_ids is None:
                raise DataError(
                    "this model encodes the two texts of a pair separately (pair_encoding 'separate'): "
                    "pass the second text's pair_input_ids and pair_attention_mask (ptuning.data.encode "
                    "with pair_encoding='separate' makes them; ptuning.Predictor answers raw text pairs)"
                )
            # the B pairs as 2B rows through one backbone pass with the same prompt: first texts, then
            # second texts (the head splits them back); prefix_mask is per example, so per row twice
            input_ids, attention_mask, token_type_ids = _stack_pairs(
                (input_ids, attention_mask, token_type_ids),
                (pair_input_ids, pair_attention_mask, pair_token_type_ids),
            )
            if prefix_mask is not None:
                prefix_mask = prefix_mask.repeat(2, 1)  # (B, P) -> (2B, P)
        rows = self.head.flatten  # multiple choice: (batch, choices, length) -> one row per choice
        mask = rows(attention_mask)
        ids = rows(input_ids)
        if prefix_mask is not None and prefix_mask.shape[0] != ids.shape[0]:  # per example -> per row
            prefix_mask = prefix_mask.repeat_interleave(ids.shape[0] // prefix_mask.shape[0], dim=0)
        hidden = self.encode(ids, mask, rows(token_type_ids), prefix_mask)
        return self.head(
            hidden,
            mask,
            labels=labels,
            start_positions=start_positions,
            end_positions=end_positions,
            batch=input_ids.shape[0],
        )


def _stack_pairs(first: tuple, second: tuple) -> tuple:
    """(input_ids, attention_mask, token_type_ids) of B first texts (B, Ta) and of their B second
    texts (B, Tb) -> the same of 2B rows (2B, max(Ta, Tb)), first texts first. The shorter side is
    padded on the right with masked positions (id 0, attention 0): masked keys, ignored by pooling."""
    length = max(t.shape[-1] for t in (first[0], second[0]))
    # padding needs a mask: where none is passed, every given position is real
    first, second = (
        (ids, mask if mask is not None else torch.ones_like(ids), types)
        for ids, mask, types in (first, second)
    )
    out = []
    for a, b in zip(first, second, strict=True):
        if a is None or b is None:
            out.append(None)  # token type ids where the tokenizer gives none
            continue
        a, b = (F.pad(t, (0, length - t.shape[-1])) for t in (a, b))
        out.append(torch.cat([a, b], dim=0))
    return tuple(out)
