"""Options shared by several commands."""

from __future__ import annotations

import argparse

BF16_HELP = (
    "bf16 mixed precision (autocast) on a GPU, or on a CPU with native bf16 (avx512_bf16 / amx_bf16); "
    "--no-bf16: fp32 (default: bf16 where the device has it natively)"
)


def add_bf16_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """`--bf16` / `--no-bf16`; absent: None, the default of `ptuning.precision`."""
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None, help=BF16_HELP)
