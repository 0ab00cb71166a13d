"""Per-token log-probabilities of the labels, without materializing full-vocabulary logits.

Convention (METHODS.md §0): `labels[b, t]` is the token that position t predicts (the caller
shifts `input_ids` by one); positions whose label is negative (e.g. -100, TRL's ignore index) or
whose `mask` is 0 give exactly 0, and contribute no gradient.

`token_logprobs` computes log p(label) = (h·W)[label] − logsumexp_v (h·W)[v] over chunks of the
sequence axis (and optionally of the vocabulary, with an online logsumexp as in Milakov &
Gimelshein 2018, "Online normalizer calculation for softmax"). Each chunk body is wrapped in
`jax.checkpoint`, so the backward pass recomputes a chunk's logits instead of storing them: peak
memory is O(B · chunk_size · vocab_chunk_size) instead of O(B · T · V). The batch axis is never
reshaped, so a batch-sharded `hidden` stays sharded through the scan.
"""
from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp

_DEFAULT_CHUNK = 512


def _valid_positions(labels: jax.Array, mask: jax.Array | None) -> jax.Array:
    valid = labels >= 0
    if mask is not None:
        valid = jnp.logical_and(valid, jnp.asarray(mask) != 0)
    return valid


def _check_inputs(hidden, head_weight, labels, mask):
    if hidden.ndim != 3:
        raise ValueError(f"token_logprobs: `hidden` must be [B, T, D], got shape {hidden.shape}")
    if head_weight.ndim != 2 or head_weight.shape[0] != hidden.shape[-1]:
        raise ValueError(
            f"token_logprobs: `head_weight` must be [D, V] with D = hidden.shape[-1] = {hidden.shape[-1]}, "
            f"got shape {head_weight.shape} (transpose a [V, D] embedding matrix first)"
        )
    chex.assert_shape(labels, hidden.shape[:2], custom_message="token_logprobs: `labels` must be [B, T] like hidden[..., 0]")
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(f"token_logprobs: `labels` must be integer token ids, got dtype {labels.dtype}")
    if mask is not None:
        chex.assert_shape(mask, hidden.shape[:2], custom_message="token_logprobs: `mask` must be [B, T]")


def logprobs_from_logits(logits: jax.Array, labels: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """log softmax(logits)[label] per position, float32 [B, T]; 0 where label < 0 or mask == 0.

    The full-logits formula, for callers that already hold logits and as the reference that the
    chunked kernel is tested against.
    """
    chex.assert_rank(logits, 3)
    chex.assert_shape(labels, logits.shape[:2], custom_message="logprobs_from_logits: `labels` must be [B, T]")
    valid = _valid_positions(labels, mask)
    logits = logits.astype(jnp.float32)
    safe_labels = jnp.where(valid, labels, 0)
    label_logits = jnp.take_along_axis(logits, safe_labels[..., None], axis=-1)[..., 0]
    logps = label_logits - jax.nn.logsumexp(logits, axis=-1)
    return jnp.where(valid, logps, 0.0)


def token_logprobs_naive(
    hidden: jax.Array, head_weight: jax.Array, labels: jax.Array, mask: jax.Array | None = None
) -> jax.Array:
    """Reference: full [B, T, V] float32 logits = hidden @ head_weight, then `logprobs_from_logits`."""
    _check_inputs(hidden, head_weight, labels, mask)
    logits = jnp.einsum("btd,dv->btv", hidden, head_weight, preferred_element_type=jnp.float32)
    return logprobs_from_logits(logits, labels, mask)


def _chunk_logprobs_full_vocab(hidden_chunk, head_weight, label_chunk):
    """[B, C, D], [D, V], [B, C] -> [B, C]: one chunk, whole vocabulary at once."""
    logits = jnp.einsum("bcd,dv->bcv", hidden_chunk, head_weight, preferred_element_type=jnp.float32)
    label_logits = jnp.take_along_axis(logits, label_chunk[..., None], axis=-1)[..., 0]
    return label_logits - jax.nn.logsumexp(logits, axis=-1)


def _chunk_logprobs_vocab_chunked(hidden_chunk, head_weight_stacked, label_chunk, *, vocab_size):
    """Same as above, scanning over vocabulary slices [n_v, D, Vc] with an online logsumexp.

    Carry: running max m, running Σ exp(logit − m), and the label's logit (found in exactly one
    slice). Padded vocabulary columns (beyond `vocab_size`) are masked to −inf.
    """
    batch, chunk = label_chunk.shape
    vocab_chunk = head_weight_stacked.shape[-1]

    @jax.checkpoint
    def body(carry, xs):
        running_max, running_sum, label_logit = carry
        weight_slice, start = xs
        logits = jnp.einsum("bcd,dv->bcv", hidden_chunk, weight_slice, preferred_element_type=jnp.float32)
        column = start + jnp.arange(vocab_chunk)
        logits = jnp.where(column < vocab_size, logits, -jnp.inf)
        new_max = jnp.maximum(running_max, jnp.max(logits, axis=-1))
        # exp(-inf - finite) = 0 for the first slice, so no special case is needed.
        running_sum = running_sum * jnp.exp(running_max - new_max) + jnp.sum(jnp.exp(logits - new_max[..., None]), axis=-1)
        offset = label_chunk - start
        in_slice = (offset >= 0) & (offset < vocab_chunk)
        picked = jnp.take_along_axis(logits, jnp.clip(offset, 0, vocab_chunk - 1)[..., None], axis=-1)[..., 0]
        label_logit = label_logit + jnp.where(in_slice, picked, 0.0)
        return (new_max, running_sum, label_logit), None

    init = (
        jnp.full((batch, chunk), -jnp.inf, jnp.float32),
        jnp.zeros((batch, chunk), jnp.float32),
        jnp.zeros((batch, chunk), jnp.float32),
    )
    starts = jnp.arange(head_weight_stacked.shape[0]) * vocab_chunk
    (running_max, running_sum, label_logit), _ = jax.lax.scan(body, init, (head_weight_stacked, starts))
    return label_logit - (running_max + jnp.log(running_sum))


def token_logprobs(
    hidden: jax.Array,
    head_weight: jax.Array,
    labels: jax.Array,
    mask: jax.Array | None = None,
    *,
    chunk_size: int = _DEFAULT_CHUNK,
    vocab_chunk_size: int | None = None,
) -> jax.Array:
    """Per-token log p(label | h) = (h·W)[label] − logsumexp(h·W), float32 [B, T], in chunks.

    Args:
      hidden: final hidden states [B, T, D] (after the final norm), any float dtype.
      head_weight: LM head [D, V] (for tied embeddings pass `embedding.T`).
      labels: next-token ids [B, T]; negative ids are ignored (give 0).
      mask: optional [B, T]; 0 positions give 0.
      chunk_size: positions along T per chunk (T need not be a multiple: the tail is padded).
      vocab_chunk_size: if set, vocabulary columns per slice of an online logsumexp (V need not
        be a multiple); peak memory is then O(B · chunk_size · vocab_chunk_size).

    Equals `token_logprobs_naive` in value and gradient (w.r.t. hidden and head_weight); matmuls
    accumulate in float32 (`preferred_element_type`) whatever the input dtype.
    """
    _check_inputs(hidden, head_weight, labels, mask)
    if chunk_size <= 0:
        raise ValueError(f"token_logprobs: chunk_size must be positive, got {chunk_size}")
    batch, length, dim = hidden.shape
    vocab_size = head_weight.shape[1]
    valid = _valid_positions(labels, mask)
    safe_labels = jnp.where(valid, labels, 0).astype(jnp.int32)

    chunk_size = min(chunk_size, length)
    num_chunks = -(-length // chunk_size)
    pad = num_chunks * chunk_size - length
    if pad:
        hidden = jnp.pad(hidden, ((0, 0), (0, pad), (0, 0)))
        safe_labels = jnp.pad(safe_labels, ((0, 0), (0, pad)))
    # [n_chunks, B, C, ...]: the scan walks the sequence; the batch axis (and its sharding) stays put.
    hidden_chunks = hidden.reshape(batch, num_chunks, chunk_size, dim).swapaxes(0, 1)
    label_chunks = safe_labels.reshape(batch, num_chunks, chunk_size).swapaxes(0, 1)

    if vocab_chunk_size is None or vocab_chunk_size >= vocab_size:
        chunk_fn = functools.partial(_chunk_logprobs_full_vocab, head_weight=head_weight)
    else:
        num_vocab_chunks = -(-vocab_size // vocab_chunk_size)
        vocab_pad = num_vocab_chunks * vocab_chunk_size - vocab_size
        weight = jnp.pad(head_weight, ((0, 0), (0, vocab_pad))) if vocab_pad else head_weight
        weight_stacked = weight.reshape(dim, num_vocab_chunks, vocab_chunk_size).swapaxes(0, 1)
        chunk_fn = functools.partial(
            _chunk_logprobs_vocab_chunked, head_weight_stacked=weight_stacked, vocab_size=vocab_size
        )

    def body(_, xs):
        hidden_chunk, label_chunk = xs
        return None, chunk_fn(hidden_chunk, label_chunk=label_chunk)

    if vocab_chunk_size is None or vocab_chunk_size >= vocab_size:
        # Rematerialize: the backward pass recomputes one chunk's logits at a time instead of
        # keeping [T/C, B, C, V] residuals alive.
        body = jax.checkpoint(body)
    # (The vocabulary-chunked body already checkpoints its inner slices; its residuals are the
    # [B, C] online-logsumexp carries per slice, so a second, outer remat would only add a
    # third pass over the logits.)

    _, logps = jax.lax.scan(body, None, (hidden_chunks, label_chunks))
    logps = logps.swapaxes(0, 1).reshape(batch, num_chunks * chunk_size)[:, :length]
    chex.assert_shape(logps, (batch, length))
    return jnp.where(valid, logps, 0.0)


__all__ = ["token_logprobs", "token_logprobs_naive", "logprobs_from_logits"]
