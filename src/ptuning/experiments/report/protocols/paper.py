"""The paper's own figures, transcribed for context beside ours."""

from __future__ import annotations

# P-Tuning v2 (Liu et al., ACL 2022), dev-set figures on BERT-large / RoBERTa-large, for context only:
# a different (335M, MLM-pretrained) backbone and the full training sets. FT: fine-tuning; PT: prompt
# tuning (Lester et al.); PT-2: P-Tuning v2. SST-2 and prefix-tuning are not in those tables.
PAPER_FIGURES: dict[str, dict[str, dict[str, float | None]]] = {
    "BERT-large": {
        "rte": {"fine-tune": 70.4, "prompt-tuning": 53.5, "p-tuning-v2": 78.3},
        "conll03": {"fine-tune": 92.8, "prompt-tuning": 81.9, "p-tuning-v2": 90.2},
        "squad": {"fine-tune": 91.1, "prompt-tuning": 8.5, "p-tuning-v2": 86.0},
    },
    "RoBERTa-large": {
        "rte": {"fine-tune": 86.6, "prompt-tuning": 58.8, "p-tuning-v2": 89.5},
        "conll03": {"fine-tune": 92.6, "prompt-tuning": 86.1, "p-tuning-v2": 92.8},
        "squad": {"fine-tune": 94.6, "prompt-tuning": 12.0, "p-tuning-v2": 94.4},
    },
}
PAPER_NOTE = (
    "Paper figures: P-Tuning v2 (Liu et al., ACL 2022), Tables 1-3, dev sets, RTE accuracy (SuperGLUE "
    "RTE), CoNLL-03 micro-F1, SQuAD 1.1 F1 - paper, different backbone (BERT-large / RoBERTa-large, "
    "335M parameters, MLM-pretrained, full training sets). They are transcribed for context, not "
    "comparable number for number."
)
