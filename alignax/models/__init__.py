"""Flax NNX model families (Llama/Mistral, Qwen2, Gemma-2), checkpoint I/O (HF safetensors
in/out, GGUF in), tokenizer, presets. The family is picked by config.json's `architectures`
(registry.py); every family satisfies `contract.CausalLM`.

    model, tokenizer = alignax.models.load("smollm2-135m-instruct")   # a preset
    model, tokenizer = alignax.models.load("path/to/hf_folder")        # config.json + *.safetensors
    model, tokenizer = alignax.models.load("Qwen/Qwen2.5-0.5B")        # a hub id (huggingface_hub cache)
    model, tokenizer = alignax.models.load("path/to/model.gguf")       # llama-architecture GGUF
    alignax.models.save_hf(model, tokenizer, "out_dir")                # transformers loads it
"""

from __future__ import annotations

import logging
import os

from alignax.models import gguf_io, hub, presets, registry
from alignax.models.config import LlamaConfig
from alignax.models.contract import CausalLM
from alignax.models.gemma2 import Gemma2, Gemma2Config
from alignax.models.hf_io import save_hf
from alignax.models.llama import Llama
from alignax.models.qwen2 import Qwen2, Qwen2Config
from alignax.models.tokenizer import Tokenizer

__all__ = [
    "load",
    "save_hf",
    "CausalLM",
    "LlamaConfig",
    "Llama",
    "Qwen2Config",
    "Qwen2",
    "Gemma2Config",
    "Gemma2",
    "Tokenizer",
    "presets",
    "gguf_io",
    "hub",
    "registry",
]

_log = logging.getLogger(__name__)


def _dtype_name(dtype) -> str | None:
    """ "bfloat16" for "bfloat16", jnp.bfloat16 or np.dtype(...); None stays None."""
    if dtype is None:
        return None
    import jax.numpy as jnp

    return jnp.dtype(dtype).name


def load(source, *, dtype=None, mesh=None, revision=None) -> tuple[CausalLM, Tokenizer | None]:
    """``(model, tokenizer)`` from an HF folder, a hub id, a ``.gguf`` file or a preset name.

    A hub id (``org/name``, not an existing path) resolves through huggingface_hub's cache
    (hub.py): downloaded when online (``revision``: a branch, tag or commit), read from the cache
    only under ``HF_HUB_OFFLINE=1``; not cached offline raises ``hub.HubModelNotFound``.

    ``dtype`` is the compute dtype (e.g. ``"bfloat16"``; default float32); parameters are stored
    as ``param_dtype`` (float32). With a ``mesh`` every parameter is created already sharded
    (FSDP rules), reading only each device's block of the checkpoint. The tokenizer is None for an
    HF folder without tokenizer.json or a GGUF without tokenizer.ggml.* metadata.
    """
    if presets.is_preset(source):
        source = presets.resolve(source)
    elif hub.is_hub_id(source):
        source = hub.resolve(source, revision=revision)
    path = os.fspath(source)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"model source not found: {path!r} (not a file, a folder or a preset; presets: {presets.names()})"
        )
    overrides = {} if dtype is None else {"dtype": _dtype_name(dtype)}
    from alignax.models import hf_io  # the module, for model_from_state_dict / load_hf_model

    if os.path.isdir(path):
        model = hf_io.load_hf_model(path, mesh=mesh, **overrides)
        if not os.path.isfile(os.path.join(path, "tokenizer.json")):
            _log.warning("%s has no tokenizer.json; returning tokenizer=None", path)
            return model, None
        return model, Tokenizer.from_dir(path)
    if path.endswith(".gguf"):
        hf_config, tensors, reader = gguf_io.read_gguf(path)
        try:
            cfg = LlamaConfig.from_hf(hf_config, **overrides)
        except (ValueError, TypeError) as e:
            raise gguf_io.GGUFError(f"{path}: {e}") from e
        model = hf_io.model_from_state_dict(cfg, tensors.lazy(), mesh=mesh)
        if gguf_io.field_value(reader, "tokenizer.ggml.tokens") is None:
            _log.warning("%s has no tokenizer metadata; returning tokenizer=None", path)
            return model, None
        return model, Tokenizer.from_gguf(reader)
    raise ValueError(f"{path}: expected an HF checkpoint folder or a .gguf file")
