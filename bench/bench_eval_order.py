"""Evaluation time with length-sorted batches (PromptTrainer's order) against dataset order.

Both passes score the same model on the same examples, alternating, in one process; prints each
pass's median seconds (of `predict`, its metrics included), the ratio, and whether the predictions agree (they must: the sorted pass
hands them back in dataset order):

  python bench/bench_eval_order.py --task rte --split validation --repeats 3
  python bench/bench_eval_order.py --task sst2 --max-examples 872 --output /tmp/eval-order.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import numpy as np
import torch

from ptuning.core.backbones import load_backbone
from ptuning.core.config import PromptConfig
from ptuning.data import load_task
from ptuning.model import PromptModel
from ptuning.training.evaluation import EvalSet, evaluation_trainer
from ptuning.training.trainer import PromptTrainer


class DatasetOrder(PromptTrainer):
    def _get_eval_sampler(self, eval_dataset):
        return torch.utils.data.SequentialSampler(eval_dataset)


def _pass(trainer_class, model, eval_set, batch_size: int) -> tuple[float, np.ndarray]:
    with tempfile.TemporaryDirectory() as scratch:
        trainer = evaluation_trainer(
            model, eval_set, scratch, batch_size=batch_size, trainer_class=trainer_class
        )
        start = time.perf_counter()
        output = trainer.predict(eval_set.features)
        return time.perf_counter() - start, np.asarray(output.predictions)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--task", default="rte")
    parser.add_argument("--split", default="validation", choices=("train", "validation"))
    parser.add_argument("--backbone", default="minilm")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--max-examples", type=int, default=None)
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--prefix-len", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", default=None)
    args = parser.parse_args()

    data = load_task(args.task, args.data_dir)
    examples = list(getattr(data, args.split))[: args.max_examples]
    backbone, tokenizer = load_backbone(args.backbone)
    torch.manual_seed(0)
    model = PromptModel(backbone, data.spec, PromptConfig(prefix_len=args.prefix_len)).eval()
    model.tokenizer = tokenizer
    eval_set = EvalSet(data.spec, examples, tokenizer, args.max_seq_length)
    times: dict[str, list[float]] = {"length-sorted": [], "dataset order": []}
    predictions = {}
    for _ in range(args.repeats):
        for name, trainer_class in (("length-sorted", PromptTrainer), ("dataset order", DatasetOrder)):
            seconds, predictions[name] = _pass(trainer_class, model, eval_set, args.batch_size)
            times[name].append(seconds)
    same = bool(np.allclose(predictions["length-sorted"], predictions["dataset order"], atol=1e-5))
    medians = {name: statistics.median(values) for name, values in times.items()}
    ratio = medians["length-sorted"] / medians["dataset order"]
    result = {
        "task": args.task,
        "split": args.split,
        "examples": len(examples),
        "backbone": args.backbone,
        "batch_size": args.batch_size,
        "threads": torch.get_num_threads(),
        "seconds": times,
        "median_seconds": medians,
        "ratio_sorted_to_dataset_order": ratio,
        "same_predictions": same,
    }
    for name, value in medians.items():
        print(f"{name:14s} median {value:7.2f} s  {[round(t, 2) for t in times[name]]}")
    print(f"ratio (sorted / dataset order): {ratio:.2f}; same predictions: {same}")
    if args.output:
        with open(args.output, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
