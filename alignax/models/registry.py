"""Model families, selected by the checkpoint's architecture name (`config.json` "architectures").

    LlamaForCausalLM, MistralForCausalLM -> llama.py
    Qwen2ForCausalLM                     -> qwen2.py
    Gemma2ForCausalLM                    -> gemma2.py

A new family is one module defining `FAMILY = contract.Family(...)` (config class, model class,
HF key map) plus one entry in `FAMILIES` below; the loader, saver and trainer look it up here and
never branch on the family (cf. transformers' `MODEL_FOR_CAUSAL_LM_MAPPING_NAMES`, Tunix's
per-family `params.py`).
"""

from __future__ import annotations

from typing import Any, Mapping

from alignax.models import gemma2, llama, qwen2
from alignax.models.contract import Family

FAMILIES: tuple[Family, ...] = (llama.FAMILY, qwen2.FAMILY, gemma2.FAMILY)

_BY_ARCHITECTURE: dict[str, Family] = {arch: family for family in FAMILIES for arch in family.architectures}


def architectures() -> tuple[str, ...]:
    """Every supported HF architecture name."""
    return tuple(_BY_ARCHITECTURE)


def family_for_architecture(architecture: str | None) -> Family:
    """The family of an HF architecture name; ValueError naming the supported ones otherwise."""
    try:
        return _BY_ARCHITECTURE[architecture]
    except (KeyError, TypeError):
        raise ValueError(f"unknown architecture {architecture!r}; alignax supports {architectures()}") from None


def family_of(cfg) -> Family:
    """The family of a model config (by `cfg.architecture`)."""
    return family_for_architecture(cfg.architecture)


def architecture_from_hf(config: Mapping[str, Any]) -> str | None:
    """`architectures[0]` of a config.json dict, or the architecture its `model_type` names."""
    for family in FAMILIES:
        architecture = family.config_class.architecture_from_hf(config)
        if architecture in _BY_ARCHITECTURE:
            return architecture
    return llama.LlamaConfig.architecture_from_hf(config)


def config_from_hf(config: Mapping[str, Any], **overrides):
    """The config object of the family a config.json dict names; `overrides` set alignax fields."""
    architecture = architecture_from_hf(config)
    if architecture not in _BY_ARCHITECTURE:
        raise ValueError(
            f"config.json: unknown architecture {architecture!r} (architectures={config.get('architectures')!r}, "
            f"model_type={config.get('model_type')!r}); alignax supports {architectures()}"
        )
    return _BY_ARCHITECTURE[architecture].config_class.from_hf(config, **overrides)
