"""Task data: file readers (`readers`), built-in tasks (`registry`, `converters`), users' files
(`user_files`), subsampling (`subsample`), tokenizer features and batching (`features`), model
outputs -> answers, words and entities (`postprocess`)."""

from ptuning.data import squad2, srl, wic
from ptuning.data.features import MODEL_INPUT_KEYS, encode, make_collator
from ptuning.data.postprocess import postprocess_qa, spans_from_tags, word_predictions
from ptuning.data.registry import KNOWN_TASKS, TaskData, get_task_spec, load_task, register_task
from ptuning.data.subsample import subsample
from ptuning.data.user_files import load_user_task

# the newer built-in tasks, each in its own module built on `readers` and `converters`, listed after the others
for _module in (wic, squad2, srl):
    register_task(_module.TASK)

__all__ = [
    "KNOWN_TASKS",
    "MODEL_INPUT_KEYS",
    "TaskData",
    "encode",
    "get_task_spec",
    "load_task",
    "load_user_task",
    "make_collator",
    "postprocess_qa",
    "spans_from_tags",
    "subsample",
    "word_predictions",
]
