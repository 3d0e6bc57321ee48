"""The training methods, each registered once: what it is, its defaults, and the hooks that differ.

Every layer asks the registry (`get_method(name)`) what a method does instead of testing its name:
whether it freezes the backbone, puts a prefix in every layer or P vectors at the input, trains by
gradient, what `ptuning tune` searches, whether `ptuning serve` can share its backbone, and how a
run trains and a checkpoint of it is loaded for prediction and evaluation. A new method is one
`register_method(Method(...))` (as PEFT's `register_peft_method`) plus the code its hooks name.

The hooks live in higher layers (training, inference, the method's own package), so they are
"module:attribute" strings imported when first called: this module imports nothing of ptuning and
every module may import it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# the hooks of a method trained as a `PromptModel` (the prompt-weights checkpoint)
PROMPT_MODEL_TRAIN = "ptuning.training.multitask:train_prompt_model"
PROMPT_MODEL_PREDICTOR = "ptuning.inference:Predictor.from_prompt_checkpoint"
PROMPT_MODEL_EVALUATOR = "ptuning.training.evaluation:PromptModelEvaluator.from_checkpoint"
PROMPT_MODEL_LOADER = "ptuning.model.PromptModel.from_pretrained"


@dataclass(frozen=True)
class Method:
    """One training method. The hooks are "module:attribute" (attribute may be dotted: a classmethod):

    - `train(cfg, callbacks) -> metrics`: the whole run of `ptuning.training.train` after the
      output folder is claimed;
    - `predictor(checkpoint, *, max_length=None, **kwargs)`: the object with `predict(inputs)` that
      `ptuning.inference.Predictor.from_checkpoint` returns for a checkpoint of this method;
    - `evaluator(checkpoint, max_seq_length)`: an object with `spec` and `score(examples,
      batch_size, bf16) -> metrics`, for `ptuning.training.evaluation.evaluate_checkpoint`;
    - `check_options(args)`: checks of its own options before any data or model loads (or None).
    """

    name: str
    help: str  # one phrase for the --method help
    learning_rate: float  # the default, in the ranges the papers used
    # a `PromptModel` whose `PromptConfig.method` is this one, saved as prompt weights
    prompt_model: bool = True
    freezes_backbone: bool = True
    deep: bool = False  # prefix keys/values in the attention of every prompted layer
    input_prompt: bool = False  # P vectors before the input embeddings
    always_projection: bool = False  # the prefix is always reparameterized by the MLP
    projection_searchable: bool = False  # `ptuning tune` may search --prefix-projection on or off
    gradient: bool = True  # trains by gradient (an optimizer, epochs, early stopping)
    zero_shot: bool = False  # trains on no example unless --max-train-samples gives some
    options: tuple[str, ...] = ()  # TrainConfig fields that only this method reads
    # `ptuning tune`'s default space in --space syntax (`ptuning.tuning.space.parse_space`); None:
    # nothing to search
    search_space: str | None = None
    peft_type: str | None = None  # the PEFT adapter type that holds its prompt (None: none does)
    # why `ptuning serve` cannot share one frozen backbone with it (None: it can)
    serve_refusal: str | None = None
    train: str = PROMPT_MODEL_TRAIN
    predictor: str = PROMPT_MODEL_PREDICTOR
    evaluator: str = PROMPT_MODEL_EVALUATOR
    check_options: str | None = None
    loader: str = PROMPT_MODEL_LOADER  # what loads its checkpoint, named in errors

    @property
    def has_prompt(self) -> bool:
        """True when it trains a prompt (prefix_len, prompt dropout, --init-from mean something)."""
        return self.deep or self.input_prompt

    @property
    def servable(self) -> bool:
        return self.serve_refusal is None

    def hook(self, which: str) -> Callable[..., Any]:
        """The callable a hook field names (`which`: "train", "predictor", ...), imported now."""
        ref = getattr(self, which)
        if not ref:
            raise LookupError(f"method {self.name!r} has no {which} hook")
        module, _, attribute = ref.partition(":")
        target: Any = importlib.import_module(module)
        for part in attribute.split("."):
            target = getattr(target, part)
        return target


_METHODS: dict[str, Method] = {}


def register_method(method: Method) -> Method:
    """Add `method` to the registry (a name registered twice is a programming error)."""
    if method.name in _METHODS:
        raise ValueError(f"method {method.name!r} is already registered")
    _METHODS[method.name] = method
    return method


def get_method(name: str) -> Method:
    """The registered method called `name` (ValueError naming the known ones otherwise)."""
    method = _METHODS.get(name) if isinstance(name, str) else None
    if method is None:
        raise ValueError(f"unknown method {name!r}; known: {', '.join(_METHODS)}")
    return method


def find_method(name: Any) -> Method | None:
    """The registered method called `name`, or None (for values read from files)."""
    return _METHODS.get(name) if isinstance(name, str) else None


def method_names(*, prompt_model: bool | None = None) -> tuple[str, ...]:
    """Registered names in registration order; `prompt_model` True / False: only those that are
    (or are not) `PromptModel` methods."""
    return tuple(
        name for name, m in _METHODS.items() if prompt_model is None or m.prompt_model == prompt_model
    )


_EPOCHS = "epochs=1.0,2.0,3.0,5.0"
_PROMPT = "prefix_len=4,8,16,32,64," + _EPOCHS + ",prompt_dropout=0.0:0.3"

# Learning-rate ranges of the search spaces: about 10x either side of the default; p-tuning-v2's
# reparameterized variant (prefix_projection) trains best near 1e-3, so it gets a range of its own
# (mlp_lr, `ptuning.tuning.space.CONDITIONS`): with one shared range no study trial of the MLP
# above 3e-3 learnt RTE or MRPC (reports/study-minilm).
register_method(
    Method(
        "p-tuning-v2",
        "deep prefix keys/values in every layer",
        learning_rate=1e-2,  # P-Tuning v2: 5e-3..1e-2
        deep=True,
        projection_searchable=True,
        search_space="lr=1e-3:1e-1," + _PROMPT + ",prefix_projection=false,true,mlp_lr=1e-4:1e-2",
        peft_type="PREFIX_TUNING",
    )
)
register_method(
    Method(
        "prefix-tuning",
        "the same, always reparameterized by an MLP (Li & Liang 2021)",
        # a prefix made by the MLP moves far more per step than a plain table (each output mixes
        # 512 hidden units): at 5e-3 prefix tuning did not learn a toy task, at 1e-3 it did
        learning_rate=1e-3,
        deep=True,
        always_projection=True,
        search_space="lr=1e-4:1e-2," + _PROMPT,
        peft_type="PREFIX_TUNING",
    )
)
register_method(
    Method(
        "prompt-tuning",
        "P vectors at the input only (Lester et al. 2021, P-tuning v1)",
        learning_rate=3e-2,
        input_prompt=True,
        search_space="lr=3e-3:3e-1," + _PROMPT,
        peft_type="PROMPT_TUNING",
    )
)
register_method(
    Method(
        "fine-tune",
        "every weight trains",
        learning_rate=3e-5,  # fine-tuning: 1e-5..5e-5
        freezes_backbone=False,
        search_space="lr=1e-5:1e-4," + _EPOCHS,
        serve_refusal="it carries its own backbone weights, so it cannot share the frozen backbone",
    )
)
register_method(
    Method(
        "handcrafted",
        "a template + verbalizer, zero-shot unless --max-train-samples N > 0 fits a per-label bias",
        learning_rate=0.0,  # nothing trains by gradient (the few-shot label bias is fitted by L-BFGS)
        prompt_model=False,
        gradient=False,
        zero_shot=True,
        options=("template", "verbalizer"),
        serve_refusal="a handcrafted prompt (a template scored through the backbone's MLM head or by "
        "similarity, not a prefix)",
        train="ptuning.handcrafted.run:train_handcrafted",
        predictor="ptuning.handcrafted.run:HandcraftedPredictor.from_checkpoint",
        evaluator="ptuning.handcrafted.run:HandcraftedEvaluator.from_checkpoint",
        check_options="ptuning.handcrafted.templates:check_options",
        loader="ptuning.handcrafted.load_handcrafted",
    )
)
