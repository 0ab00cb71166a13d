"""The Llama family (Llama 2/3/3.x, Mistral, SmolLM2) in Flax NNX.

Follows transformers 4.53 `modeling_llama.py` / `modeling_mistral.py` term for term:

  h_0 = embed_tokens[input_ids]
  h_l = h_{l-1} + o_proj(attn(rope(q_proj(n)), rope(k_proj(n)), v_proj(n))),  n = input_layernorm(h_{l-1})
  h_l = h_l + down_proj(silu(gate_proj(m)) * up_proj(m)),                    m = post_attention_layernorm(h_l)
  logits = final_norm(h_L) @ lm_head          (lm_head = embed_tokens^T when tied)

Parameter paths mirror HF names (`model.layers.3.self_attn.q_proj.kernel` <-> HF
`model.layers.3.self_attn.q_proj.weight`, transposed), so checkpoint I/O (hf_io.py) is a rename
table. Every parameter carries logical axis names in its `out_sharding` metadata; sharding.py maps
them onto the mesh with one rule table.

Attention (attention.py) is einsums + mask + softmax in float32. Which key a query may see is decided by
one mask built from segment ids (0 = padding; a query sees only keys of its own segment), token
order (causal) and, for Mistral, the sliding window, both counted in sequence/cache slots as
transformers does. Positions (for rotary embeddings only) default to restarting at 0 in every
segment, so a packed row gives the same logits as its sequences run one by one.
"""

from __future__ import annotations

from typing import Sequence

import chex
import jax
import jax.numpy as jnp
from flax import nnx

from alignax.models.attention import attend, attention_mask, softcap
from alignax.models.config import LlamaConfig
from alignax.models.contract import Cache, Family
from alignax.models.rope import apply_rope, rope_cos_sin

# -------------------------------------------------------------------------------------------------
# Parameters with logical axis names.
# -------------------------------------------------------------------------------------------------


def _param(rngs: nnx.Rngs | None, init, shape: Sequence[int], logical_axes: tuple[str, ...], param_dtype) -> nnx.Param:
    """A parameter annotated with logical axis names (mapped to the mesh by sharding.py).

    `eager_sharding=False`: the names are logical, not mesh axes, so flax must not try to place the
    value on a mesh at creation; sharding.py (or hf_io.py) places it.
    """
    value = init(rngs.params(), tuple(shape), param_dtype)
    return nnx.Param(value, out_sharding=logical_axes, eager_sharding=False)


def _normal(stddev):
    return nnx.initializers.normal(stddev=stddev)


class Dense(nnx.Module):
    """y = x @ kernel (+ bias), kernel [in, out] (HF stores weight = kernel^T [out, in]).

    Llama has no biases; Qwen2's q/k/v projections have one (`use_bias`, HF `*.bias` [out]).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        logical_axes: tuple[str, str],
        *,
        cfg: LlamaConfig,
        rngs: nnx.Rngs,
        use_bias: bool = False,
    ):
        self.kernel = _param(rngs, _normal(0.02), (in_features, out_features), logical_axes, jnp.dtype(cfg.param_dtype))
        self.use_bias = use_bias
        if use_bias:
            self.bias = _param(
                rngs, nnx.initializers.zeros, (out_features,), logical_axes[1:], jnp.dtype(cfg.param_dtype)
            )
        self.compute_dtype = jnp.dtype(cfg.dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        y = jnp.einsum("...i,io->...o", x, self.kernel[...].astype(self.compute_dtype))
        return y + self.bias[...].astype(self.compute_dtype) if self.use_bias else y


class RMSNorm(nnx.Module):
    """y = weight * x / sqrt(mean(x^2) + eps), the statistics in float32 (transformers LlamaRMSNorm)."""

    def __init__(self, dim: int, *, cfg: LlamaConfig, rngs: nnx.Rngs):
        self.weight = _param(rngs, nnx.initializers.ones, (dim,), ("norm",), jnp.dtype(cfg.param_dtype))
        self.eps = cfg.rms_norm_eps
        self.compute_dtype = jnp.dtype(cfg.dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        normed = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return self.weight[...].astype(self.compute_dtype) * normed.astype(self.compute_dtype)


class Embed(nnx.Module):
    """Token embedding table [vocab, embed] (HF `embed_tokens.weight`, same layout)."""

    def __init__(self, cfg: LlamaConfig, *, rngs: nnx.Rngs):
        self.embedding = _param(
            rngs, _normal(0.02), (cfg.vocab_size, cfg.hidden_size), ("vocab", "embed"), jnp.dtype(cfg.param_dtype)
        )
        self.compute_dtype = jnp.dtype(cfg.dtype)

    def __call__(self, input_ids: jax.Array) -> jax.Array:
        return jnp.take(self.embedding[...], input_ids, axis=0).astype(self.compute_dtype)


# -------------------------------------------------------------------------------------------------
# Masks and default positions.
# -------------------------------------------------------------------------------------------------


def positions_from_segments(segment_ids: jax.Array) -> jax.Array:
    """Index of each token within its run of equal segment ids: [1,1,2,2,2] -> [0,1,0,1,2]."""
    _, length = segment_ids.shape
    index = jnp.arange(length, dtype=jnp.int32)[None, :]
    starts = jnp.concatenate(
        [jnp.ones_like(segment_ids[:, :1], bool), segment_ids[:, 1:] != segment_ids[:, :-1]], axis=1
    )
    run_start = jax.lax.cummax(jnp.where(starts, index, 0), axis=1)
    return index - run_start


# -------------------------------------------------------------------------------------------------
# Decoder block.
# -------------------------------------------------------------------------------------------------


class Attention(nnx.Module):
    """Grouped-query attention: H query heads share KVH key/value heads in groups of H // KVH."""

    def __init__(self, cfg: LlamaConfig, *, rngs: nnx.Rngs):
        d, h, kvh, hd = cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        bias = cfg.attention_qkv_bias
        self.q_proj = Dense(d, h * hd, ("embed", "heads"), cfg=cfg, rngs=rngs, use_bias=bias)
        self.k_proj = Dense(d, kvh * hd, ("embed", "kv_heads"), cfg=cfg, rngs=rngs, use_bias=bias)
        self.v_proj = Dense(d, kvh * hd, ("embed", "kv_heads"), cfg=cfg, rngs=rngs, use_bias=bias)
        self.o_proj = Dense(h * hd, d, ("heads", "embed"), cfg=cfg, rngs=rngs)
        self.num_heads, self.num_kv_heads, self.head_dim = h, kvh, hd
        self.scale = cfg.attention_scale
        self.logit_softcap = cfg.attention_logit_softcap

    def __call__(self, x, *, cos, sin, mask, kv=None, write_index=None, write_in_place=False):
        """x [B,T,D]; mask [B,T,S]; kv = this layer's cache (k, v) before this call: [B,S,KVH,hd]
        (a layer's slice of the stacked cache) or [B,S,KVH*hd] (the layer's own buffer).

        softmax(softcap(q k^T * scale) + mask) v with scores and softmax in float32; scale is
        1/sqrt(hd) but for Gemma-2, and softcap(s) = cap * tanh(s / cap) only with Gemma-2's
        attn_logit_softcapping (transformers `eager_attention_forward`). Returns the output [B,T,D]
        and new_kv. With a cache there are two ways to add this call's tokens:
          * write_in_place (the layer owns its buffer, `Llama.init_cache` without scan): the tokens
            are written into the buffer at `write_index` first and attended there; new_kv is the
            updated buffer (XLA writes it in place);
          * otherwise (one stacked buffer shared by all layers): the cached slots and this call's
            keys are attended as two parts without writing, and new_kv is the new tokens
            [B,T,KVH,hd], which the caller writes once for all layers.
        """
        batch, length, _ = x.shape
        q = self.q_proj(x).reshape(batch, length, self.num_heads, self.head_dim)
        k = self.k_proj(x).reshape(batch, length, self.num_kv_heads, self.head_dim)
        v = self.v_proj(x).reshape(batch, length, self.num_kv_heads, self.head_dim)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        groups = self.num_heads // self.num_kv_heads
        q = q.reshape(batch, length, self.num_kv_heads, groups, self.head_dim).astype(jnp.float32)
        if kv is None:
            chex.assert_shape(mask, (batch, length, length))
            parts, new_kv = ((k, v, mask),), (k, v)
        else:
            cache_k, cache_v = kv
            k, v = k.astype(cache_k.dtype), v.astype(cache_v.dtype)
            chex.assert_shape(mask, (batch, length, cache_k.shape[1]))
            if write_in_place:  # the layer's own [B, S, KVH*hd] buffer
                start = (0, write_index, 0)
                new_kv = (
                    jax.lax.dynamic_update_slice(cache_k, k.reshape(batch, length, -1), start),
                    jax.lax.dynamic_update_slice(cache_v, v.reshape(batch, length, -1), start),
                )
                parts = (new_kv + (mask,),)
            else:
                # The cache slots this call writes hold stale values: their keys come from (k, v).
                slots = jnp.arange(cache_k.shape[1], dtype=jnp.int32)
                written_now = (slots >= write_index) & (slots < write_index + length)
                new_mask = jax.lax.dynamic_slice_in_dim(mask, write_index, length, axis=2)
                parts = ((cache_k, cache_v, mask & ~written_now[None, None, :]), (k, v, new_mask))
                new_kv = (k, v)
        out = attend(q, parts, scale=self.scale, logit_softcap=self.logit_softcap)
        out = out.astype(x.dtype).reshape(batch, length, self.num_heads * self.head_dim)
        return self.o_proj(out), new_kv


# HF ACT2FN names -> functions; gelu_pytorch_tanh is GELU's tanh approximation (Gemma's GeGLU).
ACTIVATIONS = {
    "silu": jax.nn.silu,
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
}


class MLP(nnx.Module):
    """Gated MLP: down_proj(act(gate_proj(x)) * up_proj(x)); SwiGLU (silu) or GeGLU (Gemma)."""

    def __init__(self, cfg: LlamaConfig, *, rngs: nnx.Rngs):
        d, f = cfg.hidden_size, cfg.intermediate_size
        self.gate_proj = Dense(d, f, ("embed", "mlp"), cfg=cfg, rngs=rngs)
        self.up_proj = Dense(d, f, ("embed", "mlp"), cfg=cfg, rngs=rngs)
        self.down_proj = Dense(f, d, ("mlp", "embed"), cfg=cfg, rngs=rngs)
        self.activation = cfg.mlp_activation

    def __call__(self, x):
        return self.down_proj(ACTIVATIONS[self.activation](self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nnx.Module):
    """Pre-norm residual block: attention then SwiGLU MLP (HF LlamaDecoderLayer)."""

    def __init__(self, cfg: LlamaConfig, *, rngs: nnx.Rngs):
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg=cfg, rngs=rngs)
        self.self_attn = Attention(cfg, rngs=rngs)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg=cfg, rngs=rngs)
        self.mlp = MLP(cfg, rngs=rngs)

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
        x = x + attn_out
        x = x + self.mlp(self.post_attention_layernorm(x))
        return x, kv


class LlamaModel(nnx.Module):
    """Embedding, decoder layers and final norm (HF `model.*`).

    With `cfg.scan_layers`, `layers` is ONE DecoderLayer whose parameters carry a leading axis of
    size num_hidden_layers (logical name "layers"); otherwise an nnx.List of DecoderLayers.
    `layer_class` / `norm_class`: a family's block and norm (Gemma-2's sandwich block, (1 + w) norm).
    """

    def __init__(self, cfg: LlamaConfig, *, rngs: nnx.Rngs, layer_class=None, norm_class=None):
        layer_class = layer_class or DecoderLayer
        norm_class = norm_class or RMSNorm
        self.embed_tokens = Embed(cfg, rngs=rngs)
        if cfg.scan_layers:

            @nnx.split_rngs(splits=cfg.num_hidden_layers)
            @nnx.vmap(in_axes=(0,), out_axes=0, transform_metadata={nnx.PARTITION_NAME: "layers"})
            def make_stacked(layer_rngs):
                return layer_class(cfg, rngs=layer_rngs)

            self.layers = make_stacked(rngs)
        else:
            self.layers = nnx.List([layer_class(cfg, rngs=rngs) for _ in range(cfg.num_hidden_layers)])
        self.norm = norm_class(cfg.hidden_size, cfg=cfg, rngs=rngs)


class Llama(nnx.Module):
    """Llama-family causal LM. See the module docstring for the computation and conventions.

    Other families (qwen2.py, gemma2.py) subclass it, setting `layer_class` / `norm_class` and
    overriding `embed`; everything else (masks, cache, remat, scan) is shared.
    """

    layer_class = DecoderLayer
    norm_class = RMSNorm

    def __init__(self, cfg: LlamaConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.model = LlamaModel(cfg, rngs=rngs, layer_class=self.layer_class, norm_class=self.norm_class)
        if not cfg.tie_word_embeddings:
            self.lm_head = Dense(cfg.hidden_size, cfg.vocab_size, ("embed", "vocab"), cfg=cfg, rngs=rngs)

    # --- heads --------------------------------------------------------------------------------------

    def lm_head_weight(self) -> jax.Array:
        """The output projection [D, V]: the transposed embedding when tied."""
        if self.cfg.tie_word_embeddings:
            return self.model.embed_tokens.embedding[...].T
        return self.lm_head.kernel[...]

    @property
    def final_logit_softcap(self) -> float | None:
        """Logits = cap * tanh((h @ W_head) / cap) when set (Gemma-2); whoever computes logits from
        `hidden_states` and `lm_head_weight` must apply it."""
        return self.cfg.final_logit_softcap

    def logits_from_hidden(self, hidden: jax.Array) -> jax.Array:
        """float32 logits h @ W_head, multiplied in the compute dtype and accumulated in float32."""
        weight = self.lm_head_weight().astype(hidden.dtype)
        logits = jnp.einsum("...d,dv->...v", hidden, weight, preferred_element_type=jnp.float32)
        cap = self.final_logit_softcap
        return logits if cap is None else softcap(logits, cap)

    def embed(self, input_ids: jax.Array) -> jax.Array:
        """h_0: the token embeddings (Gemma-2 scales them by sqrt(hidden_size))."""
        return self.model.embed_tokens(input_ids)

    # --- forward ------------------------------------------------------------------------------------

    def __call__(
        self,
        input_ids: jax.Array,
        *,
        positions: jax.Array | None = None,
        segment_ids: jax.Array | None = None,
        cache: Cache | None = None,
        last_only: bool = False,
    ):
        """logits [B,T,V] float32; with a cache, (logits, updated cache).

        segment_ids [B,T] int32: 0 = padding; tokens attend causally within their own segment.
        positions [B,T]: rotary positions; default restart at 0 in each segment (with a cache: they
        continue after the cached tokens of the same segment).
        last_only: logits of the last position only, [B,1,V] (the head is the costliest matmul of a
        prefill at vocab 49k-128k).
        """
        hidden, _, cache = self._forward(
            input_ids, positions=positions, segment_ids=segment_ids, cache=cache, exit_layers=()
        )
        if last_only:  # e.g. a sampler's prefill: only the next token's distribution is needed
            hidden = hidden[:, -1:]
        logits = self.logits_from_hidden(self.model.norm(hidden))
        chex.assert_shape(logits, (input_ids.shape[0], 1 if last_only else input_ids.shape[1], self.cfg.vocab_size))
        return logits if cache is None else (logits, cache)

    def hidden_states(
        self,
        input_ids: jax.Array,
        *,
        positions: jax.Array | None = None,
        segment_ids: jax.Array | None = None,
        exit_layers: Sequence[int] | None = None,
    ):
        """final_norm(h_L) [B,T,D] in the compute dtype; with exit_layers=[l1, ...] (1-based), the
        dict {l: final_norm(h_l)} so that logits_from_hidden gives each exit layer's logits."""
        if exit_layers is None:
            hidden, _, _ = self._forward(
                input_ids, positions=positions, segment_ids=segment_ids, cache=None, exit_layers=()
            )
            return self.model.norm(hidden)
        exit_layers = tuple(int(layer) for layer in exit_layers)
        for layer in exit_layers:
            if not 1 <= layer <= self.cfg.num_hidden_layers:
                raise ValueError(f"exit layer {layer} outside 1..{self.cfg.num_hidden_layers}")
        _, per_layer, _ = self._forward(
            input_ids, positions=positions, segment_ids=segment_ids, cache=None, exit_layers=exit_layers
        )
        return {layer: self.model.norm(per_layer[layer]) for layer in exit_layers}

    def init_cache(self, batch_size: int, max_length: int, dtype=None) -> Cache:
        """An empty KV cache: per-slot segment ids (0 = empty or padding) and positions [B, S], the
        write index, and k/v: with `cfg.scan_layers` one stacked [L, B, S, KVH, hd] array each (the
        scan's xs); otherwise a tuple of L arrays [B, S, KVH*hd], one buffer per layer, flat so that
        a decode step reads it as GEMM rows without a reshape (attention.py `decode_attention`).

        Why per-layer buffers without scan: a decode step then reads each layer's own buffer and
        writes one column into it in place. With one stacked buffer read by every layer, XLA copied
        the whole cache inside the step, and under `lax.scan` XLA's CPU backend copies every layer's
        weight slice out of the stack each step (benchmarks/README.md, "sample — profile of the
        decode step")."""
        cfg = self.cfg
        shape = (batch_size, max_length, cfg.num_key_value_heads, cfg.head_dim)
        layer_shape = (batch_size, max_length, cfg.num_key_value_heads * cfg.head_dim)
        dtype = jnp.dtype(dtype or cfg.dtype)

        def zeros():  # a fresh buffer per call: k and v are donated separately, never aliased
            if cfg.scan_layers:
                return jnp.zeros((cfg.num_hidden_layers, *shape), dtype)
            return tuple(jnp.zeros(layer_shape, dtype) for _ in range(cfg.num_hidden_layers))

        return {
            "k": zeros(),
            "v": zeros(),
            "segment_ids": jnp.zeros((batch_size, max_length), jnp.int32),
            "positions": jnp.zeros((batch_size, max_length), jnp.int32),
            "index": jnp.zeros((), jnp.int32),
        }

    def _forward(self, input_ids, *, positions, segment_ids, cache, exit_layers):
        cfg = self.cfg
        batch, length = input_ids.shape
        chex.assert_rank(input_ids, 2)
        if segment_ids is None:
            segment_ids = jnp.ones((batch, length), jnp.int32)
        segment_ids = segment_ids.astype(jnp.int32)
        chex.assert_shape(segment_ids, (batch, length))
        q_slots = jnp.arange(length, dtype=jnp.int32)
        if cache is None:
            if positions is None:
                positions = positions_from_segments(segment_ids)
            masks = self._layer_masks(
                q_segment_ids=segment_ids, kv_segment_ids=segment_ids, q_slots=q_slots, kv_slots=q_slots
            )
            write_index = None
        else:
            write_index = cache["index"]
            max_length = cache["segment_ids"].shape[1]
            if not isinstance(write_index, jax.core.Tracer) and int(write_index) + length > max_length:
                # Under jit this cannot be checked; dynamic_update_slice would clamp and overwrite.
                raise ValueError(
                    f"KV cache overflow: writing {length} tokens at slot {int(write_index)} "
                    f"of a cache with {max_length} slots"
                )
            if positions is None:
                positions = self._continued_positions(cache, segment_ids)
            kv_segment_ids = jax.lax.dynamic_update_slice(cache["segment_ids"], segment_ids, (0, write_index))
            kv_positions = jax.lax.dynamic_update_slice(
                cache["positions"], positions.astype(jnp.int32), (0, write_index)
            )
            masks = self._layer_masks(
                q_segment_ids=segment_ids,
                kv_segment_ids=kv_segment_ids,
                q_slots=write_index + q_slots,
                kv_slots=jnp.arange(max_length, dtype=jnp.int32),
            )
        chex.assert_shape(positions, (batch, length))
        cos, sin = rope_cos_sin(cfg, positions)
        x = self.embed(input_ids)
        kv_in = None if cache is None else (cache["k"], cache["v"])
        x, per_layer, kv_out = self._run_layers(
            x, cos=cos, sin=sin, masks=masks, kv=kv_in, write_index=write_index, exit_layers=exit_layers
        )
        if cache is not None:
            cache = {
                "k": kv_out[0],
                "v": kv_out[1],
                "segment_ids": kv_segment_ids,
                "positions": kv_positions,
                "index": write_index + length,
            }
        return x, per_layer, cache

    def _layer_masks(self, **mask_inputs) -> tuple[tuple[jax.Array, ...], tuple[int, ...]]:
        """(one [B, T, S] mask per distinct sliding window in `cfg.layer_windows`, each layer's index
        in that tuple): one mask for Llama/Mistral, global + local for Gemma-2's alternating layers."""
        windows = self.cfg.layer_windows
        distinct = tuple(dict.fromkeys(windows))
        masks = tuple(attention_mask(**mask_inputs, sliding_window=w) for w in distinct)
        return masks, tuple(distinct.index(w) for w in windows)

    @staticmethod
    def _continued_positions(cache: Cache, segment_ids: jax.Array) -> jax.Array:
        """Default positions of new tokens: one past the last cached position of the same segment."""
        cached_segments = cache["segment_ids"][:, None, :]
        same = (cached_segments == segment_ids[:, :, None]) & (cached_segments != 0)  # [B, T, S]
        offset = jnp.max(jnp.where(same, cache["positions"][:, None, :] + 1, 0), axis=-1)
        return offset + positions_from_segments(segment_ids)

    def _run_layers(self, x, *, cos, sin, masks, kv, write_index, exit_layers):
        """Runs the blocks (a Python loop, or lax.scan over stacked parameters), remat optional.

        `masks` = (mask per distinct window, each layer's row in it), from `_layer_masks`.
        Returns (h_L, {l: h_l for l in exit_layers}, the updated stacked (k, v) cache or None): each
        layer's new keys/values are written into the stacked cache with one T-token update.
        """
        cfg = self.cfg
        layers = self.model.layers
        if cfg.scan_layers:
            graphdef, stacked_state = nnx.split(layers)
            mask_table = jnp.stack(masks[0])
            mask_rows = jnp.asarray(masks[1], jnp.int32)

            def body(carry, xs):
                layer_state, layer_kv, mask_row = xs
                layer = nnx.merge(graphdef, layer_state)
                out, new_kv = layer(
                    carry, cos=cos, sin=sin, mask=mask_table[mask_row], kv=layer_kv, write_index=write_index
                )
                return out, (new_kv if layer_kv is not None else None, out if exit_layers else None)

            if cfg.remat:
                body = jax.checkpoint(body)
            x, (new_kv, all_hidden) = jax.lax.scan(body, x, (stacked_state, kv, mask_rows))
            per_layer = {layer: all_hidden[layer - 1] for layer in exit_layers}
            if kv is None:
                return x, per_layer, None
            start = (0, 0, write_index, 0, 0)
            return (
                x,
                per_layer,
                (
                    jax.lax.dynamic_update_slice(kv[0], new_kv[0], start),
                    jax.lax.dynamic_update_slice(kv[1], new_kv[1], start),
                ),
            )

        # Per-layer buffers (init_cache without scan) are written in place by each layer; a stacked
        # cache gets every layer's new tokens in one write after the last layer, since writing layer
        # l's tokens before layer l+1 reads made XLA copy the whole stacked cache 2L times per step.
        in_place = kv is not None and isinstance(kv[0], (tuple, list))

        def run_layer(layer, h, layer_kv, mask):
            call = dict(cos=cos, sin=sin, write_index=write_index, write_in_place=in_place)
            if not cfg.remat:
                return layer(h, mask=mask, kv=layer_kv, **call)
            # jax.checkpoint of a pure function of the layer's state (not nnx.remat of the module):
            # under jit(grad(...)) of a merged model, nnx.remat tries to write Params back across trace
            # levels and raises TraceContextError.
            layer_graphdef, layer_state = nnx.split(layer)

            def pure_layer(state, h, layer_kv, mask):
                return nnx.merge(layer_graphdef, state)(h, mask=mask, kv=layer_kv, **call)

            return jax.checkpoint(pure_layer)(layer_state, h, layer_kv, mask)

        per_layer = {}
        new_ks, new_vs = [], []
        for index, layer in enumerate(layers):
            layer_kv = None if kv is None else (kv[0][index], kv[1][index])
            x, (new_k, new_v) = run_layer(layer, x, layer_kv, masks[0][masks[1][index]])
            new_ks.append(new_k)
            new_vs.append(new_v)
            if index + 1 in exit_layers:
                per_layer[index + 1] = x
        if kv is None:
            return x, per_layer, None
        if in_place:
            return x, per_layer, (tuple(new_ks), tuple(new_vs))
        start = (0, 0, write_index, 0, 0)
        write = lambda stacked, columns: jax.lax.dynamic_update_slice(
            stacked, jnp.stack(columns).astype(stacked.dtype), start
        )
        return x, per_layer, (write(kv[0], new_ks), write(kv[1], new_vs))


def param_count(model: nnx.Module) -> int:
    """Number of parameters (the tied embedding counted once)."""
    return sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


# The HF key map of one decoder layer (hf_io.param_table adds the embedding, final norm and head):
# (path inside a DecoderLayer, HF name suffix after `model.layers.{i}.`, transposed).
HF_LAYER_PARAMS = (
    (("input_layernorm", "weight"), "input_layernorm.weight", False),
    (("post_attention_layernorm", "weight"), "post_attention_layernorm.weight", False),
    (("self_attn", "q_proj", "kernel"), "self_attn.q_proj.weight", True),
    (("self_attn", "k_proj", "kernel"), "self_attn.k_proj.weight", True),
    (("self_attn", "v_proj", "kernel"), "self_attn.v_proj.weight", True),
    (("self_attn", "o_proj", "kernel"), "self_attn.o_proj.weight", True),
    (("mlp", "gate_proj", "kernel"), "mlp.gate_proj.weight", True),
    (("mlp", "up_proj", "kernel"), "mlp.up_proj.weight", True),
    (("mlp", "down_proj", "kernel"), "mlp.down_proj.weight", True),
)

FAMILY = Family(name="llama", config_class=LlamaConfig, model_class=Llama, hf_layer_params=HF_LAYER_PARAMS)
