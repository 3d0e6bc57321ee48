"""PEFT adapters in and out: `export_peft` writes a checkpoint as a PEFT adapter folder,
`load_peft_adapter` / `import_peft` bring a PEFT prefix-tuning or prompt-tuning adapter in.

The layouts, checked against PEFT 0.21's source (`PeftModel.get_prompt`, `PrefixEncoder`):
  prefix tuning  `prompt_embeddings` (P, L*2*H), viewed as (P, 2L, heads, head_dim): layer i's keys
                 at index 2i, its values at 2i+1, which is ptuning's `PrefixEncoder` table as it is
                 (a folded one: PEFT saves the MLP's output too). PEFT prefixes every layer, so a
                 checkpoint with `--prompt-layers` (some layers only) has no PEFT form.
  prompt tuning  `prompt_embeddings` (P, H), put before the input embeddings: `InputPrompt`.
  heads          PEFT saves the task model's head as a module to save, `base_model.<name>.*`. Where
                 the Hugging Face task model's head is a linear layer on the token states, as ours
                 is, it is ours: token classification (`classifier`, TOKEN_CLS) and extractive QA
                 (`qa_outputs`, QUESTION_ANS). Sequence-level heads are not: BERT's classifier reads
                 the pooler (a trained dense + tanh on [CLS]), RoBERTa's a two-layer head, while ours
                 is one linear layer on mean-pooled (or [CLS]) states. Those tasks are exported as
                 FEATURE_EXTRACTION adapters (the prompt on `AutoModel`, whose last hidden states
                 then equal ours) and the head goes to `ptuning_head.safetensors` beside them.
Every export also writes `ptuning_task.json` (task, prompt config, backbone), which `import_peft`
reads back, so export -> import gives the same checkpoint outputs.

Positions: PEFT, like the reference P-Tuning v2 code, numbers the text's positions from P (the
prefix counts as past tokens); ptuning numbers them from 0. With absolute position embeddings (BERT,
RoBERTa, ELECTRA) PEFT gives ptuning's outputs when called with `position_ids = arange(T) - P`
(PEFT adds P back); an imported PEFT prefix runs with ptuning's numbering. Prompt tuning has no
such difference (the P vectors take positions 0..P-1 in both).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .._version import __version__
from ..checkpoint import CONFIG_NAME, atomic_write_text, save_checkpoint, spec_from_config, validate_config
from ..core.config import PromptConfig
from ..data.inputs import InputFormat
from ..errors import BackboneError, CheckpointError
from ..methods import get_method, method_names
from ..tasks import TaskSpec

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
HEAD_WEIGHTS = "ptuning_head.safetensors"
TASK_FILE = "ptuning_task.json"
PROMPT_KEY = "prompt_embeddings"
# PEFT's adapter type -> the method it is imported as: the first registered method it holds
PEFT_TYPES: dict[str, str] = {}
for _name in method_names():
    if get_method(_name).peft_type is not None:
        PEFT_TYPES.setdefault(get_method(_name).peft_type, _name)

# ptuning task type -> (PEFT task type, the head module's name in the Hugging Face task model)
HEAD_IN_ADAPTER: dict[str, tuple[str, str]] = {
    "token_classification": ("TOKEN_CLS", "classifier"),
    "question_answering": ("QUESTION_ANS", "qa_outputs"),
}
TASK_OF_PEFT = {peft: (task, name) for task, (peft, name) in HEAD_IN_ADAPTER.items()}


@dataclass(frozen=True)
class Export:
    """What `export_peft` wrote."""

    folder: Path
    peft_type: str
    task_type: str  # PEFT's
    head: str  # "adapter" (a module to save in the adapter) or HEAD_WEIGHTS (beside it)
    files: tuple[str, ...]


def _adapter_layout(model) -> tuple[str, torch.Tensor]:
    """PEFT's type and `prompt_embeddings` for the model's prompt (CheckpointError where none fits)."""
    method = model.prompt_config.method
    g = model.geometry
    if get_method(method).peft_type is None:
        raise CheckpointError(
            f"a {method} checkpoint holds the whole backbone, not a prompt: PEFT's prompt adapters "
            "cannot hold it (load the backbone weights with transformers instead)"
        )
    if g.num_heads * g.head_dim != g.hidden_size:
        raise CheckpointError(
            f"PEFT views a prefix as hidden_size / heads values per head; this backbone has "
            f"{g.num_heads} heads of {g.head_dim} for hidden size {g.hidden_size}"
        )
    if model.input_prompt is not None:
        return "PROMPT_TUNING", model.input_prompt.embedding.detach()
    encoder = model.prefix_encoder
    if encoder.layers != list(range(g.num_layers)):
        raise CheckpointError(
            f"PEFT's prefix tuning prompts every layer; this checkpoint prompts layers "
            f"{encoder.layers[0]}-{encoder.layers[-1]} of {g.num_layers} only (--prompt-layers)"
        )
    return "PREFIX_TUNING", encoder.table().detach()


def _backbone_location(name: str) -> str | None:
    """What PEFT records as `base_model_name_or_path`: the folder or hub id the backbone loads from."""
    from ..core.backbones import resolve

    try:
        return resolve(name) if name else None
    except BackboneError:  # a packaged backbone that is not installed here: its name
        return name


def peft_config(model, peft_type: str, task_type: str, modules_to_save: list[str] | None) -> dict[str, Any]:
    """The adapter_config.json of a PEFT adapter holding this model's prompt."""
    g = model.geometry
    config: dict[str, Any] = {
        "peft_type": peft_type,
        "task_type": task_type,
        "base_model_name_or_path": _backbone_location(model.backbone_name),
        "revision": None,
        "inference_mode": True,
        "num_virtual_tokens": model.prompt_config.prefix_len,
        "token_dim": g.hidden_size,
        "num_transformer_submodules": 1,
        "num_attention_heads": g.num_heads,
        "num_layers": g.num_layers,
        "modules_to_save": modules_to_save,
        "auto_mapping": None,
    }
    if peft_type == "PREFIX_TUNING":
        # the table is saved as it is used (a reparameterized prefix folded), as PEFT itself saves it
        config.update(encoder_hidden_size=g.hidden_size, prefix_projection=False, init_weights=None)
    else:
        config.update(
            prompt_tuning_init="RANDOM",
            prompt_tuning_init_text=None,
            tokenizer_name_or_path=None,
            tokenizer_kwargs=None,
        )
    return config


def export_peft(checkpoint, out, *, backbone=None) -> Export:
    """Write the checkpoint at `checkpoint` as a PEFT adapter folder `out` (see the module docstring).

    `backbone`: as for `PromptModel.from_pretrained` (None: the one the checkpoint names)."""
    from ..model import PromptModel

    model = PromptModel.from_pretrained(checkpoint, backbone=backbone)
    saved = validate_config(Path(checkpoint)) if (Path(checkpoint) / CONFIG_NAME).is_file() else {}
    peft_type, table = _adapter_layout(model)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    task_type, head_name = HEAD_IN_ADAPTER.get(model.spec.task_type, ("FEATURE_EXTRACTION", None))
    tensors = {PROMPT_KEY: table.float().cpu().contiguous()}
    head_state = {k: v.detach().float().cpu().contiguous() for k, v in model.head.state_dict().items()}
    files = [ADAPTER_CONFIG, ADAPTER_WEIGHTS, TASK_FILE]
    if head_name is not None:
        # our head's layer has the Hugging Face head's name: its state keys are "<name>.weight" ...
        tensors.update({f"base_model.{k}": v for k, v in head_state.items()})
    else:
        save_file({f"head.{k}": v for k, v in head_state.items()}, out / HEAD_WEIGHTS)
        files.append(HEAD_WEIGHTS)
    save_file(tensors, out / ADAPTER_WEIGHTS, metadata={"format": "pt"})
    config = peft_config(model, peft_type, task_type, [head_name] if head_name else None)
    atomic_write_text(out / ADAPTER_CONFIG, json.dumps(config, indent=2) + "\n")
    task = {
        "ptuning_version": __version__,
        "backbone": model.backbone_name,
        "backbone_fingerprint": model.backbone_fingerprint,
        "prompt_config": model.prompt_config.to_dict(),
        "task": asdict(model.spec),
        "head": "adapter" if head_name else HEAD_WEIGHTS,
        **{key: saved[key] for key in ("inputs", "max_seq_length") if key in saved},
    }
    atomic_write_text(out / TASK_FILE, json.dumps(task, indent=2) + "\n")
    return Export(out, peft_type, task_type, task["head"], tuple(files))


# --- import -----------------------------------------------------------------------------------


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path.parent} is not a PEFT adapter folder ({path.name} missing)") from None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a JSON file ({exc})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return data


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        hint = (
            " (adapter_model.bin: re-save it with safe_serialization)"
            if path.with_suffix(".bin").is_file()
            else ""
        )
        raise CheckpointError(f"{path.parent}: {path.name} missing{hint}")
    try:
        tensors = load_file(path)
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path}: not a safetensors file ({exc})") from None
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{path}: tensor {name} holds NaN or infinity")
    return tensors


def _expect(path: Path, name: str, tensor: torch.Tensor | None, shape: tuple[int, ...]) -> torch.Tensor:
    if tensor is None:
        raise CheckpointError(f"{path}: tensor {name} missing")
    if tuple(tensor.shape) != shape:
        raise CheckpointError(f"{path}: {name} has shape {tuple(tensor.shape)}, expected {shape}")
    return tensor


@dataclass
class _Plan:
    spec: TaskSpec
    prompt: PromptConfig
    backbone: Any
    head: dict[str, torch.Tensor] | None  # our head's state, or None for a fresh head
    extra: dict[str, Any]  # inputs / max_seq_length recorded by an export


def _plan(folder: Path, config: dict, tensors: dict, backbone, labels, prompt_only: bool) -> _Plan:
    weights = folder / ADAPTER_WEIGHTS
    peft_type = config.get("peft_type")
    if peft_type not in PEFT_TYPES:
        raise CheckpointError(
            f"{folder / ADAPTER_CONFIG}: peft_type {peft_type!r} is not a prompt adapter; "
            f"ptuning imports {', '.join(PEFT_TYPES)}"
        )
    if config.get("num_transformer_submodules", 1) != 1:
        raise CheckpointError(
            f"{folder / ADAPTER_CONFIG}: an encoder-decoder adapter; ptuning prompts encoders"
        )
    prefix_len = config.get("num_virtual_tokens")
    if not isinstance(prefix_len, int) or prefix_len < 1:
        raise CheckpointError(f"{folder / ADAPTER_CONFIG}: num_virtual_tokens must be a positive integer")
    sidecar = _read_json(folder / TASK_FILE) if (folder / TASK_FILE).is_file() else None
    backbone = backbone or (sidecar or {}).get("backbone") or config.get("base_model_name_or_path")
    if not backbone:
        raise CheckpointError(
            f"{folder / ADAPTER_CONFIG}: names no base model (base_model_name_or_path); pass the backbone"
        )
    method = PEFT_TYPES[peft_type]
    extra: dict[str, Any] = {}
    if sidecar is not None:  # written by export_peft: the task and head exactly as they were
        try:
            spec = spec_from_config(sidecar)
            prompt = PromptConfig.from_dict(sidecar["prompt_config"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{folder / TASK_FILE}: not a ptuning export ({exc})") from None
        if get_method(prompt.method).peft_type != peft_type:  # e.g. any deep prompt in PREFIX_TUNING
            raise CheckpointError(f"{folder / TASK_FILE}: method {prompt.method} but a {peft_type} adapter")
        extra = {key: sidecar[key] for key in ("inputs", "max_seq_length") if key in sidecar}
        if sidecar.get("head") == HEAD_WEIGHTS:
            part = _read_tensors(folder / HEAD_WEIGHTS)
            head = {k.removeprefix("head."): v for k, v in part.items()}
        else:
            head = _adapter_head(tensors, HEAD_IN_ADAPTER.get(spec.task_type, ("", ""))[1], weights)
        if prompt_only:
            head = None
        return _Plan(spec, prompt, backbone, head, extra)

    task_type = config.get("task_type")
    if task_type in TASK_OF_PEFT and not prompt_only:
        kind, name = TASK_OF_PEFT[task_type]
        head = _adapter_head(tensors, name, weights)
        rows = head[f"{name}.weight"].shape[0]
        if kind == "question_answering":
            spec = TaskSpec("imported", kind, metric="f1")
        else:
            names = tuple(labels) if labels else tuple(f"LABEL_{i}" for i in range(rows))
            if len(names) != rows:
                raise CheckpointError(f"{weights}: the head has {rows} labels, {len(names)} were given")
            spec = TaskSpec("imported", kind, labels=names, metric="f1")
        return _Plan(spec, PromptConfig(method=method, prefix_len=prefix_len), backbone, head, extra)
    if not prompt_only:
        reason = {
            "SEQ_CLS": "its head is the task model's (BERT's reads the pooler), which ptuning's linear head is not",
            None: "it has no head",
        }.get(task_type, f"task type {task_type!r} has no ptuning head")
        raise CheckpointError(
            f"{folder}: the prompt imports, the head does not ({reason}); import the prompt alone "
            "(--prompt-only) with --labels, then train a head on it (ptuning train --init-from)"
        )
    names = tuple(labels) if labels else ()
    if not names:
        classifier = next((v for k, v in tensors.items() if k.endswith("classifier.weight")), None)
        if classifier is None:
            raise CheckpointError(f"{folder}: pass --labels: the adapter says nothing of the task's labels")
        names = tuple(f"LABEL_{i}" for i in range(classifier.shape[0]))
    spec = TaskSpec("imported", "classification", labels=names)
    return _Plan(spec, PromptConfig(method=method, prefix_len=prefix_len), backbone, None, extra)


def _adapter_head(tensors: dict, name: str, weights: Path) -> dict[str, torch.Tensor]:
    head = {
        key.rsplit(".", 1)[1]: value
        for key, value in tensors.items()
        if key in (f"base_model.{name}.weight", f"base_model.{name}.bias")
    }
    if set(head) != {"weight", "bias"}:
        raise CheckpointError(f"{weights}: the head base_model.{name}.weight / .bias is missing")
    return {f"{name}.{k}": v for k, v in head.items()}  # our heads' layers have the same names


def load_peft_adapter(adapter, *, backbone=None, labels=None, prompt_only: bool = False):
    """A `PromptModel` (eval mode) holding a PEFT prefix-tuning or prompt-tuning adapter, and its head
    where ptuning's head can hold it (see the module docstring); `prompt_only` leaves the head fresh.

    `backbone`: a name, a folder or a loaded model (None: the adapter's base_model_name_or_path, or
    the backbone an export names); `labels`: the label names of an adapter from PEFT itself."""
    return _load(adapter, backbone, labels, prompt_only)[0]


def _load(adapter, backbone, labels, prompt_only: bool):
    from ..core.backbones import load_backbone
    from ..model import PromptModel

    folder = Path(adapter)
    config = _read_json(folder / ADAPTER_CONFIG)
    tensors = _read_tensors(folder / ADAPTER_WEIGHTS)
    plan = _plan(folder, config, tensors, backbone, labels, prompt_only)
    tokenizer = None
    if isinstance(plan.backbone, str | Path):
        name = str(plan.backbone)
        encoder, tokenizer = load_backbone(name)
    else:
        encoder, name = plan.backbone, ""
    model = PromptModel(encoder, plan.spec, plan.prompt, backbone_name=name)
    model.tokenizer = tokenizer
    g = model.geometry
    declared = (config.get("num_layers"), config.get("num_attention_heads"), config.get("token_dim"))
    if declared != (g.num_layers, g.num_heads, g.hidden_size):
        raise CheckpointError(
            f"{folder / ADAPTER_CONFIG}: made for {declared[0]} layers, {declared[1]} heads, hidden size "
            f"{declared[2]}; the backbone has {g.num_layers}, {g.num_heads}, {g.hidden_size}"
        )
    if model.prefix_encoder is not None and model.prefix_encoder.projection:
        model.fold_prefix()  # an export of a reparameterized prefix holds the folded table
    target = (
        model.input_prompt.embedding
        if model.input_prompt is not None
        else model.prefix_encoder.embedding.weight
    )
    table = _expect(folder / ADAPTER_WEIGHTS, PROMPT_KEY, tensors.get(PROMPT_KEY), tuple(target.shape))
    with torch.no_grad():
        target.copy_(table.to(target.dtype))
        if plan.head is not None:
            own = model.head.state_dict()
            for key, value in plan.head.items():
                if key not in own:
                    raise CheckpointError(
                        f"{folder}: head tensor {key} does not fit a {plan.spec.task_type} head"
                    )
                _expect(folder, key, value, tuple(own[key].shape))
            model.head.load_state_dict(plan.head)
    return model.eval(), plan.extra


def import_peft(adapter, out, *, backbone=None, labels=None, prompt_only: bool = False):
    """`load_peft_adapter`, saved as a ptuning checkpoint folder `out`; returns the model."""
    model, extra = _load(adapter, backbone, labels, prompt_only)
    inputs = InputFormat.from_dict(extra["inputs"]) if "inputs" in extra else None
    save_checkpoint(model, out, fold=True, inputs=inputs, max_seq_length=extra.get("max_seq_length"))
    return model
