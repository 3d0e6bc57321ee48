"""Scoring a handcrafted prompt: the label words' fit at the mask slot of the filled template.

Two scorers, chosen by what the backbone has:

* ``mlm``: the backbone's masked-language-model head (BERT, RoBERTa, ELECTRA generator, DeBERTa,
  DistilBERT, MPNet checkpoints that ship one). A label's score is the log of the probability the
  head gives its words at the mask: ``logsumexp`` over the label's words of the log-softmax over the
  vocabulary; a word that the tokenizer splits is scored by its first sub-token.
* ``similarity``: backbones without an MLM head, such as the built-in sentence encoders MiniLM and
  MPNet. The filled template (mask token in the mask slot) is embedded by mean pooling, and each
  label word by the same template with the text slots empty and the word in the mask slot
  ("It was great."). A label's score is ``scale`` times the mean cosine similarity to its words'
  embeddings (``scale`` 20, sentence-transformers' usual temperature of 0.05).

Logits are the scores plus a per-label ``bias`` (zero in zero-shot; fitted on a handful of labelled
examples in few-shot, `fit_label_bias`). Text slots longer than `max_length` are cut, longest first,
so the mask slot always survives truncation.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM, PreTrainedModel
from transformers.utils import logging as hf_logging

from ..core.backbones import _quiet_loading, fingerprint, resolve
from ..errors import BackboneError
from ..tasks import TaskSpec
from .templates import Template, Verbalizer

SIMILARITY_SCALE = 20.0
TEXT_SLOTS = ("text", "text_pair")


def load_scoring_backbone(name: str) -> tuple[PreTrainedModel, object, str]:
    """(model, tokenizer, scoring): the masked-LM model where the checkpoint has its head, else the encoder."""
    from transformers import AutoTokenizer

    location = resolve(name)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # no loading report for the head a sentence encoder lacks: we check it
    try:
        with _quiet_loading():
            config = AutoConfig.from_pretrained(location)
            tokenizer = AutoTokenizer.from_pretrained(location)
            try:
                model, info = AutoModelForMaskedLM.from_pretrained(
                    location, config=config, output_loading_info=True
                )
            except ValueError:  # no masked-LM class for this architecture
                model, info = None, None
            if model is not None:
                prefix = model.base_model_prefix + "."
                head_missing = [k for k in info["missing_keys"] if not k.startswith(prefix)]
                if not head_missing and tokenizer.mask_token is not None:
                    return model.eval(), tokenizer, "mlm"
            return AutoModel.from_pretrained(location, config=config).eval(), tokenizer, "similarity"
    except OSError as exc:
        raise BackboneError(f"cannot load backbone {name!r} ({exc.__class__.__name__})") from None
    finally:
        hf_logging.set_verbosity(verbosity)


@dataclass
class Encoded:
    """Filled, tokenized inputs of a batch and whether a text slot had to be cut."""

    features: list[dict[str, list[int]]]
    truncated: list[bool] = field(default_factory=list)


class HandcraftedScorer:
    """A frozen backbone scoring a template's label words. No trainable weights but `bias`."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer,
        spec: TaskSpec,
        template: Template,
        verbalizer: Verbalizer,
        *,
        scoring: str,
        bias: Sequence[float] | None = None,
        calibration: str = "none",
        scale: float = SIMILARITY_SCALE,
        max_length: int = 128,
        backbone_name: str = "",
        backbone_fingerprint: str | None = None,
    ) -> None:
        if scoring not in ("mlm", "similarity"):
            raise ValueError(f"scoring must be 'mlm' or 'similarity', got {scoring!r}")
        self.model = model.eval()
        self.model.requires_grad_(False)
        self.tokenizer = tokenizer
        self.spec = spec
        self.template = template
        self.verbalizer = verbalizer.for_task(spec)
        self.scoring = scoring
        self.scale = float(scale)
        self.bias = np.zeros(len(spec.labels)) if bias is None else np.asarray(bias, dtype=np.float64)
        self.calibration = calibration
        if self.bias.shape != (len(spec.labels),):
            raise ValueError(f"bias must have {len(spec.labels)} values, got {self.bias.shape}")
        self.max_length = max_length
        self.backbone_name = backbone_name
        self.backbone_fingerprint = backbone_fingerprint or fingerprint(model)
        self._accepts_token_type_ids = "token_type_ids" in inspect.signature(model.forward).parameters
        self._anchors: torch.Tensor | None = None
        self.notes: list[str] = []
        if scoring == "mlm":
            self.word_ids = [[self._word_id(word) for word in words] for _, words in self.verbalizer.words]

    @classmethod
    def from_backbone(cls, name: str, spec: TaskSpec, template: Template, verbalizer: Verbalizer, **kwargs):
        model, tokenizer, scoring = load_scoring_backbone(name)
        return cls(
            model, tokenizer, spec, template, verbalizer, scoring=scoring, backbone_name=name, **kwargs
        )

    # --- inputs -----------------------------------------------------------------------------

    @property
    def mask_token(self) -> str:
        return self.tokenizer.mask_token or "_"

    def _word_id(self, word: str) -> int:
        # a leading space: byte-level BPE (RoBERTa) has a distinct token for a word after a space
        ids = self.tokenizer(" " + word, add_special_tokens=False)["input_ids"]
        if not ids:
            raise ValueError(f"label word {word!r} tokenizes to nothing")
        if len(ids) > 1:
            self.notes.append(f"label word {word!r} is {len(ids)} sub-tokens; it is scored by its first")
        return ids[0]

    def _length(self, text: str) -> int:
        return len(self.tokenizer(text)["input_ids"])

    def fill(self, example: dict) -> tuple[str, bool]:
        """The template filled with the example (mask token in the mask slot), cut to `max_length`."""
        values = {
            "text": example["text"],
            "text_pair": example.get("text_pair") or "",
            "mask": self.mask_token,
        }
        filled = self.template.fill(values)
        excess = self._length(filled) - self.max_length
        if excess <= 0:
            return filled, False
        slots = [s for s in TEXT_SLOTS if s in self.template.slots]
        ids = {s: self.tokenizer(values[s], add_special_tokens=False)["input_ids"] for s in slots}
        for _ in range(8):  # decoding and re-encoding may shift a token or two: cut again if needed
            for _ in range(excess):
                longest = max(slots, key=lambda s: len(ids[s]))
                if len(ids[longest]) <= 1:
                    break
                ids[longest] = ids[longest][:-1]
            for s in slots:
                values[s] = self.tokenizer.decode(ids[s], skip_special_tokens=True)
            filled = self.template.fill(values)
            excess = self._length(filled) - self.max_length
            if excess <= 0:
                break
        return filled, True

    def encode(self, examples: Sequence[dict]) -> Encoded:
        encoded = Encoded([])
        for example in examples:
            text, cut = self.fill(example)
            feature = self.tokenizer(text, truncation=True, max_length=self.max_length)
            encoded.features.append(dict(feature))
            encoded.truncated.append(cut)
        return encoded

    def _batch(self, features: list[dict]) -> dict[str, torch.Tensor]:
        batch = self.tokenizer.pad(features, return_tensors="pt")
        keys = ["input_ids", "attention_mask"] + (["token_type_ids"] if self._accepts_token_type_ids else [])
        device = next(self.model.parameters()).device
        return {k: batch[k].to(device) for k in keys if k in batch}

    # --- scores -----------------------------------------------------------------------------

    @torch.inference_mode()
    def _embed(self, features: list[dict]) -> torch.Tensor:
        batch = self._batch(features)
        hidden = self.model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        return torch.nn.functional.normalize(pooled.float(), dim=-1)

    def anchors(self) -> list[torch.Tensor]:
        """Similarity scoring: per label, the embeddings (words, hidden) of its words in the empty template."""
        if self._anchors is None:
            blank = {"text": "", "text_pair": ""}
            texts = [
                self.template.fill({**blank, "mask": w}) for _, words in self.verbalizer.words for w in words
            ]
            features = [dict(self.tokenizer(t, truncation=True, max_length=self.max_length)) for t in texts]
            self._anchors = self._embed(features)
        sizes = [len(words) for _, words in self.verbalizer.words]
        return list(torch.split(self._anchors, sizes))

    @torch.inference_mode()
    def _score_batch(self, features: list[dict]) -> np.ndarray:
        if self.scoring == "similarity":
            embedded = self._embed(features)
            columns = [(embedded @ anchor.T).mean(dim=1) for anchor in self.anchors()]
            return (self.scale * torch.stack(columns, dim=1)).double().cpu().numpy()
        batch = self._batch(features)
        logits = self.model(**batch).logits  # (batch, length, vocab)
        where = batch["input_ids"] == self.tokenizer.mask_token_id
        if not bool((where.sum(dim=1) == 1).all()):
            raise ValueError("every filled template must hold exactly one mask token")
        log_probs = torch.log_softmax(logits[where].float(), dim=-1)  # (batch, vocab)
        columns = [torch.logsumexp(log_probs[:, ids], dim=-1) for ids in self.word_ids]
        return torch.stack(columns, dim=1).double().cpu().numpy()

    def scores(self, examples: Sequence[dict], batch_size: int = 64) -> tuple[np.ndarray, list[bool]]:
        """Raw label scores (examples, labels), without the bias, and the truncation flags."""
        encoded = self.encode(examples)
        order = sorted(range(len(examples)), key=lambda i: len(encoded.features[i]["input_ids"]))
        out = np.zeros((len(examples), len(self.spec.labels)))
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            out[chunk] = self._score_batch([encoded.features[i] for i in chunk])
        return out, encoded.truncated

    def logits(self, examples: Sequence[dict], batch_size: int = 64) -> tuple[np.ndarray, list[bool]]:
        scores, truncated = self.scores(examples, batch_size)
        return scores + self.bias, truncated

    def calibrate(self, examples: Sequence[dict], batch_size: int = 64) -> None:
        """Few-shot: fit the per-label bias on labelled examples (`fit_label_bias`)."""
        scores, _ = self.scores(examples, batch_size)
        self.bias = fit_label_bias(scores, [self.spec.labels.index(ex["label"]) for ex in examples])
        self.calibration = "label-bias"

    @property
    def trainable_params(self) -> int:
        """The bias once fitted; zero-shot: nothing trains."""
        return len(self.bias) if self.calibration != "none" else 0


def fit_label_bias(scores: np.ndarray, labels: Sequence[int], *, l2: float = 1e-2) -> np.ndarray:
    """The per-label bias b minimising the class-balanced mean cross-entropy of softmax(scores + b)
    on labelled examples, plus `l2` * |b|^2 (which also pins b's free constant). Deterministic (L-BFGS).

    Balanced: each label present weighs the same whatever its count, so the bias corrects the
    scorer's preference for a label word and does not learn the handful's own label mix as a prior."""
    s = torch.as_tensor(np.asarray(scores), dtype=torch.float64)
    y = torch.as_tensor(list(labels), dtype=torch.long)
    if s.ndim != 2 or len(y) != s.shape[0] or len(y) == 0:
        raise ValueError("fit_label_bias needs scores (examples, labels) and one label per example")
    counts = torch.bincount(y, minlength=s.shape[1]).to(torch.float64)
    weight = torch.where(counts > 0, 1.0 / counts.clamp(min=1), torch.zeros_like(counts))
    bias = torch.zeros(s.shape[1], dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [bias], lr=1.0, max_iter=200, tolerance_grad=1e-10, line_search_fn="strong_wolfe"
    )

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(s + bias, y, weight=weight) + l2 * bias.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return bias.detach().numpy()
