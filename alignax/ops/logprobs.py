"""Per-token log-probabilities of the labels, without materializing full-vocabulary logits.

Convention (METHODS.md §0): `labels[b, t]` is the token that position t predicts (the caller
shifts `input_ids` by one); positions whose label is negative (e.g. -100, TRL's ignore index) or
whose `mask` is 0 give exactly 0, and contribute no gradient.

`token_logprobs` computes log p(label) = (h·W)[label] − logsumexp_v (h·W)[v] over chunks of the
sequence axis, and optionally of the vocabulary with an online logsumexp (Milakov & Gimelshein
2018, "Online normalizer calculation for softmax"). Sequence chunks only: each chunk body is
wrapped in `jax.checkpoint`, so the backward pass recomputes a chunk's [B, C, V] logits instead
of storing them. Vocabulary slices too: a hand-written VJP saves only the per-token logsumexp
and, in the backward pass, recomputes one [B, C, Vc] slice at a time (softmax − onehot), adding
into a single float32 [D, V] head-gradient accumulator in place; peak temporary memory is then
O(B · C · Vc + D · V), independent of T. The batch axis is never reshaped, so a batch-sharded
`hidden` stays sharded. (The custom VJP supports reverse mode only, i.e. `jax.grad`, not `jvp`.)

Out-of-range labels (a kept position whose label is ≥ V): with concrete labels (outside jit) every
function here raises a ValueError naming the first such position. Inside jit the labels are traced
and not checked (a `checkify` check would need every caller to functionalize its errors); the data
path validates token ids instead (`alignax.data` tokenizes with the model's own tokenizer, which
never produces an id ≥ V), and the kernels return NaN at such positions, the same on the
full-vocabulary and the vocabulary-chunked paths, so nothing silently wrong comes out (the
training loop's non-finite guard sees it).
"""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np

_DEFAULT_CHUNK = 512


def _valid_positions(labels: jax.Array, mask: jax.Array | None) -> jax.Array:
    valid = labels >= 0
    if mask is not None:
        valid = jnp.logical_and(valid, jnp.asarray(mask) != 0)
    return valid


def _check_label_range(labels, valid, vocab_size: int, who: str) -> None:
    """Raise if a kept label is ≥ vocab_size; a no-op on traced labels (inside jit)."""
    if isinstance(labels, jax.core.Tracer) or isinstance(valid, jax.core.Tracer):
        return
    bad = np.argwhere(np.asarray(valid) & (np.asarray(labels) >= vocab_size))
    if bad.size:
        position = tuple(int(i) for i in bad[0])
        raise ValueError(
            f"{who}: label {int(np.asarray(labels)[position])} at position {position} is out of range for a "
            f"vocabulary of {vocab_size} ({len(bad)} such position(s)); token ids must be in [0, {vocab_size}) "
            "or negative (ignored)"
        )


def _out_of_range_to_nan(logps, labels, valid, vocab_size: int):
    """0 where not valid; NaN where a valid label is ≥ vocab_size (inside jit: see the module doc)."""
    out_of_range = jnp.logical_and(valid, labels >= vocab_size)
    return jnp.where(valid, jnp.where(out_of_range, jnp.nan, logps), 0.0)


def _check_inputs(hidden, head_weight, labels, mask):
    if hidden.ndim != 3:
        raise ValueError(f"token_logprobs: `hidden` must be [B, T, D], got shape {hidden.shape}")
    if head_weight.ndim != 2 or head_weight.shape[0] != hidden.shape[-1]:
        raise ValueError(
            f"token_logprobs: `head_weight` must be [D, V] with D = hidden.shape[-1] = {hidden.shape[-1]}, "
            f"got shape {head_weight.shape} (transpose a [V, D] embedding matrix first)"
        )
    chex.assert_shape(
        labels, hidden.shape[:2], custom_message="token_logprobs: `labels` must be [B, T] like hidden[..., 0]"
    )
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(f"token_logprobs: `labels` must be integer token ids, got dtype {labels.dtype}")
    if mask is not None:
        chex.assert_shape(mask, hidden.shape[:2], custom_message="token_logprobs: `mask` must be [B, T]")


def logprobs_from_logits(logits: jax.Array, labels: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """log softmax(logits)[label] per position, float32 [B, T]; 0 where label < 0 or mask == 0.

    A kept label ≥ V raises (concrete labels) or gives NaN (traced labels), see the module doc.

    The full-logits formula, for callers that already hold logits and as the reference that the
    chunked kernel is tested against.
    """
    chex.assert_rank(logits, 3)
    chex.assert_shape(labels, logits.shape[:2], custom_message="logprobs_from_logits: `labels` must be [B, T]")
    valid = _valid_positions(labels, mask)
    vocab_size = logits.shape[-1]
    _check_label_range(labels, valid, vocab_size, "logprobs_from_logits")
    logits = logits.astype(jnp.float32)
    safe_labels = jnp.where(jnp.logical_and(valid, labels < vocab_size), labels, 0)
    label_logits = jnp.take_along_axis(logits, safe_labels[..., None], axis=-1)[..., 0]
    logps = label_logits - jax.nn.logsumexp(logits, axis=-1)
    return _out_of_range_to_nan(logps, labels, valid, vocab_size)


def token_logprobs_naive(
    hidden: jax.Array, head_weight: jax.Array, labels: jax.Array, mask: jax.Array | None = None
) -> jax.Array:
    """Reference: full [B, T, V] float32 logits = hidden @ head_weight, then `logprobs_from_logits`."""
    _check_inputs(hidden, head_weight, labels, mask)
    _check_label_range(labels, _valid_positions(labels, mask), head_weight.shape[1], "token_logprobs_naive")
    logits = jnp.einsum("btd,dv->btv", hidden, head_weight, preferred_element_type=jnp.float32)
    return logprobs_from_logits(logits, labels, mask)


def _chunk_logprobs_full_vocab(hidden_chunk, head_weight, label_chunk):
    """[B, C, D], [D, V], [B, C] -> [B, C]: one chunk, whole vocabulary at once."""
    logits = jnp.einsum("bcd,dv->bcv", hidden_chunk, head_weight, preferred_element_type=jnp.float32)
    label_logits = jnp.take_along_axis(logits, label_chunk[..., None], axis=-1)[..., 0]
    return label_logits - jax.nn.logsumexp(logits, axis=-1)


def _vocab_slice(index, vocab_chunk: int, vocab_size: int):
    """Slice `index` of the vocabulary: (start, fresh columns mask, nominal start).

    Slices have a fixed width (static shapes); the last one is shifted left to end at V, and its
    columns already covered by the previous slice are masked out ("not fresh"), so V need not be
    a multiple of the slice width and the head is never padded or copied.
    """
    nominal = index * vocab_chunk
    start = jnp.minimum(nominal, vocab_size - vocab_chunk)
    fresh = start + jnp.arange(vocab_chunk) >= nominal
    return start, fresh, nominal


def _slice_logits(hidden_chunk, head_weight, start, vocab_chunk):
    weight_slice = jax.lax.dynamic_slice_in_dim(head_weight, start, vocab_chunk, axis=1)
    logits = jnp.einsum("bcd,dv->bcv", hidden_chunk, weight_slice, preferred_element_type=jnp.float32)
    return weight_slice, logits


def _vocab_chunked_forward(hidden_chunks, head_weight, label_chunks, vocab_chunk):
    """Online logsumexp over vocabulary slices (Milakov & Gimelshein 2018), per sequence chunk.

    Returns (log-probs [n, B, C], logsumexp [n, B, C]); the carry per slice is the running max,
    the running Σ exp(logit − max) and the label's logit (found in exactly one fresh slice).
    """
    vocab_size = head_weight.shape[1]
    num_slices = -(-vocab_size // vocab_chunk)

    def per_chunk(_, xs):
        hidden_chunk, label_chunk = xs

        def body(carry, index):
            running_max, running_sum, label_logit = carry
            start, fresh, nominal = _vocab_slice(index, vocab_chunk, vocab_size)
            _, logits = _slice_logits(hidden_chunk, head_weight, start, vocab_chunk)
            logits = jnp.where(fresh, logits, -jnp.inf)
            new_max = jnp.maximum(running_max, jnp.max(logits, axis=-1))
            # exp(-inf - finite) = 0 on the first slice: no special case needed.
            running_sum = running_sum * jnp.exp(running_max - new_max) + jnp.sum(
                jnp.exp(logits - new_max[..., None]), axis=-1
            )
            offset = label_chunk - start
            hit = (offset >= 0) & (offset < vocab_chunk) & (label_chunk >= nominal)
            picked = jnp.take_along_axis(logits, jnp.clip(offset, 0, vocab_chunk - 1)[..., None], axis=-1)[..., 0]
            return (new_max, running_sum, label_logit + jnp.where(hit, picked, 0.0)), None

        shape = label_chunk.shape
        init = (jnp.full(shape, -jnp.inf, jnp.float32), jnp.zeros(shape, jnp.float32), jnp.zeros(shape, jnp.float32))
        (running_max, running_sum, label_logit), _ = jax.lax.scan(body, init, jnp.arange(num_slices))
        logsumexp = running_max + jnp.log(running_sum)
        return None, (label_logit - logsumexp, logsumexp)

    _, (logps, logsumexp) = jax.lax.scan(per_chunk, None, (hidden_chunks, label_chunks))
    return logps, logsumexp


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _vocab_chunked_logprobs(hidden_chunks, head_weight, label_chunks, vocab_chunk):
    return _vocab_chunked_forward(hidden_chunks, head_weight, label_chunks, vocab_chunk)[0]


def _vocab_chunked_fwd(hidden_chunks, head_weight, label_chunks, vocab_chunk):
    logps, logsumexp = _vocab_chunked_forward(hidden_chunks, head_weight, label_chunks, vocab_chunk)
    return logps, (hidden_chunks, head_weight, label_chunks, logsumexp)


def _vocab_chunked_bwd(vocab_chunk, residuals, cotangent):
    """d log p(label)/d logits = onehot(label) − softmax, recomputed one [B, C, Vc] slice at a time.

    d hidden = Σ_slices dlogits · W_sliceᵀ; d W[:, slice] += hiddenᵀ · dlogits, written in place
    into one float32 [D, V] accumulator (the only head-sized buffer besides the head itself).
    """
    hidden_chunks, head_weight, label_chunks, logsumexp = residuals
    dim, vocab_size = head_weight.shape
    num_slices = -(-vocab_size // vocab_chunk)

    def per_chunk(grad_head, xs):
        hidden_chunk, label_chunk, lse_chunk, ct_chunk = xs

        def body(carry, index):
            grad_hidden, grad_head = carry
            start, fresh, _ = _vocab_slice(index, vocab_chunk, vocab_size)
            weight_slice, logits = _slice_logits(hidden_chunk, head_weight, start, vocab_chunk)
            probs = jnp.exp(logits - lse_chunk[..., None])
            is_label = (start + jnp.arange(vocab_chunk)) == label_chunk[..., None]
            dlogits = ct_chunk[..., None] * (is_label.astype(jnp.float32) - probs)
            dlogits = jnp.where(fresh, dlogits, 0.0)
            grad_hidden = grad_hidden + jnp.einsum(
                "bcv,dv->bcd", dlogits, weight_slice.astype(jnp.float32), preferred_element_type=jnp.float32
            )
            update = jnp.einsum(
                "bcd,bcv->dv", hidden_chunk.astype(jnp.float32), dlogits, preferred_element_type=jnp.float32
            )
            current = jax.lax.dynamic_slice_in_dim(grad_head, start, vocab_chunk, axis=1)
            grad_head = jax.lax.dynamic_update_slice_in_dim(grad_head, current + update, start, axis=1)
            return (grad_hidden, grad_head), None

        init = (jnp.zeros(hidden_chunk.shape, jnp.float32), grad_head)
        (grad_hidden, grad_head), _ = jax.lax.scan(body, init, jnp.arange(num_slices))
        return grad_head, grad_hidden.astype(hidden_chunk.dtype)

    grad_head, grad_hidden = jax.lax.scan(
        per_chunk, jnp.zeros((dim, vocab_size), jnp.float32), (hidden_chunks, label_chunks, logsumexp, cotangent)
    )
    return grad_hidden, grad_head.astype(head_weight.dtype), None


_vocab_chunked_logprobs.defvjp(_vocab_chunked_fwd, _vocab_chunked_bwd)


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
      vocab_chunk_size: None (default): the whole vocabulary at once. A positive int: vocabulary
        columns per slice of an online logsumexp (V need not be a multiple); peak memory is then
        O(B · chunk_size · vocab_chunk_size). 0 or a negative value is a ValueError (alignax.train
        maps its config's 0, "off", to None: `config.logprob_vocab_chunk_size or None`).

    Labels ≥ V at kept positions raise a ValueError when the labels are concrete and give NaN
    there when traced (inside jit), on both paths (module doc).

    Equals `token_logprobs_naive` in value and gradient (w.r.t. hidden and head_weight); matmuls
    accumulate in float32 (`preferred_element_type`) whatever the input dtype.
    """
    _check_inputs(hidden, head_weight, labels, mask)
    if chunk_size <= 0:
        raise ValueError(f"token_logprobs: chunk_size must be positive, got {chunk_size}")
    if vocab_chunk_size is not None and vocab_chunk_size <= 0:
        raise ValueError(
            f"token_logprobs: vocab_chunk_size must be a positive int or None (whole vocabulary), "
            f"got {vocab_chunk_size}"
        )
    batch, length, dim = hidden.shape
    vocab_size = head_weight.shape[1]
    valid = _valid_positions(labels, mask)
    _check_label_range(labels, valid, vocab_size, "token_logprobs")
    safe_labels = jnp.where(jnp.logical_and(valid, labels < vocab_size), labels, 0).astype(jnp.int32)

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
        # Rematerialize: the backward pass recomputes one chunk's logits at a time instead of
        # keeping [T/C, B, C, V] residuals alive.
        @jax.checkpoint
        def body(_, xs):
            hidden_chunk, label_chunk = xs
            return None, _chunk_logprobs_full_vocab(hidden_chunk, head_weight, label_chunk)

        _, logps = jax.lax.scan(body, None, (hidden_chunks, label_chunks))
    else:
        # Hand-written VJP: autodiff through a scan over head slices would stack the slices
        # (a copy of the head) and their gradients (two more); this keeps one accumulator.
        logps = _vocab_chunked_logprobs(hidden_chunks, head_weight, label_chunks, vocab_chunk_size)
    logps = logps.swapaxes(0, 1).reshape(batch, num_chunks * chunk_size)[:, :length]
    chex.assert_shape(logps, (batch, length))
    return _out_of_range_to_nan(logps, labels, valid, vocab_size)


__all__ = ["token_logprobs", "token_logprobs_naive", "logprobs_from_logits"]
