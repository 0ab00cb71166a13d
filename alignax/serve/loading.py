"""Loading a model for serving: `alignax.models.load` with one KV-cache buffer per layer.

Why: the decode step is one jitted call per token with the KV cache donated in and out. An
unscanned model's cache is one [B, S, KVH*hd] buffer per layer (alignax/models/llama.py
`init_cache`): each layer writes its new column into its own buffer and attends over it, so the
compiled step copies neither a cache buffer nor a weight (tests/test_serve.py checks the engine's
step; tests/test_sampler.py the sampler's). The alternatives each copied something every step: a
Python loop over layers writing one stacked [L, B, S, ...] cache copied the whole stack before
every layer's write (~5 s per step for 32 slots x 512 columns of SmolLM2-135M), and scanned
layers copy each layer's weight slice out of the stack (benchmarks/README.md, "sample — profile
of the decode step"). The engine still serves a scanned model's stacked cache (`scan_layers=True`).
"""

from __future__ import annotations

import os

from alignax.models import LlamaConfig, Tokenizer, gguf_io, hf_io, load, presets


def load_for_serving(source, *, dtype=None, scan_layers: bool = False):
    """(model, tokenizer) from a preset, an HF folder or a .gguf file; per-layer cache buffers
    unless `scan_layers`."""
    path = os.fspath(presets.resolve(source) if presets.is_preset(source) else source)
    overrides = {"scan_layers": bool(scan_layers)}
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
