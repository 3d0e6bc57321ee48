"""Checkpoints on the Hugging Face hub: `push_to_hub` uploads one, `resolve_checkpoint` fetches one.

A repo holds exactly what `PromptModel.save_pretrained` writes (ptuning_config.json,
prompt.safetensors, the tokenizer files) plus a short model card (README.md). Fetching goes
through huggingface_hub's cache, so with HF_HUB_OFFLINE=1 a repo already in the cache
(models--user--name/snapshots/<revision>/..., refs/main) loads without a network.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from ..errors import CheckpointError

# "owner/name", as the hub spells repo ids (a bare "name" would shadow local folder names)
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]*[A-Za-z0-9_]$")

CARD = """---
library_name: ptuning
tags:
- ptuning
- prompt-tuning
- {method}
---
# {repo_id}

A prompt-only checkpoint of [ptuning](https://pypi.org/project/ptuning/): a {method} prompt
(P={prefix_len}) and a {task_type} head for the task `{task}`, trained on the frozen backbone
`{backbone}`. It holds the prompt and the head only ({checkpoint_bytes:,} bytes); the backbone is
loaded by name.

```python
from ptuning import PromptModel, Predictor

model = PromptModel.from_pretrained("{repo_id}")
print(Predictor(model, model.tokenizer).predict([...]))
```
"""


def looks_like_repo_id(name) -> bool:
    """True for an "owner/name" string that is not a path here (no such file or folder)."""
    if not isinstance(name, str) or name.startswith((".", "/", "~")) or os.path.exists(name):
        return False
    return bool(_REPO_ID.match(name))


def resolve_checkpoint(name, *, revision: str | None = None, cache_dir=None) -> Path | str:
    """A checkpoint folder as given, or a hub repo id -> its snapshot folder in the hub cache
    (downloaded where a network exists; read from the cache alone with HF_HUB_OFFLINE=1)."""
    if not looks_like_repo_id(name):
        return name
    from huggingface_hub import snapshot_download  # a dependency of transformers

    try:
        return Path(snapshot_download(name, revision=revision, cache_dir=cache_dir, library_name="ptuning"))
    except (OSError, ValueError) as exc:  # not in the cache offline, no such repo, no network
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(
            f"{name} is not a checkpoint folder here, nor a hub repo that can be fetched "
            f"({type(exc).__name__}: {reason})"
        ) from None


def model_card(model, repo_id: str, checkpoint_bytes: int) -> str:
    config = model.prompt_config
    return CARD.format(
        repo_id=repo_id,
        method=config.method,
        prefix_len=config.prefix_len,
        task_type=model.spec.task_type,
        task=model.spec.name,
        backbone=model.backbone_name or model.backbone.config.model_type,
        checkpoint_bytes=checkpoint_bytes,
    )


def push_to_hub(
    model,
    repo_id: str,
    *,
    private: bool | None = None,
    token: str | None = None,
    revision: str | None = None,
    commit_message: str = "Upload ptuning prompt checkpoint",
    create_pr: bool = False,
) -> str:
    """Write the checkpoint (folded, with the tokenizer) and a model card to a temporary folder
    and upload it as one commit to `repo_id` (created if missing); returns the commit's URL."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    with tempfile.TemporaryDirectory(prefix="ptuning-push-") as tmp:
        sizes = model.save_pretrained(tmp)
        (Path(tmp) / "README.md").write_text(model_card(model, repo_id, sizes["checkpoint_bytes"]))
        api.create_repo(repo_id, private=private, exist_ok=True)
        commit = api.upload_folder(
            repo_id=repo_id,
            folder_path=tmp,
            commit_message=commit_message,
            revision=revision,
            create_pr=create_pr,
        )
    return str(getattr(commit, "commit_url", commit))
