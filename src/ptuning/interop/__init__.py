"""Working with the Hugging Face ecosystem: PEFT adapters (`peft`) and the hub (`hub`).

`transformers.pipeline` needs nothing from here: a `PromptModel` carries what a pipeline reads
(`config` with the task's labels, `device`, `dtype`, `can_generate`, outputs with `.logits`).
The modules import huggingface_hub / safetensors only, never peft: PEFT is needed only to load
what `ptuning export --format peft` writes, not to write or import it.
"""
