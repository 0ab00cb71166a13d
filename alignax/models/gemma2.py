"""The Gemma-2 family in Flax NNX, on the shared decoder of llama.py.

Reference: transformers 4.53 `models/gemma2/modeling_gemma2.py` and `configuration_gemma2.py`;
Gemma 2 report (arXiv:2408.00118), section 2. Term for term:

  h_0 = embed_tokens[input_ids] * sqrt(hidden_size)       (the factor cast to the compute dtype)
  a   = o_proj(attn(...)),  scores = cap_a * tanh(q.k * query_pre_attn_scalar^-1/2 / cap_a)
  h   = h + post_attention_layernorm(a(input_layernorm(h)))
  h   = h + post_feedforward_layernorm(down_proj(gelu_tanh(gate_proj(m)) * up_proj(m))),
        m = pre_feedforward_layernorm(h)
  logits = cap_f * tanh((norm(h_L) @ lm_head) / cap_f)    (lm_head = embed_tokens^T when tied)

RMSNorm multiplies by (1 + weight), computed in float32 and cast back (Gemma2RMSNorm). Layers
alternate sliding-window (even index: 0, 2, ...) and global attention (`layer_types`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Mapping

import jax
import jax.numpy as jnp
from flax import nnx

from alignax.models.config import LlamaConfig
from alignax.models.contract import Family
from alignax.models.llama import MLP, Attention, Llama, RMSNorm, _param
from alignax.models.qwen2 import check_layer_types


@dataclasses.dataclass(frozen=True)
class Gemma2Config(LlamaConfig):
    """Gemma2ForCausalLM hyperparameters; HF names and defaults (transformers Gemma2Config)."""

    ARCHITECTURES: ClassVar[tuple[str, ...]] = ("Gemma2ForCausalLM",)
    MODEL_TYPES: ClassVar[Mapping[str, str]] = {"Gemma2ForCausalLM": "gemma2"}
    UNSUPPORTED_IF_SET: ClassVar[Mapping[str, Any]] = {
        "attention_bias": False,
        "hidden_activation": "gelu_pytorch_tanh",
    }

    vocab_size: int = 256000
    hidden_size: int = 2304
    intermediate_size: int = 9216
    num_hidden_layers: int = 26
    num_attention_heads: int = 8
    num_key_value_heads: int | None = 4
    head_dim: int | None = 256
    max_position_embeddings: int = 8192
    tie_word_embeddings: bool = True
    sliding_window: int | None = 4096
    bos_token_id: int | None = 2
    eos_token_id: int | list[int] | None = 1
    pad_token_id: int | None = 0
    architecture: str = "Gemma2ForCausalLM"
    query_pre_attn_scalar: float = 256
    final_logit_softcapping: float | None = 30.0
    attn_logit_softcapping: float | None = 50.0
    layer_types: tuple[str, ...] | None = None

    def __post_init__(self):
        super().__post_init__()
        for name in ("query_pre_attn_scalar", "final_logit_softcapping", "attn_logit_softcapping"):
            value = getattr(self, name)
            if (value is None and name != "query_pre_attn_scalar") or (
                isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < float("inf")
            ):
                continue
            raise ValueError(
                f"{name}={value!r}: expected a positive finite number"
                + ("" if name == "query_pre_attn_scalar" else " or null")
            )
        if self.layer_types is None:  # transformers: sliding on even layers, global on odd ones
            object.__setattr__(
                self,
                "layer_types",
                tuple("sliding_attention" if (i + 1) % 2 else "full_attention" for i in range(self.num_hidden_layers)),
            )
        object.__setattr__(self, "layer_types", check_layer_types(self))

    @property
    def layer_windows(self) -> tuple[int | None, ...]:
        return tuple(self.sliding_window if t == "sliding_attention" else None for t in self.layer_types)

    @property
    def attention_scale(self) -> float:
        return self.query_pre_attn_scalar**-0.5

    @property
    def attention_logit_softcap(self) -> float | None:
        return self.attn_logit_softcapping

    @property
    def final_logit_softcap(self) -> float | None:
        return self.final_logit_softcapping

    @property
    def mlp_activation(self) -> str:
        return "gelu_pytorch_tanh"

    def to_hf(self) -> dict[str, Any]:
        if self.rope_scaling is not None:
            raise ValueError("Gemma2ForCausalLM has no rope_scaling in alignax's export; cannot export it")
        out = self._common_hf()
        out.update(
            hidden_activation="gelu_pytorch_tanh",
            query_pre_attn_scalar=self.query_pre_attn_scalar,
            sliding_window=self.sliding_window,
            final_logit_softcapping=self.final_logit_softcapping,
            attn_logit_softcapping=self.attn_logit_softcapping,
            layer_types=list(self.layer_types),
            attention_bias=False,
        )
        return out

    @classmethod
    def tiny(cls, **overrides) -> "Gemma2Config":
        """A tiny random-weights config for tests: hidden 64, 2 layers (one local, one global)."""
        kwargs = dict(head_dim=16, query_pre_attn_scalar=16, sliding_window=4, tie_word_embeddings=True)
        return super().tiny(**{**kwargs, **overrides})


class Gemma2RMSNorm(RMSNorm):
    """y = (1 + weight) * x / sqrt(mean(x^2) + eps), all in float32, cast back to x's dtype
    (transformers Gemma2RMSNorm; the weight starts at zero)."""

    def __init__(self, dim: int, *, cfg: LlamaConfig, rngs: nnx.Rngs):  # RMSNorm.__init__ is replaced, not extended
        self.weight = _param(rngs, nnx.initializers.zeros, (dim,), ("norm",), jnp.dtype(cfg.param_dtype))
        self.eps = cfg.rms_norm_eps
        self.compute_dtype = jnp.dtype(cfg.dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        normed = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return (normed * (1.0 + self.weight[...].astype(jnp.float32))).astype(x.dtype)


class Gemma2DecoderLayer(nnx.Module):
    """Sandwich-norm block: norms before and after both attention and MLP (Gemma2DecoderLayer)."""

    def __init__(self, cfg: LlamaConfig, *, rngs: nnx.Rngs):
        norm = lambda: Gemma2RMSNorm(cfg.hidden_size, cfg=cfg, rngs=rngs)  # noqa: E731
        self.input_layernorm = norm()
        self.self_attn = Attention(cfg, rngs=rngs)
        self.post_attention_layernorm = norm()
        self.pre_feedforward_layernorm = norm()
        self.mlp = MLP(cfg, rngs=rngs)
        self.post_feedforward_layernorm = norm()

    def __call__(self, x, *, cos, sin, mask, kv=None, write_index=None, write_in_place=False):
        attn_out, kv = self.self_attn(
            self.input_layernorm(x),
            cos=cos,
            sin=sin,
            mask=mask,
            kv=kv,
            write_index=write_index,
            write_in_place=write_in_place,
        )
        x = x + self.post_attention_layernorm(attn_out)
        x = x + self.post_feedforward_layernorm(self.mlp(self.pre_feedforward_layernorm(x)))
        return x, kv


class Gemma2(Llama):
    """Gemma2ForCausalLM. Masks, cache, remat and scan are llama.py's; see the module docstring."""

    layer_class = Gemma2DecoderLayer
    norm_class = Gemma2RMSNorm

    def embed(self, input_ids: jax.Array) -> jax.Array:
        x = self.model.embed_tokens(input_ids)
        return x * jnp.asarray(self.cfg.hidden_size**0.5, x.dtype)


# HF key map of one decoder layer: Llama's plus the two feed-forward norms.
HF_LAYER_PARAMS = (
    (("input_layernorm", "weight"), "input_layernorm.weight", False),
    (("post_attention_layernorm", "weight"), "post_attention_layernorm.weight", False),
    (("pre_feedforward_layernorm", "weight"), "pre_feedforward_layernorm.weight", False),
    (("post_feedforward_layernorm", "weight"), "post_feedforward_layernorm.weight", False),
    (("self_attn", "q_proj", "kernel"), "self_attn.q_proj.weight", True),
    (("self_attn", "k_proj", "kernel"), "self_attn.k_proj.weight", True),
    (("self_attn", "v_proj", "kernel"), "self_attn.v_proj.weight", True),
    (("self_attn", "o_proj", "kernel"), "self_attn.o_proj.weight", True),
    (("mlp", "gate_proj", "kernel"), "mlp.gate_proj.weight", True),
    (("mlp", "up_proj", "kernel"), "mlp.up_proj.weight", True),
    (("mlp", "down_proj", "kernel"), "mlp.down_proj.weight", True),
)

FAMILY = Family(name="gemma2", config_class=Gemma2Config, model_class=Gemma2, hf_layer_params=HF_LAYER_PARAMS)
