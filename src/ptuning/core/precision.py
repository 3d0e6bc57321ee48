"""bf16 mixed precision on the GPU and on CPUs that compute in bf16 natively.

On the CPU, `torch.autocast("cpu", dtype=torch.bfloat16)` runs the matrix products in bf16
(oneDNN), which is about twice as fast as fp32 where the processor has bf16 instructions
(AVX512-BF16 or AMX) and slower than fp32 where it has none (emulated). So bf16 is used on the CPU
only where the processor supports it; asked for elsewhere, the run says so and stays in fp32.

`--bf16` / `--no-bf16` on the CLI map to ``requested=True`` / ``False``; no flag (``None``) means
the default. For training, evaluation and bench that is bf16 on a GPU that supports it, and on a
CPU where `CPU_BF16_DEFAULT` is on and the processor supports it. Predictions (`ptuning predict`,
`ptuning serve`: ``answers=True``) default to fp32, so that an answer does not depend on the batch
it was computed in beyond float32 rounding (in bf16 it moves by ~1e-5); `--bf16` opts in.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch

# bf16 on a supporting CPU by default: as accurate as fp32 and faster (docs/results/speed-memory.md).
CPU_BF16_DEFAULT = True

_CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def _cpuinfo(*keys: str) -> str | None:
    """The value of /proc/cpuinfo's first line that starts with one of `keys`; None where there is
    no such line (or no /proc/cpuinfo)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(keys):
            return line.split(":", 1)[1].strip()
    return None


@cache
def processor_name() -> str:
    """The CPU's model name ("Intel(R) Xeon(R) Processor"), else the platform's machine type: the
    speed, and with bf16 the precision, of a recorded run depend on it."""
    import platform

    return _cpuinfo("model name") or platform.processor() or platform.machine()


def _cpuinfo_flags() -> set[str]:
    return set((_cpuinfo("flags", "Features") or "").split())


@cache
def cpu_supports_bf16() -> bool:
    """True when this CPU has native bf16 arithmetic (AVX512-BF16 or AMX-BF16)."""
    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    if probe is not None and probe():
        return True
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    if amx is not None and amx():
        return True
    return bool(_cpuinfo_flags() & set(_CPU_BF16_FLAGS))


def cuda_supports_bf16() -> bool:
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


@dataclass(frozen=True)
class Precision:
    """The resolved choice for one device: whether bf16 autocast runs, and why (for the log)."""

    device: str  # "cpu" or "cuda"
    bf16: bool
    reason: str

    @property
    def name(self) -> str:
        return "bf16 autocast" if self.bf16 else "fp32"

    def autocast(self) -> contextlib.AbstractContextManager:
        """A bf16 autocast context on this device, or a null context in fp32."""
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device, dtype=torch.bfloat16)

    def describe(self) -> str:
        return f"precision: {self.name} on the {self.device.upper()} ({self.reason})"


def resolve_precision(
    requested: bool | None, device: str | None = None, *, answers: bool = False
) -> Precision:
    """Decide bf16 for `device` ("cpu", "cuda"; None: cuda when available).

    `requested` True forces the attempt (refused with a reason where unsupported), False forces
    fp32, None takes the default (fp32 where `answers`: predict and serve).
    """
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device).type
    if requested is False:
        return Precision(device, False, "--no-bf16")
    if requested is None and answers:
        return Precision(
            device, False, "default for predictions, which then do not depend on batching; --bf16"
        )
    if device == "cuda":
        if cuda_supports_bf16():
            return Precision(device, True, "--bf16" if requested else "default on a GPU with bf16")
        return Precision(device, False, "this GPU does not support bf16")
    if device != "cpu":
        return Precision(device, False, f"bf16 is not wired for device {device!r}")
    if not cpu_supports_bf16():
        reason = "this CPU has no native bf16 (avx512_bf16 or amx_bf16), where bf16 would be slower"
        return Precision(device, False, reason)
    if requested:
        return Precision(device, True, "--bf16; this CPU has native bf16")
    if CPU_BF16_DEFAULT:
        return Precision(device, True, "default on a CPU with native bf16; --no-bf16 for fp32")
    return Precision(device, False, "default; --bf16 to use this CPU's native bf16")


def _word_tables(model: torch.nn.Module) -> set[int]:
    from transformers import PreTrainedModel

    return {
        id(sub.get_input_embeddings())
        for sub in model.modules()
        if isinstance(sub, PreTrainedModel) and sub.get_input_embeddings() is not None
    }


def hold_frozen_in_bf16(model: torch.nn.Module) -> int:
    """Cast the frozen matrix weights of `model` (linear layers, the word embedding table) to bf16
    once; returns the bytes freed.

    Under bf16 autocast a frozen fp32 weight is cast to bf16 again at every forward (autocast caches
    casts only of weights that require a gradient), and that copy is also what backward reads: holding
    the weight in bf16 removes the cast and halves its bytes, while autocast still runs the products in
    bf16 and its fp32 ops (LayerNorm, softmax, the loss) in fp32. The position and token-type tables
    and LayerNorm stay fp32, so the embedding sum before the first LayerNorm is promoted back to fp32.
    What trains (the prompt and the head; everything under fine-tuning) stays fp32: master weights,
    fp32 optimizer state.

    A backbone's fingerprint is taken first and kept (`backbones.fingerprint` answers it from then
    on): rounding changes the sampled weight values, not which backbone it is.
    """
    from transformers import PreTrainedModel

    from .backbones import fingerprint

    for sub in model.modules():
        if isinstance(sub, PreTrainedModel) and getattr(sub, "_ptuning_fingerprint", None) is None:
            object.__setattr__(sub, "_ptuning_fingerprint", fingerprint(sub))  # not state, not a submodule
    tables = _word_tables(model)
    freed = 0
    for module in model.modules():
        if not (isinstance(module, torch.nn.Linear) or id(module) in tables):
            continue
        for param in module.parameters(recurse=False):
            if not param.requires_grad and param.dtype == torch.float32:
                param.data = param.data.to(torch.bfloat16)
                freed += param.numel() * 2
    return freed
