"""Attention arithmetic shared by every model family: the mask, softmax attention over key/value
parts, and the decode step's kernels.

The modules (llama.py `Attention`) project and rotate; this file only combines queries with keys
and values. Shapes: q [B, T, KVH, G, hd] (G = query heads per kv head), keys and values
[B, S, KVH, hd] or, as a layer's own cache buffer, [B, S, KVH*hd]; masks [B, T, S] bool.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

NEG_INF = float(jnp.finfo(jnp.float32).min)  # finite, so a fully masked (padding) row stays finite


def attention_mask(
    *,
    q_segment_ids: jax.Array,
    kv_segment_ids: jax.Array,
    q_slots: jax.Array,
    kv_slots: jax.Array,
    sliding_window: int | None,
) -> jax.Array:
    """[B, T, S] bool: same non-zero segment, key not after the query, key inside the window.

    Slots are indices in the sequence (full forward) or in the cache (decode), so causality and the
    sliding window count tokens as transformers does (`kv_idx > q_idx - sliding_window`).
    """
    mask = (q_segment_ids[:, :, None] == kv_segment_ids[:, None, :]) & (kv_segment_ids[:, None, :] != 0)
    mask &= kv_slots[None, None, :] <= q_slots[None, :, None]
    if sliding_window is not None:
        mask &= kv_slots[None, None, :] > q_slots[None, :, None] - sliding_window
    return mask


def softcap(x: jax.Array, cap: float) -> jax.Array:
    """cap * tanh(x / cap) (Gemma 2 report, section 2; transformers Gemma2 soft-capping)."""
    return jnp.tanh(x / cap) * cap


def attend(q, parts, *, scale, logit_softcap):
    """Grouped-query attention of q [B,T,KVH,G,hd] (float32) over key/value parts: one softmax
    over the concatenated slots of `parts`, each (keys, values, mask [B,T,S] bool) with keys and
    values [B,S,KVH,hd] or, flattened, [B,S,KVH*hd]. Returns [B,T,KVH,G,hd] float32.

    A decode step (one query per row) goes through `decode_attention`; longer queries through
    einsums over [B,KVH,G,T,S] scores.
    """
    if q.shape[1] == 1:
        return decode_attention(q, parts, scale=scale, logit_softcap=logit_softcap)

    batch, _, kv_heads, _, head_dim = q.shape
    heads_view = lambda x: x.reshape(batch, x.shape[1], kv_heads, head_dim).astype(jnp.float32)

    def scores_against(keys, mask):
        scores = jnp.einsum("btkgd,bskd->bkgts", q, heads_view(keys)) * scale
        if logit_softcap is not None:
            scores = softcap(scores, logit_softcap)
        return jnp.where(mask[:, None, None, :, :], scores, NEG_INF)

    scores = jnp.concatenate([scores_against(keys, mask) for keys, _, mask in parts], axis=-1)
    probs = jax.nn.softmax(scores, axis=-1)
    out, offset = 0.0, 0
    for _, values, _ in parts:
        width = values.shape[1]
        p = jax.lax.slice_in_dim(probs, offset, offset + width, axis=probs.ndim - 1)
        out = out + jnp.einsum("bkgts,bskd->btkgd", p, heads_view(values))
        offset += width
    return out


# Cache length from which a decode step attends with per-row GEMMs instead of multiply-reduces
# (quiet-machine measurements in benchmarks/README.md, "sample — attention over the cache").
DECODE_GEMM_MIN_SLOTS = 1024


def decode_attention(q, parts, *, scale, logit_softcap):
    """One query per row: scores [B, KVH*G, S] over the cache's slots, one softmax, then values.

    Two ways to form the products, the same numbers up to float32 rounding, chosen by the number of
    slots S (static):
      * S < DECODE_GEMM_MIN_SLOTS: elementwise multiplies reduced over hd, then over the slots. XLA's
        CPU backend fuses them with the cache read; einsums over (b, k) ran as B x KVH tiny GEMMs,
        ~2x slower at batch 64 x 192 slots (benchmarks/README.md, "sample — profile of the decode step").
      * longer caches: per-row GEMMs over the cache viewed as [B, S, KVH*hd] rows, with the query
        as a block-diagonal [B, KVH*G, KVH*hd] matrix, zero outside each head's own kv head:
          scores[b, (k,g), s] = sum_c q_bd[b, (k,g), c] keys[b, s, c]            c = (k', d)
          out[b, (k,g), (k',d)] = sum_s probs[b, (k,g), s] values[b, s, (k',d)], kept where k' = k.
        KVH x the minimal FLOPs, but the step is bound by reading the cache, which the GEMMs read
        once in its own layout; the multiply-reduce over the slot axis reads it with strides and
        fell to ~2.3 GB/s at 1088 slots (2.3x slower at batch 64, 1.4-1.6x at batch 16).
    Per-layer buffers are [B, S, KVH*hd] because a reshape of a freshly written [B, S, KVH, hd]
    buffer made XLA duplicate the write and copy the buffer every step.
    """
    batch, _, kv_heads, groups, head_dim = q.shape
    slots = sum(keys.shape[1] for keys, _, _ in parts)
    heads = lambda x: x.reshape(batch, x.shape[1], kv_heads, head_dim).astype(jnp.float32)
    rows = lambda x: x.reshape(batch, x.shape[1], kv_heads * head_dim).astype(jnp.float32)
    if slots < DECODE_GEMM_MIN_SLOTS:  # q is [B, 1, KVH, G, hd]: its slot axis broadcasts
        scores_of = lambda keys: jnp.sum(q * heads(keys)[:, :, :, None, :], axis=-1).transpose(0, 2, 3, 1)
        values_of = lambda p, values: jnp.sum(
            p.reshape(batch, kv_heads, groups, -1).transpose(0, 3, 1, 2)[..., None] * heads(values)[:, :, :, None, :],
            axis=1,
        )
    else:
        eye = jnp.eye(kv_heads, dtype=q.dtype)
        q_bd = (q[:, 0, :, :, None, :] * eye[None, :, None, :, None]).reshape(
            batch, kv_heads * groups, kv_heads * head_dim
        )
        scores_of = lambda keys: jnp.einsum("bmc,bsc->bms", q_bd, rows(keys))
        values_of = lambda p, values: jnp.einsum(  # keep each head's own kv head: the diagonal k' = k
            "bkgjd,kj->bkgd",
            jnp.einsum("bms,bsc->bmc", p, rows(values)).reshape(batch, kv_heads, groups, kv_heads, head_dim),
            eye,
        )

    def scores_against(keys, mask):
        scores = scores_of(keys).reshape(batch, kv_heads * groups, keys.shape[1]) * scale
        if logit_softcap is not None:
            scores = softcap(scores, logit_softcap)
        return jnp.where(mask, scores, NEG_INF)  # mask [B,1,S] broadcasts over the heads

    scores = jnp.concatenate([scores_against(keys, mask) for keys, _, mask in parts], axis=-1)
    probs = jax.nn.softmax(scores, axis=-1)
    out, offset = 0.0, 0
    for _, values, _ in parts:
        width = values.shape[1]
        out = out + values_of(jax.lax.slice_in_dim(probs, offset, offset + width, axis=2), values)
        offset += width
    return out[:, None]
