"""The Qwen2 / Qwen2.5 family: the Llama decoder with biases on the q/k/v projections.

Reference: transformers 4.53 `models/qwen2/modeling_qwen2.py` and `configuration_qwen2.py`
(Qwen2 technical report, arXiv:2407.10671, section 2.2.1: "QKV bias for attention"). Differences
from Llama, each a config property read by the shared decoder in llama.py:

  * q_proj, k_proj, v_proj have biases (`attention_qkv_bias`); o_proj and the MLP do not;
  * embeddings tied (Qwen2.5 0.5B-3B) or untied, rope_theta (1e6 for Qwen2.5) as in config.json;
  * optional sliding window on the layers >= max_window_layers when use_sliding_window
    (`layer_types`, as transformers derives it); off in every released Qwen2/2.5 checkpoint.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Mapping

from alignax.models.config import LlamaConfig
from alignax.models.contract import Family
from alignax.models.llama import HF_LAYER_PARAMS as LLAMA_LAYER_PARAMS
from alignax.models.llama import Llama

LAYER_TYPES = ("full_attention", "sliding_attention")


@dataclasses.dataclass(frozen=True)
class Qwen2Config(LlamaConfig):
    """Qwen2ForCausalLM hyperparameters; HF names and defaults (transformers Qwen2Config)."""

    ARCHITECTURES: ClassVar[tuple[str, ...]] = ("Qwen2ForCausalLM",)
    MODEL_TYPES: ClassVar[Mapping[str, str]] = {"Qwen2ForCausalLM": "qwen2"}
    UNSUPPORTED_IF_SET: ClassVar[Mapping[str, Any]] = {"hidden_act": "silu"}

    vocab_size: int = 151936
    hidden_size: int = 4096
    intermediate_size: int = 22016
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    max_position_embeddings: int = 32768
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    architecture: str = "Qwen2ForCausalLM"
    use_sliding_window: bool = False
    max_window_layers: int = 28
    layer_types: tuple[str, ...] | None = None

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.use_sliding_window, bool):
            raise ValueError(f"use_sliding_window={self.use_sliding_window!r}: expected true or false")
        if not self.use_sliding_window:  # transformers: sliding_window = None unless use_sliding_window
            object.__setattr__(self, "sliding_window", None)
        if self.layer_types is None:
            types = tuple(
                "sliding_attention"
                if self.sliding_window is not None and i >= self.max_window_layers
                else "full_attention"
                for i in range(self.num_hidden_layers)
            )
            object.__setattr__(self, "layer_types", types)
        object.__setattr__(self, "layer_types", check_layer_types(self))

    @property
    def layer_windows(self) -> tuple[int | None, ...]:
        return tuple(self.sliding_window if t == "sliding_attention" else None for t in self.layer_types)

    @property
    def attention_qkv_bias(self) -> bool:
        return True

    def to_hf(self) -> dict[str, Any]:
        out = self._common_hf()
        out.update(
            hidden_act="silu",
            rope_scaling=None if self.rope_scaling is None else dict(self.rope_scaling),
            use_sliding_window=self.use_sliding_window,
            sliding_window=self.sliding_window,
            max_window_layers=self.max_window_layers,
            layer_types=list(self.layer_types),
        )
        return out

    @classmethod
    def tiny(cls, **overrides) -> "Qwen2Config":
        """A tiny random-weights config for tests (vocab 256, hidden 64, 2 layers, 4/2 heads)."""
        return super().tiny(**{"rope_theta": 1e6, **overrides})


def check_layer_types(cfg) -> tuple[str, ...]:
    """`cfg.layer_types` as a tuple: one of LAYER_TYPES per layer, sliding ones needing a window."""
    types = cfg.layer_types
    if (
        not isinstance(types, (list, tuple))
        or len(types) != cfg.num_hidden_layers
        or any(t not in LAYER_TYPES for t in types)
    ):
        raise ValueError(f"layer_types={types!r}: expected {cfg.num_hidden_layers} entries of {LAYER_TYPES}")
    if "sliding_attention" in types and cfg.sliding_window is None:
        raise ValueError("layer_types has sliding_attention layers but sliding_window is null")
    return tuple(types)


class Qwen2(Llama):
    """Qwen2ForCausalLM: the Llama decoder; q/k/v biases come from `Qwen2Config.attention_qkv_bias`."""


# HF key map: Llama's plus the three attention biases (not transposed).
HF_LAYER_PARAMS = LLAMA_LAYER_PARAMS + tuple(
    (("self_attn", f"{name}_proj", "bias"), f"self_attn.{name}_proj.bias", False) for name in "qkv"
)

FAMILY = Family(name="qwen2", config_class=Qwen2Config, model_class=Qwen2, hf_layer_params=HF_LAYER_PARAMS)
