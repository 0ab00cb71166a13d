"""Per-sequence statistics of per-token values under a loss mask, and per-segment sums for
packed rows.

Sequence statistics (METHODS.md §0): log π(y|x) = Σ_t mask_t · logp_t (the DPO family's
"summed" log-prob), avg log π(y|x) = that sum / Σ_t mask_t (SimPO, ORPO, LN-DPO, TRL IPO), and
the token count |y|.

Packed rows: several sequences share one row; `segment_ids[b, t] = k ≥ 1` says position t
belongs to the k-th sequence of row b, and 0 marks padding (the convention of grain's and
seqio's packers). `segment_sums` returns [B, num_segments], column k-1 holding segment k, so a
packed chosen and rejected response each get their own summed log-prob.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

from alignax.ops import numerics


def _mask_or_ones(values, mask):
    if mask is None:
        return jnp.ones(values.shape, jnp.float32)
    chex.assert_equal_shape([values, mask], custom_message="sequence stats: `values` and `mask` must both be [B, T]")
    return jnp.asarray(mask).astype(jnp.float32)


def sequence_sum(values: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Σ_t mask[b, t] · values[b, t] -> [B] float32."""
    chex.assert_rank(values, 2)
    return numerics.masked_sum(values.astype(jnp.float32), _mask_or_ones(values, mask), axis=-1)


def token_count(mask: jax.Array) -> jax.Array:
    """Σ_t mask[b, t] -> [B] float32 (the response length |y| when mask is the response mask)."""
    chex.assert_rank(mask, 2)
    return numerics.masked_count(mask, axis=-1)


def sequence_mean(values: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Σ_t mask·values / Σ_t mask -> [B] float32; 0 for a row with an empty mask (never NaN)."""
    chex.assert_rank(values, 2)
    return numerics.masked_mean(values.astype(jnp.float32), _mask_or_ones(values, mask), axis=-1)


def sequence_stats(values: jax.Array, mask: jax.Array | None = None) -> dict[str, jax.Array]:
    """{"sum", "mean", "count"} per sequence, each [B] float32."""
    m = _mask_or_ones(values, mask)
    return {"sum": sequence_sum(values, m), "mean": sequence_mean(values, m), "count": token_count(m)}


def _check_segments(values, segment_ids, num_segments):
    chex.assert_rank(values, 2)
    chex.assert_equal_shape(
        [values, segment_ids], custom_message="segment stats: `values` and `segment_ids` must both be [B, T]"
    )
    if not jnp.issubdtype(segment_ids.dtype, jnp.integer):
        raise TypeError(f"segment stats: `segment_ids` must be integers, got {segment_ids.dtype}")
    if num_segments <= 0:
        raise ValueError(f"segment stats: num_segments must be positive, got {num_segments}")


def segment_sums(
    values: jax.Array, segment_ids: jax.Array, *, num_segments: int, mask: jax.Array | None = None
) -> jax.Array:
    """Per-segment Σ of values in packed rows: [B, T] -> [B, num_segments] float32.

    Column k-1 sums the positions with segment id k (k = 1..num_segments); id 0 (padding) and ids
    above `num_segments` are dropped; an optional `mask` (e.g. the response mask) also applies.
    """
    _check_segments(values, segment_ids, num_segments)
    weights = _mask_or_ones(values, mask)
    # Bucket 0 collects padding and out-of-range ids; it is dropped below.
    buckets = jnp.where((segment_ids >= 1) & (segment_ids <= num_segments), segment_ids, 0)
    contrib = jnp.where(weights != 0, values.astype(jnp.float32) * weights, 0.0)
    per_row = jax.vmap(lambda v, s: jax.ops.segment_sum(v, s, num_segments=num_segments + 1))(contrib, buckets)
    return per_row[:, 1:]


def segment_counts(segment_ids: jax.Array, *, num_segments: int, mask: jax.Array | None = None) -> jax.Array:
    """Number of (masked) positions per segment: [B, T] -> [B, num_segments] float32."""
    ones = jnp.ones(segment_ids.shape, jnp.float32)
    return segment_sums(ones, segment_ids, num_segments=num_segments, mask=mask)


def segment_means(
    values: jax.Array, segment_ids: jax.Array, *, num_segments: int, mask: jax.Array | None = None
) -> jax.Array:
    """Per-segment mean, [B, num_segments] float32; 0 for empty segments."""
    sums = segment_sums(values, segment_ids, num_segments=num_segments, mask=mask)
    counts = segment_counts(segment_ids, num_segments=num_segments, mask=mask)
    return sums / jnp.where(counts == 0, 1.0, counts)


__all__ = [
    "sequence_sum",
    "sequence_mean",
    "token_count",
    "sequence_stats",
    "segment_sums",
    "segment_counts",
    "segment_means",
]
