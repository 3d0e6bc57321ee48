"""The model's core, readable top to bottom: settings (`config`, `limits`), the prefix injection into
the encoder's attention (`injection`), the prompts (`prompts`), backbones (`backbones`), bf16
autocast (`precision`) and the shallow-layer cache (`shallow_cache`). It imports nothing of ptuning
outside itself but `errors`, `tasks` and `_version`."""
