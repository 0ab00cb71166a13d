"""Loading a model for serving: `alignax.models.load` with the decoder blocks under `lax.scan`.

Why: the decode step is one jitted call per token with the KV cache donated in and out. With a
Python loop over layers, XLA cannot prove that layer l's cache read happens before layer l's
one-column write into the stacked [L, B, S, ...] cache, and copies the WHOLE stacked cache before
every layer's write (measured: ~5 s per step for 32 slots x 512 columns of SmolLM2-135M). With
`scan_layers=True` the layers' new keys/values come out of the scan and are written with one
in-place update after it (no copy at all in the compiled step).
"""

from __future__ import annotations

import os

from alignax.models import LlamaConfig, Tokenizer, gguf_io, hf_io, load, presets


def load_for_serving(source, *, dtype=None):
    """(model with scan_layers=True, tokenizer) from a preset, an HF folder or a .gguf file."""
    path = os.fspath(presets.resolve(source) if presets.is_preset(source) else source)
    overrides = {"scan_layers": True}
    if dtype is not None:
        overrides["dtype"] = str(dtype)
    if os.path.isdir(path):
        model = hf_io.load_hf_model(path, **overrides)
        has_tokenizer = os.path.isfile(os.path.join(path, "tokenizer.json"))
        return model, (Tokenizer.from_dir(path) if has_tokenizer else None)
    if path.endswith(".gguf") and os.path.isfile(path):
        hf_config, tensors, reader = gguf_io.read_gguf(path)
        try:
            cfg = LlamaConfig.from_hf(hf_config, **overrides)
        except (ValueError, TypeError) as e:
            raise gguf_io.GGUFError(f"{path}: {e}") from e
        model = hf_io.model_from_state_dict(cfg, tensors.lazy())
        has_tokenizer = gguf_io.field_value(reader, "tokenizer.ggml.tokens") is not None
        return model, (Tokenizer.from_gguf(reader) if has_tokenizer else None)
    return load(path, dtype=dtype)  # raises the loader's own error for anything else
