"""Options shared by several commands."""

from __future__ import annotations

import argparse

BF16_HELP = (
    "bf16 mixed precision (autocast) on a GPU, or on a CPU with native bf16 (avx512_bf16 / amx_bf16); "
    "--no-bf16: fp32 (default: {default})"
)
DEFAULTS = {
    False: "bf16 where the device has it natively, else fp32",
    True: "fp32, so that answers do not depend on how requests are batched",
}


def add_bf16_argument(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup, *, answers: bool = False
) -> None:
    """`--bf16` / `--no-bf16`; absent: None, the default of `ptuning.core.precision` (`answers`: predict, serve)."""
    help_text = BF16_HELP.format(default=DEFAULTS[answers])
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None, help=help_text)
